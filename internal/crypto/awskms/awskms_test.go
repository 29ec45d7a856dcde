package awskms_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/cofferhq/coffer/internal/crypto"
	"github.com/cofferhq/coffer/internal/crypto/awskms"
	"github.com/cofferhq/coffer/internal/crypto/awskms/kmstest"
	"github.com/cofferhq/coffer/internal/crypto/cryptotest"
)

var prod = crypto.EncryptionContext{
	"tenant":      "9a1f3c52-7f0e-4c4e-8d0b-3f3b2a9c1e77",
	"project":     "payments-api",
	"environment": "production",
}

// unknownARN is well formed but names no key on the test server.
const unknownARN = "arn:aws:kms:us-east-1:111122223333:key/00000000-0000-4000-8000-000000000000"

// start returns a test server, a key on it, and a wrapper for that key using the real SDK
// client over HTTP.
func start(t *testing.T, opts awskms.Options) (*kmstest.Running, string, *awskms.Wrapper) {
	t.Helper()
	k := kmstest.Start(t)
	arn := k.CreateKey()
	w, err := awskms.New(t.Context(), k.Client, arn, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return k, arn, w
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func newMaterial(t *testing.T) []byte {
	t.Helper()
	m := make([]byte, crypto.KeySize)
	_, err := rand.Read(m)
	must(t, err)
	return m
}

func wrap(t *testing.T, w crypto.KeyWrapper, ec crypto.EncryptionContext) (material, blob []byte) {
	t.Helper()
	material = newMaterial(t)
	blob, err := w.WrapKey(t.Context(), material, ec)
	if err != nil {
		t.Fatalf("WrapKey: %v", err)
	}
	return material, blob
}

// keyError checks that err is a *crypto.KeyError of class, naming kekID, with reason, and
// that its text carries none of the secrets.
func keyError(t *testing.T, err, class error, kekID, reason string, secrets ...[]byte) {
	t.Helper()
	if err == nil {
		t.Fatal("got no error")
	}
	var ke *crypto.KeyError
	if !errors.As(err, &ke) {
		t.Fatalf("error %v is not a *crypto.KeyError", err)
	}
	if !errors.Is(err, class) || ke.KEKID != kekID || ke.Reason != reason {
		t.Fatalf("got class %v, key %q, reason %q; want %v, %q, %q (%v)", ke.Class, ke.KEKID, ke.Reason, class, kekID, reason, err)
	}
	msg := err.Error()
	for _, s := range secrets {
		for _, enc := range []string{string(s), hex.EncodeToString(s), base64.StdEncoding.EncodeToString(s), base64.RawStdEncoding.EncodeToString(s)} {
			if len(s) >= 8 && strings.Contains(msg, enc) {
				t.Fatalf("error %q leaks a secret", msg)
			}
		}
	}
}

func TestConformance(t *testing.T) {
	_, _, w := start(t, awskms.Options{})
	cryptotest.TestKeyWrapper(t, w)
}

func TestEncryptionContextBindsPlace(t *testing.T) {
	_, arn, w := start(t, awskms.Options{})
	ctx := t.Context()

	staging := crypto.EncryptionContext{}
	for k, v := range prod {
		staging[k] = v
	}
	staging["environment"] = "staging"

	material, blob := wrap(t, w, prod)
	_, err := w.UnwrapKey(ctx, arn, blob, staging)
	keyError(t, err, crypto.ErrKeyIntegrity, arn, "wrapped data key does not open here", material, blob)

	genMaterial, genBlob, err := w.GenerateDataKey(ctx, prod)
	must(t, err)
	_, err = w.UnwrapKey(ctx, arn, genBlob, staging)
	keyError(t, err, crypto.ErrKeyIntegrity, arn, "wrapped data key does not open here", genMaterial, genBlob)

	// The context is encoded with lengths, so moving a byte from a key to its value changes it.
	abc := crypto.EncryptionContext{"ab": "c"}
	aBC := crypto.EncryptionContext{"a": "bc"}
	for _, pair := range [][2]crypto.EncryptionContext{{abc, aBC}, {aBC, abc}} {
		material, blob := wrap(t, w, pair[0])
		_, err := w.UnwrapKey(ctx, arn, blob, pair[1])
		keyError(t, err, crypto.ErrKeyIntegrity, arn, "wrapped data key does not open here", material, blob)
		got, err := w.UnwrapKey(ctx, arn, blob, pair[0])
		if err != nil || !bytes.Equal(got, material) {
			t.Fatalf("UnwrapKey with the wrapping context: %v", err)
		}
	}
}

func TestDecryptWithAnotherKeysARN(t *testing.T) {
	k, _, w := start(t, awskms.Options{})
	other := k.CreateKey()
	material, blob := wrap(t, w, prod)
	_, err := w.UnwrapKey(t.Context(), other, blob, prod)
	keyError(t, err, crypto.ErrKeyIntegrity, other, "wrapped data key does not open here", material, blob)
	if n := k.Count("Decrypt"); n != 1 {
		t.Fatalf("an integrity failure was tried %d times, want once", n)
	}
}

func TestErrorClasses(t *testing.T) {
	tests := []struct {
		name   string
		fault  func(t *testing.T, k *kmstest.Running, arn string) (kekID string)
		reason string
	}{
		{"disabled key", func(t *testing.T, k *kmstest.Running, arn string) string {
			must(t, k.DisableKey(arn))
			return arn
		}, "disabled"},
		{"scheduled deletion", func(t *testing.T, k *kmstest.Running, arn string) string {
			must(t, k.ScheduleDeletion(arn))
			return arn
		}, "pending deletion or invalid state"},
		{"unknown key", func(t *testing.T, k *kmstest.Running, arn string) string {
			return unknownARN
		}, "not found"},
		{"key in another region", func(t *testing.T, k *kmstest.Running, arn string) string {
			return strings.Replace(arn, ":us-east-1:", ":eu-west-1:", 1)
		}, "not found"},
		{"throttled", func(t *testing.T, k *kmstest.Running, arn string) string {
			k.SetThrottle(true)
			return arn
		}, "throttled"},
		{"outage", func(t *testing.T, k *kmstest.Running, arn string) string {
			k.SetOutage(true)
			return arn
		}, "unreachable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, arn, base := start(t, awskms.Options{})
			material, blob := wrap(t, base, prod)
			kekID := tt.fault(t, k, arn)
			w := base.WithKey(kekID)
			ctx := t.Context()
			begin := time.Now()

			got, err := w.WrapKey(ctx, material, prod)
			keyError(t, err, crypto.ErrKeyUnavailable, kekID, tt.reason, material, blob)
			if got != nil {
				t.Error("WrapKey returned a blob alongside an error")
			}
			got, err = w.UnwrapKey(ctx, kekID, blob, prod)
			keyError(t, err, crypto.ErrKeyUnavailable, kekID, tt.reason, material, blob)
			if got != nil {
				t.Error("UnwrapKey returned material alongside an error")
			}
			m, b, err := w.GenerateDataKey(ctx, prod)
			keyError(t, err, crypto.ErrKeyUnavailable, kekID, tt.reason, material, blob)
			if m != nil || b != nil {
				t.Error("GenerateDataKey returned keys alongside an error")
			}
			keyError(t, w.Probe(ctx), crypto.ErrKeyUnavailable, kekID, tt.reason)

			// Transient faults are retried, a bounded number of times and quickly.
			if d := time.Since(begin); d > 2*time.Second {
				t.Errorf("four failing calls took %v", d)
			}
			if tt.reason == "throttled" || tt.reason == "unreachable" {
				if n := k.Count("Decrypt"); n != kmstest.MaxAttempts {
					t.Errorf("Decrypt was tried %d times, want %d", n, kmstest.MaxAttempts)
				}
			}
		})
	}
}

func TestEmptyKEKIDIsRefusedLocally(t *testing.T) {
	k, _, w := start(t, awskms.Options{})
	material, blob := wrap(t, w, prod)
	_, err := w.UnwrapKey(t.Context(), "", blob, prod)
	keyError(t, err, crypto.ErrKeyUnavailable, "", "no KMS key named for the wrapped key", material, blob)
	if n := k.Count("Decrypt"); n != 0 {
		t.Fatalf("KMS was called %d times for an empty key id", n)
	}
}

func TestNew(t *testing.T) {
	k := kmstest.Start(t)
	ctx := t.Context()
	arn := k.CreateKey()
	_, err := k.Client.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String("alias/coffer"), TargetKeyId: aws.String(arn)})
	must(t, err)

	t.Run("resolves to the key ARN", func(t *testing.T) {
		id := arn[strings.LastIndex(arn, "/")+1:]
		for _, ref := range []string{arn, id, "alias/coffer", "arn:aws:kms:us-east-1:111122223333:alias/coffer"} {
			w, err := awskms.New(ctx, k.Client, ref, awskms.Options{})
			if err != nil {
				t.Fatalf("New(%q): %v", ref, err)
			}
			if w.KeyID() != arn {
				t.Fatalf("New(%q).KeyID() = %q, want %q", ref, w.KeyID(), arn)
			}
		}
	})

	rsa, err := k.Client.CreateKey(ctx, &kms.CreateKeyInput{KeySpec: types.KeySpecRsa2048, KeyUsage: types.KeyUsageTypeEncryptDecrypt})
	must(t, err)
	hmac, err := k.Client.CreateKey(ctx, &kms.CreateKeyInput{KeySpec: types.KeySpecHmac256, KeyUsage: types.KeyUsageTypeGenerateVerifyMac})
	must(t, err)
	disabled := k.CreateKey()
	must(t, k.DisableKey(disabled))
	deleted := k.CreateKey()
	must(t, k.ScheduleDeletion(deleted))

	tests := []struct {
		name, keyID, named, reason string
	}{
		{"disabled key", disabled, disabled, "disabled"},
		{"key pending deletion", deleted, deleted, "pending deletion or invalid state"},
		{"asymmetric key", aws.ToString(rsa.KeyMetadata.Arn), aws.ToString(rsa.KeyMetadata.Arn), "not a symmetric encryption key"},
		{"HMAC key", aws.ToString(hmac.KeyMetadata.Arn), aws.ToString(hmac.KeyMetadata.Arn), "not a symmetric encryption key"},
		{"unknown alias", "alias/nope", "alias/nope", "not found"},
		{"unknown key", unknownARN, unknownARN, "not found"},
	}
	for _, tt := range tests {
		t.Run("refuses "+tt.name, func(t *testing.T) {
			w, err := awskms.New(ctx, k.Client, tt.keyID, awskms.Options{})
			if w != nil {
				t.Fatal("New returned a wrapper alongside an error")
			}
			keyError(t, err, crypto.ErrKeyUnavailable, tt.named, tt.reason)
			if !strings.Contains(err.Error(), tt.named) {
				t.Fatalf("error %q does not name the key", err)
			}
		})
	}

	t.Run("refuses an empty key id", func(t *testing.T) {
		if _, err := awskms.New(ctx, k.Client, "", awskms.Options{}); err == nil {
			t.Fatal("New accepted an empty key id")
		}
	})
}

