package kmstest_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/cofferhq/coffer/internal/crypto/awskms/kmstest"
)

const validAuth = "AWS4-HMAC-SHA256 Credential=AKIAKMSTEST/20250101/us-east-1/kms/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=0123456789abcdef"

// post sends a hand-made request, so the checks the SDK would never fail can be tested.
func post(t *testing.T, url string, header map[string]string, body string) (status int, errType, bodyType string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url+"/", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var e struct {
		Type string `json:"__type"`
	}
	if resp.StatusCode != http.StatusOK {
		if err := json.Unmarshal(raw, &e); err != nil {
			t.Fatalf("error body %q is not JSON: %v", raw, err)
		}
	}
	return resp.StatusCode, resp.Header.Get("X-Amzn-ErrorType"), e.Type
}

func signedHeaders(target string) map[string]string {
	return map[string]string{
		"Content-Type":  "application/x-amz-json-1.1",
		"X-Amz-Target":  target,
		"X-Amz-Date":    "20250101T000000Z",
		"Authorization": validAuth,
	}
}

func TestRefusesUnsignedRequests(t *testing.T) {
	k := kmstest.Start(t)
	arn := k.CreateKey()
	body := `{"KeyId":"` + arn + `"}`
	tests := []struct {
		name   string
		change func(h map[string]string)
		want   string
	}{
		{"no Authorization", func(h map[string]string) { delete(h, "Authorization") }, "MissingAuthenticationTokenException"},
		{"not SigV4", func(h map[string]string) { h["Authorization"] = "Bearer abc" }, "IncompleteSignatureException"},
		{"no SignedHeaders", func(h map[string]string) {
			h["Authorization"] = "AWS4-HMAC-SHA256 Credential=AKIAKMSTEST/20250101/us-east-1/kms/aws4_request, Signature=00"
		}, "IncompleteSignatureException"},
		{"no Signature", func(h map[string]string) {
			h["Authorization"] = "AWS4-HMAC-SHA256 Credential=AKIAKMSTEST/20250101/us-east-1/kms/aws4_request, SignedHeaders=host"
		}, "IncompleteSignatureException"},
		{"no X-Amz-Date", func(h map[string]string) { delete(h, "X-Amz-Date") }, "IncompleteSignatureException"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := signedHeaders("TrentService.DescribeKey")
			tt.change(h)
			status, header, typ := post(t, k.URL, h, body)
			if status != http.StatusBadRequest || header != tt.want || typ != tt.want {
				t.Fatalf("got %d %q/%q, want 400 %s", status, header, typ, tt.want)
			}
		})
	}
	t.Run("signed request is served", func(t *testing.T) {
		if status, _, typ := post(t, k.URL, signedHeaders("TrentService.DescribeKey"), body); status != http.StatusOK {
			t.Fatalf("got %d %s, want 200", status, typ)
		}
	})
}

func TestUnknownOperation(t *testing.T) {
	k := kmstest.Start(t)
	for _, target := range []string{"TrentService.Sign", "TrentService.", "Decrypt", ""} {
		status, header, typ := post(t, k.URL, signedHeaders(target), "{}")
		if status != http.StatusBadRequest || header != "UnknownOperationException" || typ != header {
			t.Errorf("target %q: got %d %q/%q, want 400 UnknownOperationException", target, status, header, typ)
		}
	}
}

func TestCountsRequests(t *testing.T) {
	k := kmstest.Start(t)
	arn := k.CreateKey()
	ctx := t.Context()
	for range 2 {
		if _, err := k.Client.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(arn), Plaintext: []byte("x")}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := k.Client.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(arn)}); err != nil {
		t.Fatal(err)
	}
	if got := k.Count("Encrypt"); got != 2 {
		t.Errorf("Count(Encrypt) = %d, want 2", got)
	}
	if got := k.Count("DescribeKey"); got != 1 {
		t.Errorf("Count(DescribeKey) = %d, want 1", got)
	}
	if got := k.Count("Decrypt"); got != 0 {
		t.Errorf("Count(Decrypt) = %d, want 0", got)
	}

	k.SetThrottle(true)
	if _, err := k.Client.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(arn)}); err == nil {
		t.Fatal("DescribeKey succeeded while throttled")
	}
	if got := k.Count("DescribeKey"); got != 1+kmstest.MaxAttempts {
		t.Errorf("after a throttled call Count(DescribeKey) = %d, want %d (one per attempt)", got, 1+kmstest.MaxAttempts)
	}

	k.Reset()
	if got := k.Count("Encrypt") + k.Count("DescribeKey"); got != 0 {
		t.Errorf("after Reset counts sum to %d, want 0", got)
	}
}

