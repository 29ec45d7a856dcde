package webhook

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/cofferhq/coffer"
)

func TestCheckAddr(t *testing.T) {
	refused := []string{
		// IPv4
		"127.0.0.1", "127.8.9.10", "10.0.0.1", "172.16.0.1", "172.31.255.255", "192.168.1.1",
		"169.254.169.254", "100.64.0.1", "100.127.255.254", "0.0.0.0", "0.1.2.3", "224.0.0.1",
		"239.255.255.250", "255.255.255.255", "240.0.0.1", "192.0.0.8", "198.18.0.1", "192.0.2.1",
		"198.51.100.7", "203.0.113.9",
		// IPv6
		"::", "::1", "fc00::1", "fd12:3456::1", "fe80::1", "fe80::1%eth0", "ff02::1", "ff05::2",
		"64:ff9b::a00:1", "2001:db8::1", "2002:a00:1::1", "fec0::1", "100::1", "::a00:1",
		// IPv4-mapped IPv6: judged as the IPv4 address they carry.
		"::ffff:127.0.0.1", "::ffff:10.1.2.3", "::ffff:169.254.169.254", "::ffff:100.64.0.1", "::ffff:0.0.0.0",
	}
	for _, s := range refused {
		if err := CheckAddr(netip.MustParseAddr(s)); err == nil {
			t.Errorf("CheckAddr(%s) = nil, want refused", s)
		} else if !strings.Contains(err.Error(), "not a public one") {
			t.Errorf("CheckAddr(%s) = %v: the message should say why", s, err)
		}
	}
	allowed := []string{"8.8.8.8", "1.1.1.1", "93.184.215.14", "100.63.255.255", "100.128.0.1", "172.32.0.1",
		"2606:4700:4700::1111", "2a00:1450:4001::200e", "::ffff:8.8.8.8"}
	for _, s := range allowed {
		if err := CheckAddr(netip.MustParseAddr(s)); err != nil {
			t.Errorf("CheckAddr(%s) = %v, want allowed", s, err)
		}
	}
	if err := CheckAddr(netip.Addr{}); err == nil {
		t.Error("the zero address is allowed")
	}
}

// fixed answers every name with the same addresses.
func fixed(addrs ...string) Resolver {
	return func(context.Context, string) ([]netip.Addr, error) {
		out := make([]netip.Addr, len(addrs))
		for i, a := range addrs {
			out[i] = netip.MustParseAddr(a)
		}
		return out, nil
	}
}

func TestCheckURL(t *testing.T) {
	ctx := context.Background()
	public := NewGuard(false, fixed("93.184.215.14"))
	for _, c := range []struct {
		url, want string
		guard     *Guard
	}{
		{"", "url is required", public},
		{"http://hooks.example.com/x", "https://", public},
		{"ftp://hooks.example.com/x", "https://", public},
		{"/relative", "absolute", public},
		{"https://user:pw@hooks.example.com/x", "user name or password", public},
		{"https://hooks.example.com/x#frag", "fragment", public},
		{"https:///nohost", "host", public},
		{"https://hooks.example.com:0/x", "port", public},
		{"https://hooks.example.com/\x00", "printable", public},
		{"https://hooks.example.com/" + strings.Repeat("a", 2100), "at most", public},
		{"https://127.0.0.1/x", "loopback", public},
		{"https://[::1]:8443/x", "loopback", public},
		{"https://[::ffff:10.0.0.1]/x", "private", public},
		{"https://169.254.169.254/latest/meta-data", "link-local", public},
		{"https://100.64.1.1/", "carrier-grade NAT", public},
		{"https://internal.example.com/x", "private", NewGuard(false, fixed("93.184.215.14", "10.0.0.7"))},
		{"https://nowhere.example.com/x", "could not be resolved", NewGuard(false, func(context.Context, string) ([]netip.Addr, error) {
			return nil, errors.New("no such host")
		})},
	} {
		_, err := c.guard.CheckURL(ctx, c.url)
		if err == nil || coffer.ErrorCode(err) != coffer.EINVALID || !strings.Contains(coffer.ErrorMessage(err), c.want) {
			t.Errorf("CheckURL(%.60q) = %v, want a validation error mentioning %q", c.url, err, c.want)
		}
	}
	for _, u := range []string{"https://hooks.example.com/coffer?token=x", "https://93.184.215.14:8443/"} {
		if got, err := public.CheckURL(ctx, u); err != nil || got != u {
			t.Errorf("CheckURL(%s) = %q, %v", u, got, err)
		}
	}
	// Allowed private addresses skip resolution altogether.
	open := NewGuard(true, func(context.Context, string) ([]netip.Addr, error) { return nil, errors.New("not called") })
	if _, err := open.CheckURL(ctx, "https://localhost:8443/x"); err != nil {
		t.Errorf("allow-private guard refused loopback: %v", err)
	}
	if _, err := open.CheckURL(ctx, "http://localhost:8443/x"); err == nil {
		t.Error("allow-private guard accepted plain http")
	}
}

// The dial-time check sees the address actually dialled: a name that answered a public
// address at registration and a loopback one now is refused, naming the refusal.
func TestDialRefusesRebinding(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	ctx := context.Background()

	g := NewGuard(false, fixed("127.0.0.1"))
	_, err = g.DialContext(ctx, "tcp", net.JoinHostPort("rebound.example.com", port))
	if !errors.Is(err, errRefused) || !strings.Contains(describe(err, 0), "127.0.0.1 is a loopback address") {
		t.Fatalf("dial of a name now resolving to loopback: %v (%s)", err, describe(err, 0))
	}
	for _, addr := range []string{"127.0.0.1", "[::ffff:127.0.0.1]"} {
		if _, err := g.DialContext(ctx, "tcp", addr+":"+port); !errors.Is(err, errRefused) {
			t.Errorf("dial of %s: %v, want refused", addr, err)
		}
	}
	// With private addresses allowed, the same dial connects.
	c, err := NewGuard(true, fixed("127.0.0.1")).DialContext(ctx, "tcp", net.JoinHostPort("rebound.example.com", port))
	if err != nil {
		t.Fatalf("allow-private dial: %v", err)
	}
	c.Close()
}

func TestValidEvents(t *testing.T) {
	if _, err := validEvents(nil); err == nil {
		t.Error("an empty list is accepted")
	}
	if _, err := validEvents([]string{"*", "secret.write"}); err == nil {
		t.Error(`"*" with another type is accepted`)
	}
	if _, err := validEvents([]string{"secret.reveal"}); err == nil {
		t.Error("an unknown type is accepted")
	}
	got, err := validEvents([]string{"secret.write", "secret.delete", "secret.write"})
	if err != nil || strings.Join(got, " ") != "secret.delete secret.write" {
		t.Errorf("validEvents = %v, %v", got, err)
	}
	if got, err := validEvents([]string{"*"}); err != nil || len(got) != 1 {
		t.Errorf(`validEvents(["*"]) = %v, %v`, got, err)
	}
}
