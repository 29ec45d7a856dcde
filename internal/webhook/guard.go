package webhook

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/cofferhq/coffer"
)

// A project admin chooses where Coffer sends requests: without a guard, a webhook could aim
// the server at its own network (a cloud metadata service, an admin port on loopback, a
// database). The URL's addresses are checked when the webhook is registered, and again on
// every connection, on the address actually dialled (a net.Dialer Control function), so a
// name that resolves to a public address at registration and to an internal one later (DNS
// rebinding) is refused as well.

// blocked are the ranges that are not the public internet, beyond what netip's predicates
// (loopback, private incl. fc00::/7, link-local, multicast, unspecified) cover.
var blocked = []struct {
	prefix netip.Prefix
	what   string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), `"this network"`},
	{netip.MustParsePrefix("100.64.0.0/10"), "shared (carrier-grade NAT)"},
	{netip.MustParsePrefix("192.0.0.0/24"), "IETF protocol assignment"},
	{netip.MustParsePrefix("192.0.2.0/24"), "documentation"},
	{netip.MustParsePrefix("198.18.0.0/15"), "benchmarking"},
	{netip.MustParsePrefix("198.51.100.0/24"), "documentation"},
	{netip.MustParsePrefix("203.0.113.0/24"), "documentation"},
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved"},
	{netip.MustParsePrefix("::/96"), "IPv4-compatible"},
	{netip.MustParsePrefix("64:ff9b::/96"), "NAT64"},
	{netip.MustParsePrefix("64:ff9b:1::/48"), "NAT64"},
	{netip.MustParsePrefix("100::/64"), "discard"},
	{netip.MustParsePrefix("2001::/23"), "IETF protocol assignment"},
	{netip.MustParsePrefix("2001:db8::/32"), "documentation"},
	{netip.MustParsePrefix("2002::/16"), "6to4"},
	{netip.MustParsePrefix("fec0::/10"), "site-local"},
}

// CheckAddr refuses an address a webhook must not be delivered to, saying which kind it is.
// IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) are judged as the IPv4 address they carry.
func CheckAddr(addr netip.Addr) error {
	if !addr.IsValid() {
		return fmt.Errorf("invalid address")
	}
	a := addr.Unmap().WithZone("")
	var what string
	switch {
	case a.IsUnspecified():
		what = "unspecified"
	case a.IsLoopback():
		what = "loopback"
	case a.IsPrivate():
		what = "private"
	case a.IsLinkLocalUnicast(), a.IsLinkLocalMulticast():
		what = "link-local"
	case a.IsInterfaceLocalMulticast(), a.IsMulticast():
		what = "multicast"
	case a.Is4() && a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		what = "broadcast"
	}
	for _, b := range blocked {
		if what == "" && b.prefix.Contains(a) {
			what = b.what
		}
	}
	if what != "" {
		return fmt.Errorf("%s is a %s address, not a public one", addr.WithZone(""), what)
	}
	return nil
}

// Resolver answers a host name's addresses.
type Resolver func(ctx context.Context, host string) ([]netip.Addr, error)

// systemResolver is the system's DNS.
func systemResolver(ctx context.Context, host string) ([]netip.Addr, error) {
	return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
}

// Guard checks webhook URLs and dials their receivers.
type Guard struct {
	allowPrivate bool
	resolve      Resolver
	dialer       *net.Dialer
}

// NewGuard returns a guard. allowPrivate (COFFER_WEBHOOK_ALLOW_PRIVATE) turns the address
// check off; resolve replaces DNS when not nil (tests of rebinding).
func NewGuard(allowPrivate bool, resolve Resolver) *Guard {
	if resolve == nil {
		resolve = systemResolver
	}
	g := &Guard{allowPrivate: allowPrivate, resolve: resolve,
		dialer: &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}}
	if !allowPrivate {
		g.dialer.Control = control
	}
	return g
}

// errRefused marks a connection the guard refused, so that the delivery's recorded error says
// so plainly.
var errRefused = errors.New("refused to connect")

// control runs after name resolution, just before the socket connects, with the address
// being dialled: the last word on where a delivery goes.
func control(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w to %q: %v", errRefused, address, err)
	}
	if err := CheckAddr(ap.Addr()); err != nil {
		return fmt.Errorf("%w: %v (COFFER_WEBHOOK_ALLOW_PRIVATE is off)", errRefused, err)
	}
	return nil
}

// DialContext resolves the host and connects to its addresses in turn; every connection
// passes the dialer's Control check.
func (g *Guard) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return nil, err
	}
	var addrs []netip.Addr
	if a, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{a}
	} else if addrs, err = g.resolve(ctx, host); err != nil {
		return nil, err
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("%s has no address", host)
	}
	var first error
	for _, a := range addrs {
		conn, err := g.dialer.DialContext(ctx, network, net.JoinHostPort(a.Unmap().String(), port))
		if err == nil {
			return conn, nil
		}
		if first == nil {
			first = err
		}
	}
	return nil, first
}

// maxURL bounds a webhook URL.
const maxURL = 2048

// CheckURL validates a webhook URL at registration: absolute HTTPS, a host, no credentials or
// fragment, and (unless private addresses are allowed) every address the host resolves to
// public. It returns the URL as it will be called.
func (g *Guard) CheckURL(ctx context.Context, raw string) (string, error) {
	if raw == "" {
		return "", coffer.Errorf(coffer.EINVALID, "url is required")
	}
	if len(raw) > maxURL || !utf8.ValidString(raw) || strings.ContainsFunc(raw, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return "", coffer.Errorf(coffer.EINVALID, "url must be at most %d bytes of printable UTF-8", maxURL)
	}
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() {
		return "", coffer.Errorf(coffer.EINVALID, "url must be an absolute https:// URL")
	}
	switch {
	case u.Scheme != "https":
		return "", coffer.Errorf(coffer.EINVALID, "url must use https://")
	case u.User != nil:
		return "", coffer.Errorf(coffer.EINVALID, "url must not hold a user name or password: authenticate deliveries by their signature")
	case u.Fragment != "" || strings.Contains(raw, "#"):
		return "", coffer.Errorf(coffer.EINVALID, "url must not have a fragment")
	case u.Hostname() == "":
		return "", coffer.Errorf(coffer.EINVALID, "url must name a host")
	}
	if p := u.Port(); p != "" {
		if n, err := netip.ParseAddrPort("0.0.0.0:" + p); err != nil || n.Port() == 0 {
			return "", coffer.Errorf(coffer.EINVALID, "url has an invalid port")
		}
	}
	if g.allowPrivate {
		return u.String(), nil
	}
	host := u.Hostname()
	var addrs []netip.Addr
	if a, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{a}
	} else {
		lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if addrs, err = g.resolve(lctx, host); err != nil || len(addrs) == 0 {
			return "", coffer.Wrap(coffer.EINVALID, err, fmt.Sprintf("url: the host %s could not be resolved", host))
		}
	}
	for _, a := range addrs {
		if err := CheckAddr(a); err != nil {
			return "", coffer.Wrap(coffer.EINVALID, err, fmt.Sprintf(
				"url: host %s: %v; webhooks are only delivered to public addresses", host, err))
		}
	}
	return u.String(), nil
}