func TestRoundTrips(t *testing.T) {
	k := kmstest.Start(t)
	ctx := t.Context()
	arn := k.CreateKey()
	if err := k.CreateAlias("coffer", arn); err != nil {
		t.Fatal(err)
	}
	id := arn[strings.LastIndex(arn, "/")+1:]
	ec := map[string]string{"tenant": "t1", "environment": "production"}
	plaintext := []byte("a data key, in truth")

	for _, ref := range []string{arn, id, "alias/coffer", "arn:aws:kms:us-east-1:111122223333:alias/coffer"} {
		t.Run("encrypt with "+ref, func(t *testing.T) {
			enc, err := k.Client.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(ref), Plaintext: plaintext, EncryptionContext: ec})
			if err != nil {
				t.Fatalf("Encrypt: %v", err)
			}
			if aws.ToString(enc.KeyId) != arn || enc.EncryptionAlgorithm != types.EncryptionAlgorithmSpecSymmetricDefault {
				t.Fatalf("Encrypt answered key %q, algorithm %q", aws.ToString(enc.KeyId), enc.EncryptionAlgorithm)
			}
			if bytes.Contains(enc.CiphertextBlob, plaintext) {
				t.Fatal("ciphertext contains the plaintext")
			}
			for _, keyID := range []*string{aws.String(ref), nil} {
				dec, err := k.Client.Decrypt(ctx, &kms.DecryptInput{KeyId: keyID, CiphertextBlob: enc.CiphertextBlob, EncryptionContext: ec})
				if err != nil {
					t.Fatalf("Decrypt (KeyId %v): %v", keyID != nil, err)
				}
				if !bytes.Equal(dec.Plaintext, plaintext) || aws.ToString(dec.KeyId) != arn {
					t.Fatalf("Decrypt (KeyId %v) returned other plaintext or key %q", keyID != nil, aws.ToString(dec.KeyId))
				}
			}
		})
	}

	t.Run("GenerateDataKey", func(t *testing.T) {
		for _, in := range []*kms.GenerateDataKeyInput{
			{KeySpec: types.DataKeySpecAes256},
			{KeySpec: types.DataKeySpecAes128},
			{NumberOfBytes: aws.Int32(64)},
		} {
			in.KeyId, in.EncryptionContext = aws.String(arn), ec
			out, err := k.Client.GenerateDataKey(ctx, in)
			if err != nil {
				t.Fatalf("GenerateDataKey: %v", err)
			}
			want := map[types.DataKeySpec]int{types.DataKeySpecAes256: 32, types.DataKeySpecAes128: 16, "": 64}[in.KeySpec]
			if len(out.Plaintext) != want || aws.ToString(out.KeyId) != arn {
				t.Fatalf("GenerateDataKey: %d bytes under %q, want %d under %q", len(out.Plaintext), aws.ToString(out.KeyId), want, arn)
			}
			dec, err := k.Client.Decrypt(ctx, &kms.DecryptInput{KeyId: aws.String(arn), CiphertextBlob: out.CiphertextBlob, EncryptionContext: ec})
			if err != nil || !bytes.Equal(dec.Plaintext, out.Plaintext) {
				t.Fatalf("generated key does not decrypt to its plaintext: %v", err)
			}
		}
		_, err := k.Client.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: aws.String(arn)})
		assertCode(t, err, "ValidationException")
	})

	t.Run("ReEncrypt", func(t *testing.T) {
		other := k.CreateKey()
		enc, err := k.Client.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(arn), Plaintext: plaintext, EncryptionContext: ec})
		if err != nil {
			t.Fatal(err)
		}
		dstEC := map[string]string{"tenant": "t2"}
		re, err := k.Client.ReEncrypt(ctx, &kms.ReEncryptInput{
			CiphertextBlob: enc.CiphertextBlob, SourceKeyId: aws.String(arn), SourceEncryptionContext: ec,
			DestinationKeyId: aws.String(other), DestinationEncryptionContext: dstEC,
		})
		if err != nil {
			t.Fatalf("ReEncrypt: %v", err)
		}
		if aws.ToString(re.SourceKeyId) != arn || aws.ToString(re.KeyId) != other {
			t.Fatalf("ReEncrypt names source %q and destination %q", aws.ToString(re.SourceKeyId), aws.ToString(re.KeyId))
		}
		dec, err := k.Client.Decrypt(ctx, &kms.DecryptInput{KeyId: aws.String(other), CiphertextBlob: re.CiphertextBlob, EncryptionContext: dstEC})
		if err != nil || !bytes.Equal(dec.Plaintext, plaintext) {
			t.Fatalf("re-encrypted blob does not decrypt under the destination: %v", err)
		}
	})

	t.Run("DescribeKey and key states", func(t *testing.T) {
		key := k.CreateKey()
		md := describe(t, k, key)
		if aws.ToString(md.Arn) != key || md.KeyState != types.KeyStateEnabled || !md.Enabled ||
			md.KeySpec != types.KeySpecSymmetricDefault || md.KeyUsage != types.KeyUsageTypeEncryptDecrypt ||
			aws.ToString(md.AWSAccountId) != kmstest.DefaultAccount {
			t.Fatalf("unexpected metadata %+v", md)
		}
		if d := time.Since(aws.ToTime(md.CreationDate)); d < 0 || d > time.Minute {
			t.Fatalf("CreationDate %v is not now", md.CreationDate)
		}
		if _, err := k.Client.DisableKey(ctx, &kms.DisableKeyInput{KeyId: aws.String(key)}); err != nil {
			t.Fatal(err)
		}
		if md := describe(t, k, key); md.KeyState != types.KeyStateDisabled || md.Enabled {
			t.Fatalf("after DisableKey: state %s, enabled %v", md.KeyState, md.Enabled)
		}
		if _, err := k.Client.EnableKey(ctx, &kms.EnableKeyInput{KeyId: aws.String(key)}); err != nil {
			t.Fatal(err)
		}
		del, err := k.Client.ScheduleKeyDeletion(ctx, &kms.ScheduleKeyDeletionInput{KeyId: aws.String(key), PendingWindowInDays: aws.Int32(7)})
		if err != nil {
			t.Fatal(err)
		}
		if del.KeyState != types.KeyStatePendingDeletion || aws.ToInt32(del.PendingWindowInDays) != 7 || aws.ToString(del.KeyId) != key {
			t.Fatalf("ScheduleKeyDeletion answered %+v", del)
		}
		if md := describe(t, k, key); md.KeyState != types.KeyStatePendingDeletion || md.DeletionDate == nil {
			t.Fatalf("after ScheduleKeyDeletion: state %s, deletion date %v", md.KeyState, md.DeletionDate)
		}
		_, err = k.Client.EnableKey(ctx, &kms.EnableKeyInput{KeyId: aws.String(key)})
		assertType[*types.KMSInvalidStateException](t, err)
	})

	t.Run("CreateKey over the API", func(t *testing.T) {
		out, err := k.Client.CreateKey(ctx, &kms.CreateKeyInput{Description: aws.String("signing")})
		if err != nil {
			t.Fatal(err)
		}
		if out.KeyMetadata.KeySpec != types.KeySpecSymmetricDefault {
			t.Fatalf("default key spec %s", out.KeyMetadata.KeySpec)
		}
		rsa, err := k.Client.CreateKey(ctx, &kms.CreateKeyInput{KeySpec: types.KeySpecRsa2048, KeyUsage: types.KeyUsageTypeSignVerify})
		if err != nil {
			t.Fatal(err)
		}
		_, err = k.Client.Encrypt(ctx, &kms.EncryptInput{KeyId: rsa.KeyMetadata.Arn, Plaintext: plaintext})
		assertType[*types.InvalidKeyUsageException](t, err)
		_, err = k.Client.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String("alias/coffer"), TargetKeyId: out.KeyMetadata.KeyId})
		assertType[*types.AlreadyExistsException](t, err)
	})
}

