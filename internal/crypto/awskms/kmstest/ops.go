package kmstest

import (
	"crypto/rand"
	"encoding/json"
	"net/http"
	"slices"
	"time"
)

// operation handles one decoded request body with s.mu held. Field names below are exactly
// those of the KMS API reference; []byte fields travel as standard base64, as in KMS.
type operation func(s *Server, body []byte) (any, *apiError)

var operations = map[string]operation{
	"CreateKey":           (*Server).opCreateKey,
	"DescribeKey":         (*Server).opDescribeKey,
	"CreateAlias":         (*Server).opCreateAlias,
	"EnableKey":           (*Server).opEnableKey,
	"DisableKey":          (*Server).opDisableKey,
	"ScheduleKeyDeletion": (*Server).opScheduleKeyDeletion,
	"GenerateDataKey":     (*Server).opGenerateDataKey,
	"Encrypt":             (*Server).opEncrypt,
	"Decrypt":             (*Server).opDecrypt,
	"ReEncrypt":           (*Server).opReEncrypt,
}

const maxPlaintext = 4096 // KMS's limit for Encrypt

var (
	keySpecs = []string{
		specSymmetric, "RSA_2048", "RSA_3072", "RSA_4096", "ECC_NIST_P256", "ECC_NIST_P384",
		"ECC_NIST_P521", "ECC_SECG_P256K1", "HMAC_224", "HMAC_256", "HMAC_384", "HMAC_512", "SM2",
	}
	keyUsages = []string{usageEncrypt, "SIGN_VERIFY", "GENERATE_VERIFY_MAC", "KEY_AGREEMENT"}
)

func decode(body []byte, v any) *apiError {
	// The decoder's message may quote input, so it is not passed on.
	if err := json.Unmarshal(body, v); err != nil {
		return errf("SerializationException", "request body does not match the operation's input")
	}
	return nil
}

type keyMetadata struct {
	AWSAccountId                string
	KeyId                       string
	Arn                         string
	CreationDate                float64
	Enabled                     bool
	Description                 string
	KeyUsage                    string
	KeyState                    string
	DeletionDate                *float64 `json:",omitempty"`
	PendingDeletionWindowInDays *int32   `json:",omitempty"`
	Origin                      string
	KeyManager                  string
	CustomerMasterKeySpec       string
	KeySpec                     string
	EncryptionAlgorithms        []string `json:",omitempty"`
	MultiRegion                 bool
}

func epochSeconds(t time.Time) float64 { return float64(t.UnixMilli()) / 1000 }

func (s *Server) metadata(k *key) keyMetadata {
	md := keyMetadata{
		AWSAccountId:          s.account,
		KeyId:                 k.id.String(),
		Arn:                   k.arn,
		CreationDate:          epochSeconds(k.created),
		Enabled:               k.state == stateEnabled,
		Description:           k.description,
		KeyUsage:              k.usage,
		KeyState:              k.state,
		Origin:                originAWSKMS,
		KeyManager:            keyManagerOwner,
		CustomerMasterKeySpec: k.spec,
		KeySpec:               k.spec,
	}
	if k.aead != nil {
		md.EncryptionAlgorithms = []string{algSymmetric}
	}
	if k.state == statePendingDeletion {
		d, w := epochSeconds(k.deletion), k.window
		md.DeletionDate, md.PendingDeletionWindowInDays = &d, &w
	}
	return md
}

func (s *Server) opCreateKey(body []byte) (any, *apiError) {
	var in struct {
		Description           string
		KeyUsage              string
		KeySpec               string
		CustomerMasterKeySpec string
		Origin                string
		MultiRegion           bool
	}
	if aerr := decode(body, &in); aerr != nil {
		return nil, aerr
	}
	if in.KeySpec != "" && in.CustomerMasterKeySpec != "" {
		return nil, errf("ValidationException", "KeySpec and CustomerMasterKeySpec cannot both be specified")
	}
	spec := firstNonEmpty(in.KeySpec, in.CustomerMasterKeySpec, specSymmetric)
	usage := firstNonEmpty(in.KeyUsage, usageEncrypt)
	if !slices.Contains(keySpecs, spec) || !slices.Contains(keyUsages, usage) {
		return nil, errf("ValidationException", "unsupported KeySpec %q or KeyUsage %q", spec, usage)
	}
	if spec == specSymmetric && usage != usageEncrypt {
		return nil, errf("ValidationException", "KeySpec SYMMETRIC_DEFAULT requires KeyUsage ENCRYPT_DECRYPT")
	}
	if in.Origin != "" && in.Origin != originAWSKMS {
		return nil, errf("UnsupportedOperationException", "kmstest supports only Origin AWS_KMS")
	}
	if in.MultiRegion {
		return nil, errf("UnsupportedOperationException", "kmstest does not support multi-Region keys")
	}
	k, aerr := s.createKey(in.Description, spec, usage)
	if aerr != nil {
		return nil, aerr
	}
	return struct{ KeyMetadata keyMetadata }{s.metadata(k)}, nil
}

