// Package coffer holds what every layer of Coffer shares: the application error type and its
// codes. Transport layers map codes to their own status values in exactly one table; anything
// that is not a *Error is shown to users as an internal error and never echoed raw.
package coffer

import (
	"errors"
	"fmt"
)

// Error codes. They are part of the public API (the "code" field of every error response), so
// they never change meaning.
const (
	EINVALID       = "validation_failed"   // input is well-formed but not acceptable
	EBADREQUEST    = "bad_request"         // input could not be parsed
	EUNAUTHORIZED  = "unauthorized"        // no valid credentials
	EFORBIDDEN     = "forbidden"           // authenticated and allowed to see the object, not to do this
	ENOTFOUND      = "not_found"           // missing, or in a tenant the caller cannot see
	ECONFLICT      = "conflict"            // duplicate or state conflict
	ETOOLARGE      = "payload_too_large"   // body or value above its limit
	ERATELIMITED   = "rate_limited"        // too many attempts
	EPRECONDITION  = "precondition_failed" // a compare-and-set condition does not hold
	EGONE          = "gone"                // existed, and was destroyed for good
	EUNAVAILABLE   = "unavailable"         // a dependency (database, key service, audit) is down
	EINTERNAL      = "internal"            // a bug; details are logged, never returned
	EUNSUPPORTED   = "unsupported_media"   // body is not JSON
	EMETHOD        = "method_not_allowed"
	EROUTENOTFOUND = "route_not_found"
)

// Error is an error whose message is safe to show to the caller. Messages must never contain
// secret values, SQL or internal paths.
type Error struct {
	Code    string
	Message string
	// Err is the underlying cause, kept for logs and errors.Is; never shown to callers.
	Err error
	// Details are caller-safe facts that help the caller recover (a secret's current
	// version, say), shown beside the message. Never values.
	Details map[string]any
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.Err)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error with a formatted, caller-safe message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Wrap returns an *Error with a caller-safe message that keeps cause for logs.
func Wrap(code string, cause error, message string) *Error {
	return &Error{Code: code, Message: message, Err: cause}
}

// ErrorCode returns the code of the first *Error in err's chain, or EINTERNAL.
func ErrorCode(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return EINTERNAL
}

// ErrorMessage returns the caller-safe message of err, or a generic one for unknown errors.
func ErrorMessage(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "internal error"
}
