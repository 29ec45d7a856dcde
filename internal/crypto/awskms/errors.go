package awskms

import (
	"context"
	"errors"
	"net"

	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/cofferhq/coffer/internal/crypto"
)

// Reasons given in *crypto.KeyError. They are fixed phrases: operators read them in logs and
// on /readyz, and the KMS response that led to them stays in the error's cause.
const (
	reasonNoOpen         = "wrapped data key does not open here"
	reasonAccessDenied   = "access denied"
	reasonCredentials    = "credentials rejected"
	reasonDisabled       = "disabled"
	reasonInvalidState   = "pending deletion or invalid state"
	reasonNotFound       = "not found"
	reasonKeyUnavailable = "key unavailable in kms"
	reasonKMSFault       = "kms internal error"
	reasonKMSTimeout     = "kms dependency timeout"
	reasonThrottled      = "throttled"
	reasonUnreachable    = "unreachable"
	reasonWrongUsage     = "not a symmetric encryption key"
	reasonFailed         = "kms request failed"
)

// integrityCodes are the KMS errors meaning the blob does not belong where it was found: it is
// damaged, was wrapped under another context, or by another key. Retrying cannot help.
var integrityCodes = map[string]bool{
	"InvalidCiphertextException": true,
	"IncorrectKeyException":      true,
}

// unavailableReasons maps every other KMS error code that is expected in Coffer's use to the
// reason the key cannot be used now. Codes not listed are unavailable with reasonFailed.
var unavailableReasons = map[string]string{
	"AccessDeniedException":  reasonAccessDenied,
	"NotAuthorizedException": reasonAccessDenied,

	"UnrecognizedClientException":         reasonCredentials,
	"InvalidSignatureException":           reasonCredentials,
	"IncompleteSignatureException":        reasonCredentials,
	"MissingAuthenticationTokenException": reasonCredentials,
	"ExpiredTokenException":               reasonCredentials,
	"InvalidClientTokenId":                reasonCredentials,

	"DisabledException":        reasonDisabled,
	"KMSInvalidStateException": reasonInvalidState,

	"NotFoundException":   reasonNotFound,
	"InvalidArnException": reasonNotFound,

	"KeyUnavailableException":    reasonKeyUnavailable,
	"DependencyTimeoutException": reasonKMSTimeout,
	"KMSInternalException":       reasonKMSFault,

	"InvalidKeyUsageException": reasonWrongUsage,

	"ThrottlingException":           reasonThrottled,
	"LimitExceededException":        reasonThrottled,
	"TooManyRequestsException":      reasonThrottled,
	"RequestLimitExceeded":          reasonThrottled,
	"ProvisionedThroughputExceeded": reasonThrottled,
}

// classify turns an error from a KMS call on kekID into Coffer's error contract. The caller's
// own cancellation is returned as the context's error: it is not the key's fault.
func classify(ctx context.Context, kekID string, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil &&
		(errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
		return ctxErr
	}
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		code := apiErr.ErrorCode()
		if integrityCodes[code] {
			return crypto.IntegrityError(kekID, reasonNoOpen, err)
		}
		if reason, ok := unavailableReasons[code]; ok {
			return crypto.Unavailable(kekID, reason, err)
		}
		return crypto.Unavailable(kekID, reasonFailed, err)
	}
	var sendErr *smithyhttp.RequestSendError
	var netErr net.Error
	if errors.As(err, &sendErr) || errors.As(err, &netErr) ||
		errors.Is(err, context.DeadlineExceeded) {
		// A deadline here is the HTTP client's, not the caller's: KMS did not answer in time.
		return crypto.Unavailable(kekID, reasonUnreachable, err)
	}
	return crypto.Unavailable(kekID, reasonFailed, err)
}