func TestProbe(t *testing.T) {
	k, arn, w := start(t, awskms.Options{})
	ctx := t.Context()
	must(t, w.Probe(ctx))
	must(t, k.DisableKey(arn))
	keyError(t, w.Probe(ctx), crypto.ErrKeyUnavailable, arn, "disabled")
	must(t, k.EnableKey(arn))
	must(t, w.Probe(ctx))
	must(t, k.ScheduleDeletion(arn))
	keyError(t, w.Probe(ctx), crypto.ErrKeyUnavailable, arn, "pending deletion or invalid state")
}

func TestWithKey(t *testing.T) {
	k, arn, w := start(t, awskms.Options{})
	ctx := t.Context()
	tenantARN := k.CreateKey()
	k.Reset()

	tenant := w.WithKey(tenantARN)
	if tenant.KeyID() != tenantARN || w.KeyID() != arn {
		t.Fatalf("WithKey: KeyIDs %q and %q", tenant.KeyID(), w.KeyID())
	}
	if n := k.Count("DescribeKey"); n != 0 {
		t.Fatalf("WithKey called DescribeKey %d times", n)
	}
	material, blob := wrap(t, tenant, prod)
	// Any wrapper on the client opens it, given the KEK id stored next to it.
	got, err := w.UnwrapKey(ctx, tenantARN, blob, prod)
	if err != nil || !bytes.Equal(got, material) {
		t.Fatalf("UnwrapKey with the tenant key's ARN: %v", err)
	}
	_, err = w.UnwrapKey(ctx, arn, blob, prod)
	keyError(t, err, crypto.ErrKeyIntegrity, arn, "wrapped data key does not open here", material, blob)

	// KMS names the key it used by ARN; a wrapper given an alias refuses to record anything else.
	must(t, k.CreateAlias("tenant", tenantARN))
	byAlias := w.WithKey("alias/tenant")
	_, err = byAlias.WrapKey(ctx, material, prod)
	keyError(t, err, crypto.ErrKeyUnavailable, "alias/tenant", "kms answered for another key", material)
	_, _, err = byAlias.GenerateDataKey(ctx, prod)
	keyError(t, err, crypto.ErrKeyUnavailable, "alias/tenant", "kms answered for another key")
}

