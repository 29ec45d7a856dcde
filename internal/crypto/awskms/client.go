package awskms

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/kms"
)

// Retry bounds for NewClient's client. KMS sits on the read path of every cache miss, so an
// outage must fail fast (a few hundred milliseconds of backoff) rather than hold requests for
// the SDK's default 20-second backoff ceiling; throttling still gets up to a second between
// tries. Per-call deadlines come from the caller's context.
const (
	maxAttempts = 3
	maxBackoff  = time.Second
)

// Config names the KMS endpoint to use. Credentials always come from the standard AWS chain
// (environment, shared config and credentials files, web identity, ECS/EC2 roles).
type Config struct {
	// Region is the key's AWS region, e.g. "eu-west-1". Empty falls back to the chain
	// (AWS_REGION, shared config); a client with no region at all is refused.
	Region string
	// Endpoint, if set, replaces the regional endpoint: a VPC interface endpoint, or a local
	// test server such as kmstest. It must be an http or https URL.
	Endpoint string
}

// NewClient returns a KMS client for cfg with bounded retries.
func NewClient(ctx context.Context, cfg Config) (*kms.Client, error) {
	if cfg.Endpoint != "" {
		u, err := url.Parse(cfg.Endpoint)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return nil, errors.New("awskms: KMS endpoint must be an http or https URL")
		}
	}
	opts := []func(*config.LoadOptions) error{
		config.WithRetryer(func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) {
				o.MaxAttempts = maxAttempts
				o.MaxBackoff = maxBackoff
			})
		}),
	}
	if cfg.Region != "" {
		opts = append(opts, config.WithRegion(cfg.Region))
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("awskms: load AWS configuration: %w", err)
	}
	if awsCfg.Region == "" {
		return nil, errors.New("awskms: no AWS region configured for KMS")
	}
	return kms.NewFromConfig(awsCfg, func(o *kms.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
	}), nil
}
