package kmstest

import (
	"net/http/httptest"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kms"
)

// MaxAttempts is how many times the client made by Start tries a request before giving up, so
// a test can tell a retried request from a single one by Count.
const MaxAttempts = 3

// Running is a Server listening on a local port, with an SDK client pointed at it.
type Running struct {
	*Server
	// URL is the server's base URL, for a client's BaseEndpoint (or COFFER_KMS_ENDPOINT).
	URL string
	// Client is an ordinary *kms.Client that signs with static test credentials and retries
	// at most MaxAttempts times with millisecond backoff, so fault tests finish quickly.
	Client *kms.Client
}

// Start serves a new Server on a local port until the test ends.
func Start(t testing.TB, opts ...Option) *Running {
	t.Helper()
	s := New(opts...)
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	client := kms.NewFromConfig(aws.Config{
		Region:      s.region,
		Credentials: credentials.NewStaticCredentialsProvider("AKIAKMSTEST", "kmstest-secret-access-key", ""),
		Retryer: func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) {
				o.MaxAttempts = MaxAttempts
				o.MaxBackoff = 2 * time.Millisecond
				// Faults are injected on purpose; a drained retry quota would turn them into
				// a different error than the one under test.
				o.RateLimiter = ratelimit.None
			})
		},
	}, func(o *kms.Options) { o.BaseEndpoint = aws.String(ts.URL) })
	return &Running{Server: s, URL: ts.URL, Client: client}
}