// TestErrors checks that each failure reaches the SDK as the typed error real KMS produces.
func TestErrors(t *testing.T) {
	k := kmstest.Start(t)
	ctx := t.Context()
	arn := k.CreateKey()
	other := k.CreateKey()
	ec := map[string]string{"ab": "c"}
	enc, err := k.Client.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(arn), Plaintext: []byte("data key"), EncryptionContext: ec})
	if err != nil {
		t.Fatal(err)
	}
	blob := enc.CiphertextBlob
	decrypt := func(keyID string, blob []byte, ec map[string]string) error {
		_, err := k.Client.Decrypt(ctx, &kms.DecryptInput{KeyId: aws.String(keyID), CiphertextBlob: blob, EncryptionContext: ec})
		return err
	}
	flipped := bytes.Clone(blob)
	flipped[len(flipped)-1] ^= 1

	assertType[*types.InvalidCiphertextException](t, decrypt(arn, blob, map[string]string{"a": "bc"}))
	assertType[*types.InvalidCiphertextException](t, decrypt(arn, blob, nil))
	assertType[*types.InvalidCiphertextException](t, decrypt(arn, flipped, ec))
	assertType[*types.InvalidCiphertextException](t, decrypt(arn, blob[:10], ec))
	assertType[*types.IncorrectKeyException](t, decrypt(other, blob, ec))
	assertType[*types.NotFoundException](t, decrypt("arn:aws:kms:us-east-1:111122223333:key/00000000-0000-4000-8000-000000000000", blob, ec))
	assertType[*types.NotFoundException](t, decrypt("arn:aws:kms:eu-west-1:111122223333:key/"+arn[strings.LastIndex(arn, "/")+1:], blob, ec))
	assertType[*types.NotFoundException](t, decrypt("alias/missing", blob, ec))
	assertType[*types.InvalidArnException](t, decrypt("arn:aws:kms", blob, ec))

	if err := k.DisableKey(arn); err != nil {
		t.Fatal(err)
	}
	assertType[*types.DisabledException](t, decrypt(arn, blob, ec))
	if err := k.EnableKey(arn); err != nil {
		t.Fatal(err)
	}
	if err := decrypt(arn, blob, ec); err != nil {
		t.Fatalf("Decrypt after EnableKey: %v", err)
	}
	if err := k.ScheduleDeletion(arn); err != nil {
		t.Fatal(err)
	}
	assertType[*types.KMSInvalidStateException](t, decrypt(arn, blob, ec))

	k.SetThrottle(true)
	assertCode(t, decrypt(other, blob, ec), "ThrottlingException")
	k.SetThrottle(false)

	k.SetOutage(true)
	err = decrypt(other, blob, ec)
	var sendErr *smithyhttp.RequestSendError
	if !errors.As(err, &sendErr) {
		t.Fatalf("during an outage got %v, want a *smithyhttp.RequestSendError", err)
	}
	k.SetOutage(false)

	k.SetLatency(30 * time.Millisecond)
	start := time.Now()
	if _, err := k.Client.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(other)}); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 30*time.Millisecond {
		t.Fatalf("DescribeKey took %v despite 30ms latency", d)
	}
}

func describe(t *testing.T, k *kmstest.Running, keyID string) *types.KeyMetadata {
	t.Helper()
	out, err := k.Client.DescribeKey(t.Context(), &kms.DescribeKeyInput{KeyId: aws.String(keyID)})
	if err != nil {
		t.Fatalf("DescribeKey: %v", err)
	}
	return out.KeyMetadata
}

func assertType[E error](t *testing.T, err error) {
	t.Helper()
	var target E
	if !errors.As(err, &target) {
		t.Fatalf("got error %v, want %T", err, target)
	}
}

func assertCode(t *testing.T, err error, code string) {
	t.Helper()
	var apiErr smithy.APIError
	if !errors.As(err, &apiErr) || apiErr.ErrorCode() != code {
		t.Fatalf("got error %v, want API error %s", err, code)
	}
}
