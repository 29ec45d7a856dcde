package httpapi

import (
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"testing"
)

// TestTenantIdPAddressGuard: a tenant's provider is reached only on public addresses, however
// the address is written.
func TestTenantIdPAddressGuard(t *testing.T) {
	for _, tc := range []struct {
		addr   string
		public bool
	}{
		{"8.8.8.8", true},
		{"2001:4860:4860::8888", true},
		{"1.1.1.1", true},
		{"127.0.0.1", false},
		{"127.1.2.3", false},
		{"::1", false},
		{"::ffff:127.0.0.1", false}, // IPv4-mapped loopback
		{"10.0.0.1", false},
		{"172.16.5.4", false},
		{"192.168.1.1", false},
		{"fc00::1", false},
		{"fd12:3456::1", false},
		{"169.254.169.254", false}, // cloud metadata
		{"fe80::1", false},
		{"0.0.0.0", false},
		{"::", false},
		{"100.100.100.200", false}, // shared address space (a cloud's metadata)
		{"224.0.0.1", false},
		{"ff02::1", false},
		{"64:ff9b::a9fe:a9fe", false}, // NAT64 of 169.254.169.254
		{"255.255.255.255", false},
	} {
		err := publicAddress(netip.MustParseAddr(tc.addr))
		if (err == nil) != tc.public {
			t.Errorf("%s: err = %v, want public = %v", tc.addr, err, tc.public)
		}
		if err := dialControl("tcp", net.JoinHostPort(tc.addr, "443"), nil); (err == nil) != tc.public {
			t.Errorf("dial %s: err = %v, want public = %v", tc.addr, err, tc.public)
		}
	}
	if err := dialControl("tcp", "not-an-address", nil); err == nil {
		t.Error("dialControl accepted an unparsable address")
	}
}

// TestTenantIdPClientRefusesLoopback: the guarded client does not connect to a server on
// loopback, while the development client does.
func TestTenantIdPClientRefusesLoopback(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/big" {
			_, _ = w.Write(make([]byte, maxProviderBody+1))
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	u := "http://" + ln.Addr().String() + "/.well-known/openid-configuration"
	if _, err := newProviderClient(false).Get(u); err == nil || !strings.Contains(err.Error(), "not public") {
		t.Fatalf("guarded client: err = %v, want a refusal", err)
	}
	res, err := newProviderClient(true).Get(u)
	if err != nil {
		t.Fatalf("development client: %v", err)
	}
	_ = res.Body.Close()
	// An answer past the bound fails to read instead of filling memory.
	res, err = newProviderClient(true).Get("http://" + ln.Addr().String() + "/big")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(res.Body); err == nil {
		t.Fatal("an oversized answer was read whole")
	}
	_ = res.Body.Close()
	// A name that resolves to loopback is refused as well: the check is on the dialled address.
	if _, err := newProviderClient(false).Get("http://localhost:" + strconv.Itoa(ln.Addr().(*net.TCPAddr).Port) + "/"); err == nil {
		t.Fatal("guarded client reached localhost")
	}
}
