// Package awskms implements crypto.KeyWrapper with AWS KMS: data keys are generated and wrapped
// by KMS under a symmetric KMS key, bound to an EncryptionContext naming where they belong, and
// unwrapped by KMS on a cache miss. Key material of the KMS key never leaves KMS.
//
// It owns the mapping from the SDK to Coffer's crypto contract: which KMS errors mean "the key
// cannot be used now" (crypto.ErrKeyUnavailable) and which mean "this wrapped key does not open
// here" (crypto.ErrKeyIntegrity), the start-up checks on the configured key, and the SDK client
// configuration (credentials chain, region, endpoint, bounded retries) in NewClient.
//
// It depends only on the small API interface, which *kms.Client satisfies; its tests run the
// real client over HTTP against kmstest, a protocol-faithful KMS test server.
package awskms

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/cofferhq/coffer/internal/crypto"
)

// API is the part of *kms.Client the wrapper uses.
type API interface {
	GenerateDataKey(ctx context.Context, in *kms.GenerateDataKeyInput, optFns ...func(*kms.Options)) (*kms.GenerateDataKeyOutput, error)
	Encrypt(ctx context.Context, in *kms.EncryptInput, optFns ...func(*kms.Options)) (*kms.EncryptOutput, error)
	Decrypt(ctx context.Context, in *kms.DecryptInput, optFns ...func(*kms.Options)) (*kms.DecryptOutput, error)
	DescribeKey(ctx context.Context, in *kms.DescribeKeyInput, optFns ...func(*kms.Options)) (*kms.DescribeKeyOutput, error)
}

var _ API = (*kms.Client)(nil)

// Operation names passed to Options.Observe.
const (
	OpGenerateDataKey = "GenerateDataKey"
	OpEncrypt         = "Encrypt"
	OpDecrypt         = "Decrypt"
	OpDescribeKey     = "DescribeKey"
)

// Options tunes a Wrapper.
type Options struct {
	// Observe, if set, is called after every KMS call with the operation (one of the Op
	// constants), the call's error as the wrapper returns it (a *crypto.KeyError, a context
	// error, or nil) and how long the call took, retries included. It is meant for metrics
	// and must be fast and safe for concurrent use.
	Observe func(op string, err error, d time.Duration)
}

// Wrapper wraps data keys under one KMS key. It is safe for concurrent use.
type Wrapper struct {
	client  API
	keyID   string // the key ARN
	observe func(op string, err error, d time.Duration)
}

var (
	_ crypto.KeyWrapper       = (*Wrapper)(nil)
	_ crypto.DataKeyGenerator = (*Wrapper)(nil)
	_ crypto.Prober           = (*Wrapper)(nil)
)

// Errors are constant strings so that no input can reach a log through them.
var (
	errMaterialLen = fmt.Errorf("awskms: data key material must be %d bytes", crypto.KeySize)
	errNoKeyID     = errors.New("awskms: no KMS key configured")
)

// maxCiphertext is KMS's limit on CiphertextBlob; longer blobs cannot be anything KMS wrapped.
const maxCiphertext = 6144

// New checks the KMS key named by keyID (a key id, key ARN, alias name or alias ARN) and returns
// a Wrapper for it. The key must exist, be enabled, and be a symmetric encryption key
// (SYMMETRIC_DEFAULT, ENCRYPT_DECRYPT); otherwise the error, a *crypto.KeyError, says why.
// KeyID returns the key's ARN, whatever form keyID took: an alias can later point elsewhere,
// but wrapped keys must keep naming the key that wrapped them.
func New(ctx context.Context, client API, keyID string, opts Options) (*Wrapper, error) {
	if keyID == "" {
		return nil, errNoKeyID
	}
	w := &Wrapper{client: client, keyID: keyID, observe: opts.Observe}
	md, err := w.describe(ctx, keyID)
	if err != nil {
		return nil, err
	}
	arn := aws.ToString(md.Arn)
	if arn == "" {
		return nil, crypto.Unavailable(keyID, "kms returned no key ARN", nil)
	}
	if md.KeySpec != types.KeySpecSymmetricDefault || md.KeyUsage != types.KeyUsageTypeEncryptDecrypt {
		return nil, crypto.Unavailable(arn, "not a symmetric encryption key",
			fmt.Errorf("key spec %s and usage %s, want %s and %s", md.KeySpec, md.KeyUsage,
				types.KeySpecSymmetricDefault, types.KeyUsageTypeEncryptDecrypt))
	}
	if err := checkEnabled(arn, md); err != nil {
		return nil, err
	}
	w.keyID = arn
	return w, nil
}

// WithKey returns a Wrapper for another KMS key on the same client and options, without
// checking it: for tenant-owned keys, whose ARN is known and whose use is decided by IAM at
// each call. arn must be a key ARN, since KMS reports the ARN of the key it used and the
// wrapper refuses answers naming a different key.
func (w *Wrapper) WithKey(arn string) *Wrapper {
	return &Wrapper{client: w.client, keyID: arn, observe: w.observe}
}

// KeyID returns the ARN of the KMS key that new data keys are wrapped under.
func (w *Wrapper) KeyID() string { return w.keyID }