func TestContextErrorsAreReturnedAsIs(t *testing.T) {
	k, arn, w := start(t, awskms.Options{})
	material, blob := wrap(t, w, prod)

	canceled, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := w.UnwrapKey(canceled, arn, blob, prod); !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled context: got %v", err)
	}

	k.SetLatency(500 * time.Millisecond)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	_, err := w.WrapKey(ctx, material, prod)
	var ke *crypto.KeyError
	if !errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ke) {
		t.Fatalf("expired context: got %v, want the bare context error", err)
	}
}

func TestObserve(t *testing.T) {
	type call struct {
		op  string
		err error
	}
	var mu sync.Mutex
	var calls []call
	observe := func(op string, err error, d time.Duration) {
		if d <= 0 {
			t.Errorf("%s observed with duration %v", op, d)
		}
		mu.Lock()
		defer mu.Unlock()
		calls = append(calls, call{op, err})
	}
	k, arn, w := start(t, awskms.Options{Observe: observe})
	ctx := t.Context()
	_, blob := wrap(t, w, prod)
	_, err := w.UnwrapKey(ctx, arn, blob, prod)
	must(t, err)
	_, _, err = w.GenerateDataKey(ctx, prod)
	must(t, err)
	must(t, w.Probe(ctx))
	_, wrongErr := w.UnwrapKey(ctx, arn, blob, nil)
	k.SetOutage(true)
	_, outageErr := w.WithKey(k.CreateKey()).WrapKey(ctx, newMaterial(t), prod)

	mu.Lock()
	defer mu.Unlock()
	var ops []string
	for _, c := range calls {
		ops = append(ops, c.op)
	}
	want := []string{"DescribeKey", "Encrypt", "Decrypt", "GenerateDataKey", "DescribeKey", "Decrypt", "Encrypt"}
	if !slices.Equal(ops, want) {
		t.Fatalf("observed %v, want %v", ops, want)
	}
	for i, c := range calls[:5] {
		if c.err != nil {
			t.Errorf("call %d (%s) observed error %v", i, c.op, c.err)
		}
	}
	if calls[5].err != wrongErr || !errors.Is(wrongErr, crypto.ErrKeyIntegrity) {
		t.Errorf("failed Decrypt observed %v, returned %v", calls[5].err, wrongErr)
	}
	if calls[6].err != outageErr || !errors.Is(outageErr, crypto.ErrKeyUnavailable) {
		t.Errorf("failed Encrypt observed %v, returned %v", calls[6].err, outageErr)
	}
}

