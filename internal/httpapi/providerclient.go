package httpapi

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"syscall"
	"time"
)

// Tenant owners choose their provider's issuer, and Coffer then fetches its discovery
// document and keys and posts codes to its token endpoint: without a guard, an owner could
// point these requests at the server's own network (a cloud metadata service, an admin
// port on loopback). The guard is on the dialled address, after name resolution and on every
// redirect, so a name that resolves inside, or re-resolves there later, is refused as well.

// blockedPrefixes are address ranges that are not the public internet, beyond what netip's
// predicates cover: shared address space (carrier NAT, some clouds' metadata), the IETF and
// benchmarking blocks, "this network", the reserved block, and NAT64, which reaches IPv4
// addresses through IPv6.
var blockedPrefixes = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("240.0.0.0/4"),
	netip.MustParsePrefix("64:ff9b::/96"),
	netip.MustParsePrefix("64:ff9b:1::/48"),
}

// publicAddress refuses an address a tenant's provider must not be reached at: loopback,
// private, link-local, unspecified, multicast and the blocks above.
func publicAddress(addr netip.Addr) error {
	addr = addr.Unmap()
	if !addr.IsValid() || addr.IsLoopback() || addr.IsPrivate() || addr.IsLinkLocalUnicast() || addr.IsLinkLocalMulticast() ||
		addr.IsInterfaceLocalMulticast() || addr.IsMulticast() || addr.IsUnspecified() {
		return fmt.Errorf("address %s is not public", addr)
	}
	for _, p := range blockedPrefixes {
		if p.Contains(addr) {
			return fmt.Errorf("address %s is not public", addr)
		}
	}
	return nil
}

// dialControl checks the address a connection is about to be made to.
func dialControl(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("refusing to dial %q: %w", address, err)
	}
	return publicAddress(ap.Addr())
}

// newProviderClient is the HTTP client for tenants' providers. allowPrivate (development
// mode, where a test provider runs on loopback) turns the address guard off. No proxy from
// the environment is used: it would dial on Coffer's behalf, past the guard.
func newProviderClient(allowPrivate bool) *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	if !allowPrivate {
		d.Control = dialControl
	}
	return &http.Client{
		Timeout: providerTimeout,
		Transport: limitedBodies{next: &http.Transport{
			Proxy:                 nil,
			DialContext:           d.DialContext,
			ForceAttemptHTTP2:     true,
			MaxIdleConns:          20,
			IdleConnTimeout:       90 * time.Second,
			TLSHandshakeTimeout:   5 * time.Second,
			ResponseHeaderTimeout: providerTimeout,
		}, max: maxProviderBody},
	}
}

// maxProviderBody bounds what a tenant's provider may send in one answer (discovery, keys,
// tokens are a few kilobytes): the libraries read answers whole, so a provider sending
// without end would otherwise fill the server's memory.
const maxProviderBody = 1 << 20

// limitedBodies fails reading an answer past max bytes.
type limitedBodies struct {
	next http.RoundTripper
	max  int64
}

func (l limitedBodies) RoundTrip(r *http.Request) (*http.Response, error) {
	res, err := l.next.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	res.Body = http.MaxBytesReader(nil, res.Body, l.max)
	return res, nil
}
