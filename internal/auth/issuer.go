package auth

import (
	"net"
	"net/url"

	"github.com/cofferhq/coffer"
)

// ValidateIssuerURL checks an OpenID provider's issuer as configured by an operator or a
// tenant owner, without contacting it. It must be HTTPS, as discovery and tokens travel over
// it, except on loopback (tests, a provider on the same host) or in development mode, like the
// server's own plain HTTP. field names the setting in the message. The issuer is kept exactly
// as given: ID tokens must name it character for character.
func ValidateIssuerURL(field, issuer string, dev bool) error {
	if err := checkIssuer(issuer); err != nil {
		return coffer.Errorf(coffer.EINVALID, "%s must be an https:// URL of at most 1024 characters", field)
	}
	u, err := url.Parse(issuer)
	if err != nil || u.Host == "" || u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return coffer.Errorf(coffer.EINVALID, "%s must be an https:// URL without query or fragment", field)
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && (LoopbackHost(u.Hostname()) || dev):
	default:
		return coffer.Errorf(coffer.EINVALID, "%s must be https:// (plain http only on a loopback address, or with COFFER_DEV=true)", field)
	}
	return nil
}

// LoopbackHost reports whether host (a name or an address, without port) is this machine.
func LoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