// fakeAPI returns canned answers, for the response checks that a well-behaved KMS (and so
// kmstest) never triggers. Everything else is tested against kmstest with the real client.
type fakeAPI struct {
	awskms.API
	out *kms.GenerateDataKeyOutput
}

func (f fakeAPI) GenerateDataKey(context.Context, *kms.GenerateDataKeyInput, ...func(*kms.Options)) (*kms.GenerateDataKeyOutput, error) {
	return f.out, nil
}

func (f fakeAPI) DescribeKey(_ context.Context, in *kms.DescribeKeyInput, _ ...func(*kms.Options)) (*kms.DescribeKeyOutput, error) {
	return &kms.DescribeKeyOutput{KeyMetadata: &types.KeyMetadata{
		Arn: in.KeyId, KeyId: in.KeyId, Enabled: true, KeyState: types.KeyStateEnabled,
		KeySpec: types.KeySpecSymmetricDefault, KeyUsage: types.KeyUsageTypeEncryptDecrypt,
	}}, nil
}

func TestGenerateDataKeyRefusesAndWipesOddAnswers(t *testing.T) {
	tests := []struct {
		name, keyID string
		n           int
		reason      string
	}{
		{"another key", "arn:aws:kms:us-east-1:111122223333:key/other", 32, "kms answered for another key"},
		{"short key", unknownARN, 16, "kms returned a data key of the wrong size"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plaintext := bytes.Repeat([]byte{0xAB}, tt.n)
			api := fakeAPI{out: &kms.GenerateDataKeyOutput{KeyId: aws.String(tt.keyID), Plaintext: plaintext, CiphertextBlob: []byte("blob")}}
			w, err := awskms.New(t.Context(), api, unknownARN, awskms.Options{})
			must(t, err)
			m, b, err := w.GenerateDataKey(t.Context(), prod)
			keyError(t, err, crypto.ErrKeyUnavailable, unknownARN, tt.reason)
			if m != nil || b != nil {
				t.Fatal("keys returned alongside an error")
			}
			if !bytes.Equal(plaintext, make([]byte, tt.n)) {
				t.Fatal("refused plaintext was not wiped")
			}
		})
	}
}