// firstNonEmpty returns the first non-empty string.
func firstNonEmpty(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

type keyIDInput struct{ KeyId string }

func (s *Server) opDescribeKey(body []byte) (any, *apiError) {
	var in keyIDInput
	if aerr := decode(body, &in); aerr != nil {
		return nil, aerr
	}
	k, aerr := s.resolve(in.KeyId)
	if aerr != nil {
		return nil, aerr
	}
	return struct{ KeyMetadata keyMetadata }{s.metadata(k)}, nil
}

func (s *Server) opCreateAlias(body []byte) (any, *apiError) {
	var in struct{ AliasName, TargetKeyId string }
	if aerr := decode(body, &in); aerr != nil {
		return nil, aerr
	}
	if aerr := s.createAlias(in.AliasName, in.TargetKeyId); aerr != nil {
		return nil, aerr
	}
	return struct{}{}, nil
}

func (s *Server) opEnableKey(body []byte) (any, *apiError) {
	var in keyIDInput
	if aerr := decode(body, &in); aerr != nil {
		return nil, aerr
	}
	if aerr := s.setEnabled(in.KeyId, true); aerr != nil {
		return nil, aerr
	}
	return struct{}{}, nil
}

func (s *Server) opDisableKey(body []byte) (any, *apiError) {
	var in keyIDInput
	if aerr := decode(body, &in); aerr != nil {
		return nil, aerr
	}
	if aerr := s.setEnabled(in.KeyId, false); aerr != nil {
		return nil, aerr
	}
	return struct{}{}, nil
}

func (s *Server) opScheduleKeyDeletion(body []byte) (any, *apiError) {
	var in struct {
		KeyId               string
		PendingWindowInDays *int32
	}
	if aerr := decode(body, &in); aerr != nil {
		return nil, aerr
	}
	days := int32(30)
	if in.PendingWindowInDays != nil {
		days = *in.PendingWindowInDays
	}
	k, aerr := s.scheduleDeletion(in.KeyId, days)
	if aerr != nil {
		return nil, aerr
	}
	return struct {
		KeyId               string
		DeletionDate        float64
		KeyState            string
		PendingWindowInDays int32
	}{k.arn, epochSeconds(k.deletion), k.state, k.window}, nil
}

func (s *Server) opGenerateDataKey(body []byte) (any, *apiError) {
	var in struct {
		KeyId             string
		KeySpec           string
		NumberOfBytes     *int32
		EncryptionContext map[string]string
	}
	if aerr := decode(body, &in); aerr != nil {
		return nil, aerr
	}
	k, aerr := s.encryptingKey(in.KeyId)
	if aerr != nil {
		return nil, aerr
	}
	var n int
	switch {
	case in.KeySpec != "" && in.NumberOfBytes != nil:
		return nil, errf("ValidationException", "Please specify either number of bytes or key spec, not both.")
	case in.KeySpec == "AES_256":
		n = 32
	case in.KeySpec == "AES_128":
		n = 16
	case in.KeySpec != "":
		return nil, errf("ValidationException", "KeySpec must be AES_256 or AES_128")
	case in.NumberOfBytes != nil && *in.NumberOfBytes >= 1 && *in.NumberOfBytes <= 1024:
		n = int(*in.NumberOfBytes)
	case in.NumberOfBytes != nil:
		return nil, errf("ValidationException", "NumberOfBytes must be between 1 and 1024")
	default:
		return nil, errf("ValidationException", "Please specify either number of bytes or key spec.")
	}
	plaintext := make([]byte, n)
	if _, err := rand.Read(plaintext); err != nil {
		return nil, &apiError{status: http.StatusInternalServerError, code: "KMSInternalException", msg: "random source failed"}
	}
	blob, aerr := k.seal(plaintext, in.EncryptionContext)
	if aerr != nil {
		return nil, aerr
	}
	return struct {
		CiphertextBlob []byte
		Plaintext      []byte
		KeyId          string
	}{blob, plaintext, k.arn}, nil
}

func (s *Server) opEncrypt(body []byte) (any, *apiError) {
	var in struct {
		KeyId               string
		Plaintext           []byte
		EncryptionContext   map[string]string
		EncryptionAlgorithm string
	}
	if aerr := decode(body, &in); aerr != nil {
		return nil, aerr
	}
	defer clear(in.Plaintext)
	k, aerr := s.encryptingKey(in.KeyId)
	if aerr != nil {
		return nil, aerr
	}
	if aerr := checkAlgorithm(k, in.EncryptionAlgorithm); aerr != nil {
		return nil, aerr
	}
	if len(in.Plaintext) == 0 || len(in.Plaintext) > maxPlaintext {
		return nil, errf("ValidationException", "Plaintext must be between 1 and %d bytes", maxPlaintext)
	}
	blob, aerr := k.seal(in.Plaintext, in.EncryptionContext)
	if aerr != nil {
		return nil, aerr
	}
	return struct {
		CiphertextBlob      []byte
		KeyId               string
		EncryptionAlgorithm string
	}{blob, k.arn, algSymmetric}, nil
}

func (s *Server) opDecrypt(body []byte) (any, *apiError) {
	var in struct {
		CiphertextBlob      []byte
		EncryptionContext   map[string]string
		KeyId               string
		EncryptionAlgorithm string
	}
	if aerr := decode(body, &in); aerr != nil {
		return nil, aerr
	}
	k, plaintext, aerr := s.decrypt(in.CiphertextBlob, in.KeyId, in.EncryptionContext, in.EncryptionAlgorithm)
	if aerr != nil {
		return nil, aerr
	}
	return struct {
		KeyId               string
		Plaintext           []byte
		EncryptionAlgorithm string
	}{k.arn, plaintext, algSymmetric}, nil
}

func (s *Server) opReEncrypt(body []byte) (any, *apiError) {
	var in struct {
		CiphertextBlob                 []byte
		SourceEncryptionContext        map[string]string
		SourceKeyId                    string
		SourceEncryptionAlgorithm      string
		DestinationKeyId               string
		DestinationEncryptionContext   map[string]string
		DestinationEncryptionAlgorithm string
	}
	if aerr := decode(body, &in); aerr != nil {
		return nil, aerr
	}
	dst, aerr := s.encryptingKey(in.DestinationKeyId)
	if aerr != nil {
		return nil, aerr
	}
	if aerr := checkAlgorithm(dst, in.DestinationEncryptionAlgorithm); aerr != nil {
		return nil, aerr
	}
	src, plaintext, aerr := s.decrypt(in.CiphertextBlob, in.SourceKeyId, in.SourceEncryptionContext, in.SourceEncryptionAlgorithm)
	if aerr != nil {
		return nil, aerr
	}
	defer clear(plaintext)
	blob, aerr := dst.seal(plaintext, in.DestinationEncryptionContext)
	if aerr != nil {
		return nil, aerr
	}
	return struct {
		CiphertextBlob                 []byte
		SourceKeyId                    string
		KeyId                          string
		SourceEncryptionAlgorithm      string
		DestinationEncryptionAlgorithm string
	}{blob, src.arn, dst.arn, algSymmetric, algSymmetric}, nil
}

// encryptingKey resolves ref to a key that can encrypt now.
func (s *Server) encryptingKey(ref string) (*key, *apiError) {
	k, aerr := s.resolve(ref)
	if aerr != nil {
		return nil, aerr
	}
	if aerr := usable(k); aerr != nil {
		return nil, aerr
	}
	return k, nil
}

func checkAlgorithm(k *key, alg string) *apiError {
	if alg != "" && alg != algSymmetric {
		return errf("InvalidKeyUsageException", "%s does not support encryption algorithm %s", k.arn, alg)
	}
	return nil
}

// decrypt opens blob as KMS does: the key comes from the blob, and a KeyId, when given, must
// name that same key. A KeyId naming another existing key is IncorrectKeyException; anything
// else wrong with the blob or its context is InvalidCiphertextException.
func (s *Server) decrypt(blob []byte, ref string, ec map[string]string, alg string) (*key, []byte, *apiError) {
	if len(blob) == 0 || len(blob) > maxCiphertext {
		return nil, nil, errf("ValidationException", "CiphertextBlob must be between 1 and %d bytes", maxCiphertext)
	}
	blobKey, parsed := keyOf(blob)
	var k *key
	if ref != "" {
		var aerr *apiError
		if k, aerr = s.resolve(ref); aerr != nil {
			return nil, nil, aerr
		}
		if parsed && blobKey != k.id {
			if _, exists := s.keys[blobKey]; exists {
				return nil, nil, errf("IncorrectKeyException", "The key ID in the request does not identify a KMS key that can perform this operation.")
			}
			parsed = false
		}
	} else if parsed {
		k = s.keys[blobKey]
	}
	if !parsed || k == nil {
		return nil, nil, errInvalidCiphertext()
	}
	if aerr := usable(k); aerr != nil {
		return nil, nil, aerr
	}
	if aerr := checkAlgorithm(k, alg); aerr != nil {
		return nil, nil, aerr
	}
	plaintext, ok := k.open(blob, ec)
	if !ok {
		return nil, nil, errInvalidCiphertext()
	}
	return k, plaintext, nil
}

func errInvalidCiphertext() *apiError {
	return errf("InvalidCiphertextException", "The ciphertext is invalid, or the encryption context does not match.")
}