// WrapKey encrypts material under KeyID with KMS Encrypt, binding it to ec.
func (w *Wrapper) WrapKey(ctx context.Context, material []byte, ec crypto.EncryptionContext) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(material) != crypto.KeySize {
		return nil, errMaterialLen
	}
	start := time.Now()
	out, err := w.client.Encrypt(ctx, &kms.EncryptInput{
		KeyId:             aws.String(w.keyID),
		Plaintext:         material,
		EncryptionContext: ec,
	})
	err = w.done(ctx, OpEncrypt, w.keyID, start, err)
	if err != nil {
		return nil, err
	}
	if got := aws.ToString(out.KeyId); got != w.keyID {
		return nil, crypto.Unavailable(w.keyID, "kms answered for another key", fmt.Errorf("response names %q", got))
	}
	if len(out.CiphertextBlob) == 0 {
		return nil, crypto.Unavailable(w.keyID, "kms returned no ciphertext", nil)
	}
	return out.CiphertextBlob, nil
}

// UnwrapKey decrypts wrapped with KMS Decrypt. It always names the key (kekID, the ARN stored
// with the wrapped key), so KMS refuses a blob made by any other key, and it always passes ec,
// so a blob moved from another tenant or environment does not open.
func (w *Wrapper) UnwrapKey(ctx context.Context, kekID string, wrapped []byte, ec crypto.EncryptionContext) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if kekID == "" {
		return nil, crypto.Unavailable("", "no KMS key named for the wrapped key", nil)
	}
	if len(wrapped) == 0 || len(wrapped) > maxCiphertext {
		return nil, crypto.IntegrityError(kekID, reasonNoOpen, nil)
	}
	start := time.Now()
	out, err := w.client.Decrypt(ctx, &kms.DecryptInput{
		KeyId:             aws.String(kekID),
		CiphertextBlob:    wrapped,
		EncryptionContext: ec,
	})
	err = w.done(ctx, OpDecrypt, kekID, start, err)
	if err != nil {
		return nil, err
	}
	if len(out.Plaintext) != crypto.KeySize {
		// Something other than a data key was wrapped under this context: not ours to use.
		clear(out.Plaintext)
		return nil, crypto.IntegrityError(kekID, "wrapped value is not a data key", nil)
	}
	return out.Plaintext, nil
}

// GenerateDataKey asks KMS for a fresh AES-256 data key under KeyID, bound to ec, and returns
// its plaintext and wrapped forms. The plaintext is handed over, not copied; it is wiped here
// only when the answer is refused.
func (w *Wrapper) GenerateDataKey(ctx context.Context, ec crypto.EncryptionContext) (material, wrapped []byte, err error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	start := time.Now()
	out, err := w.client.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{
		KeyId:             aws.String(w.keyID),
		KeySpec:           types.DataKeySpecAes256,
		EncryptionContext: ec,
	})
	err = w.done(ctx, OpGenerateDataKey, w.keyID, start, err)
	if err != nil {
		return nil, nil, err
	}
	switch got := aws.ToString(out.KeyId); {
	case got != w.keyID:
		clear(out.Plaintext)
		return nil, nil, crypto.Unavailable(w.keyID, "kms answered for another key", fmt.Errorf("response names %q", got))
	case len(out.Plaintext) != crypto.KeySize:
		clear(out.Plaintext)
		return nil, nil, crypto.Unavailable(w.keyID, "kms returned a data key of the wrong size", nil)
	case len(out.CiphertextBlob) == 0:
		clear(out.Plaintext)
		return nil, nil, crypto.Unavailable(w.keyID, "kms returned no ciphertext", nil)
	}
	return out.Plaintext, out.CiphertextBlob, nil
}

// Probe checks with DescribeKey that KeyID exists and is enabled. It says nothing about
// whether the caller may use it (DescribeKey and Decrypt are separate permissions), but
// it fails on every outage, credential or key-state problem a readiness check should see.
func (w *Wrapper) Probe(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	md, err := w.describe(ctx, w.keyID)
	if err != nil {
		return err
	}
	return checkEnabled(w.keyID, md)
}

func (w *Wrapper) describe(ctx context.Context, keyID string) (*types.KeyMetadata, error) {
	start := time.Now()
	out, err := w.client.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(keyID)})
	if err = w.done(ctx, OpDescribeKey, keyID, start, err); err != nil {
		return nil, err
	}
	if out.KeyMetadata == nil {
		return nil, crypto.Unavailable(keyID, "kms returned no key metadata", nil)
	}
	return out.KeyMetadata, nil
}

func checkEnabled(keyID string, md *types.KeyMetadata) error {
	if md.KeyState == types.KeyStateEnabled && md.Enabled {
		return nil
	}
	cause := fmt.Errorf("key state %s", md.KeyState)
	if md.KeyState == types.KeyStateDisabled {
		return crypto.Unavailable(keyID, reasonDisabled, cause)
	}
	return crypto.Unavailable(keyID, reasonInvalidState, cause)
}

// done classifies the error of the KMS call on kekID that began at start, and reports it.
func (w *Wrapper) done(ctx context.Context, op, kekID string, start time.Time, err error) error {
	if err != nil {
		err = classify(ctx, kekID, err)
	}
	if w.observe != nil {
		w.observe(op, err, time.Since(start))
	}
	return err
}