// isolateAWSEnv points the SDK's credential chain at the environment only.
func isolateAWSEnv(t *testing.T) {
	dir := t.TempDir()
	for k, v := range map[string]string{
		"AWS_ACCESS_KEY_ID":           "AKIAKMSTEST",
		"AWS_SECRET_ACCESS_KEY":       "kmstest-secret-access-key",
		"AWS_SESSION_TOKEN":           "",
		"AWS_PROFILE":                 "",
		"AWS_REGION":                  "",
		"AWS_DEFAULT_REGION":          "",
		"AWS_ENDPOINT_URL":            "",
		"AWS_ENDPOINT_URL_KMS":        "",
		"AWS_CONFIG_FILE":             filepath.Join(dir, "config"),
		"AWS_SHARED_CREDENTIALS_FILE": filepath.Join(dir, "credentials"),
		"AWS_EC2_METADATA_DISABLED":   "true",
	} {
		t.Setenv(k, v)
	}
}

func TestNewClient(t *testing.T) {
	isolateAWSEnv(t)
	k := kmstest.Start(t)
	arn := k.CreateKey()
	ctx := t.Context()

	client, err := awskms.NewClient(ctx, awskms.Config{Region: kmstest.DefaultRegion, Endpoint: k.URL})
	must(t, err)
	w, err := awskms.New(ctx, client, arn, awskms.Options{})
	must(t, err)
	material, blob := wrap(t, w, prod)
	got, err := w.UnwrapKey(ctx, arn, blob, prod)
	if err != nil || !bytes.Equal(got, material) {
		t.Fatalf("round trip through NewClient's client: %v", err)
	}

	k.SetOutage(true)
	k.Reset()
	begin := time.Now()
	keyError(t, w.Probe(ctx), crypto.ErrKeyUnavailable, arn, "unreachable")
	if n := k.Count("DescribeKey"); n != 3 {
		t.Errorf("NewClient's client tried %d times during an outage, want 3", n)
	}
	if d := time.Since(begin); d > 2*time.Second {
		t.Errorf("an outage took %v to report", d)
	}

	for _, endpoint := range []string{"ftp://kms.local", "kms.local:4599", "http://", "://"} {
		if _, err := awskms.NewClient(ctx, awskms.Config{Region: "us-east-1", Endpoint: endpoint}); err == nil {
			t.Errorf("NewClient accepted endpoint %q", endpoint)
		}
	}
	if _, err := awskms.NewClient(ctx, awskms.Config{Endpoint: k.URL}); err == nil {
		t.Error("NewClient accepted a configuration without a region")
	}
	t.Setenv("AWS_REGION", "eu-central-1")
	client, err = awskms.NewClient(ctx, awskms.Config{})
	must(t, err)
	if r := client.Options().Region; r != "eu-central-1" {
		t.Errorf("region from the environment: got %q", r)
	}
}
