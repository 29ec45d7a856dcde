// Package kmstest is an in-memory AWS KMS test server speaking the public KMS wire protocol
// (AWS JSON 1.1 over HTTP: POST /, X-Amz-Target: TrentService.<Op>), so that awskms and the
// unmodified *kms.Client from aws-sdk-go-v2 can be tested end to end without AWS. No KMS
// emulator can be installed where Coffer is built, and a fake of the SDK interface would test
// nothing of the request and error mapping.
//
// It owns: symmetric keys with real AES-256-GCM crypto, aliases, key states (enabled, disabled,
// pending deletion), the KMS error codes the SDK maps to its typed errors, per-operation request
// counters and switchable faults (latency, throttling, outage). It supports CreateKey,
// DescribeKey, CreateAlias, GenerateDataKey, Encrypt, Decrypt, ReEncrypt, EnableKey, DisableKey
// and ScheduleKeyDeletion.
//
// Ciphertext blobs are [format][16-byte key id][12-byte nonce][AES-GCM ciphertext+tag], with the
// format byte, the key id and the canonical, length-prefixed EncryptionContext as additional
// data. The blob layout is this server's own: clients must treat blobs as opaque, as they must
// with real KMS.
//
// Keys live in memory only and vanish when the process exits. Requests must carry a SigV4-shaped
// Authorization header and X-Amz-Date, but signatures are not verified: this is a test double,
// never to be exposed beyond a test or a developer's machine.
package kmstest

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
)

// Defaults for the ARNs the server hands out.
const (
	DefaultRegion  = "us-east-1"
	DefaultAccount = "111122223333"
)

const (
	targetPrefix = "TrentService."
	contentType  = "application/x-amz-json-1.1"
	maxBody      = 1 << 20
)

// Key states, key specs and usages as KMS spells them.
const (
	stateEnabled         = "Enabled"
	stateDisabled        = "Disabled"
	statePendingDeletion = "PendingDeletion"

	specSymmetric   = "SYMMETRIC_DEFAULT"
	usageEncrypt    = "ENCRYPT_DECRYPT"
	algSymmetric    = "SYMMETRIC_DEFAULT"
	originAWSKMS    = "AWS_KMS"
	keyManagerOwner = "CUSTOMER"
)

// Option configures a Server.
type Option func(*Server)

// WithRegion sets the region named in ARNs (default us-east-1).
func WithRegion(region string) Option { return func(s *Server) { s.region = region } }

// WithAccount sets the account named in ARNs (default 111122223333).
func WithAccount(account string) Option { return func(s *Server) { s.account = account } }

// Server is an http.Handler implementing the subset of KMS that Coffer uses. It is safe for
// concurrent use; the zero value is not usable, call New.
type Server struct {
	region, account string

	mu      sync.Mutex
	keys    map[uuid.UUID]*key
	aliases map[string]uuid.UUID // "alias/name" → key
	counts  map[string]int64

	latency  atomic.Int64 // nanoseconds
	throttle atomic.Bool
	outage   atomic.Bool
}

type key struct {
	id          uuid.UUID
	arn         string
	description string
	spec, usage string
	state       string
	created     time.Time
	deletion    time.Time
	window      int32
	aead        cipher.AEAD // nil unless a symmetric ENCRYPT_DECRYPT key
}

// New returns an empty server.
func New(opts ...Option) *Server {
	s := &Server{
		region:  DefaultRegion,
		account: DefaultAccount,
		keys:    map[uuid.UUID]*key{},
		aliases: map[string]uuid.UUID{},
		counts:  map[string]int64{},
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Region returns the region named in the server's ARNs.
func (s *Server) Region() string { return s.region }

// Count returns how many requests named op (e.g. "Decrypt") reached the server since the last
// Reset, including refused and faulted ones: retries by the SDK count once each.
func (s *Server) Count(op string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[op]
}

// Reset zeroes the request counters. Keys, aliases and faults are kept.
func (s *Server) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.counts)
}

// SetLatency delays every request by d before it is handled (0 turns it off).
func (s *Server) SetLatency(d time.Duration) { s.latency.Store(int64(d)) }

// SetThrottle makes every request fail with ThrottlingException (HTTP 400), as KMS does when a
// request quota is exceeded.
func (s *Server) SetThrottle(on bool) { s.throttle.Store(on) }

// SetOutage makes the server drop every connection without answering, so clients see a
// network error rather than an API error.
func (s *Server) SetOutage(on bool) { s.outage.Store(on) }

// CreateKey creates an enabled symmetric encryption key and returns its ARN.
func (s *Server) CreateKey() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	k, aerr := s.createKey("", specSymmetric, usageEncrypt)
	if aerr != nil {
		panic("kmstest: create key: " + aerr.msg) // unreachable for a symmetric key
	}
	return k.arn
}

// CreateAlias points alias ("coffer" or "alias/coffer") at the key named by keyID.
func (s *Server) CreateAlias(alias, keyID string) error {
	if !strings.HasPrefix(alias, "alias/") {
		alias = "alias/" + alias
	}
	return s.admin(func() *apiError { return s.createAlias(alias, keyID) })
}

// DisableKey disables the key named by keyID (id, ARN or alias).
func (s *Server) DisableKey(keyID string) error {
	return s.admin(func() *apiError { return s.setEnabled(keyID, false) })
}

// EnableKey re-enables the key named by keyID.
func (s *Server) EnableKey(keyID string) error {
	return s.admin(func() *apiError { return s.setEnabled(keyID, true) })
}

// ScheduleDeletion puts the key named by keyID in PendingDeletion with the shortest window
// KMS allows (7 days). Keys are never actually deleted.
func (s *Server) ScheduleDeletion(keyID string) error {
	return s.admin(func() *apiError {
		_, aerr := s.scheduleDeletion(keyID, 7)
		return aerr
	})
}

func (s *Server) admin(f func() *apiError) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if aerr := f(); aerr != nil {
		return aerr
	}
	return nil
}

// apiError is an error as KMS reports it: an HTTP status, a code that the SDK maps to a typed
// error, and a message. Messages name keys but never carry plaintext or ciphertext.
type apiError struct {
	status int
	code   string
	msg    string
}

func (e *apiError) Error() string { return e.code + ": " + e.msg }

func errf(code, format string, args ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, code: code, msg: fmt.Sprintf(format, args...)}
}

// ServeHTTP implements the AWS JSON 1.1 protocol: checks, faults, then one operation.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/" {
		http.Error(w, "kmstest: only POST / is served", http.StatusNotFound)
		return
	}
	op, _ := strings.CutPrefix(r.Header.Get("X-Amz-Target"), targetPrefix)
	s.count(op)

	if s.outage.Load() {
		dropConnection(w)
		return
	}
	// The body is read before any delay: only then does net/http watch the connection, so a
	// client that gives up during the delay cancels r.Context().
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		writeError(w, errf("SerializationException", "request body could not be read"))
		return
	}
	if len(body) == 0 {
		body = []byte("{}")
	}
	if d := time.Duration(s.latency.Load()); d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
	if aerr := checkAuth(r); aerr != nil {
		writeError(w, aerr)
		return
	}
	handler, ok := operations[op]
	if !ok || !strings.HasPrefix(r.Header.Get("X-Amz-Target"), targetPrefix) {
		writeError(w, errf("UnknownOperationException", "unknown operation %q", r.Header.Get("X-Amz-Target")))
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != contentType {
		writeError(w, errf("SerializationException", "Content-Type must be %s", contentType))
		return
	}
	if s.throttle.Load() {
		writeError(w, errf("ThrottlingException", "Rate exceeded"))
		return
	}
	s.mu.Lock()
	out, aerr := handler(s, body)
	s.mu.Unlock()
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) count(op string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.counts[op]++
}

// dropConnection closes the connection without a response, which the client sees as a
// transport error, as it would when KMS or the network path to it is down.
func dropConnection(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if conn, _, err := hj.Hijack(); err == nil {
			_ = conn.Close()
			return
		}
	}
	http.Error(w, "service unavailable", http.StatusServiceUnavailable)
}

// checkAuth requires a SigV4-shaped request without verifying the signature: enough to prove
// the client signs its requests as it must for real KMS.
func checkAuth(r *http.Request) *apiError {
	auth := r.Header.Get("Authorization")
	if auth == "" {
		return errf("MissingAuthenticationTokenException", "Missing Authentication Token")
	}
	if !strings.HasPrefix(auth, "AWS4-HMAC-SHA256 Credential=") ||
		!strings.Contains(auth, "SignedHeaders=") || !strings.Contains(auth, "Signature=") {
		return errf("IncompleteSignatureException", "Authorization header must be an AWS4-HMAC-SHA256 signature with Credential, SignedHeaders and Signature")
	}
	if r.Header.Get("X-Amz-Date") == "" {
		return errf("IncompleteSignatureException", "Authorization header requires existence of a 'X-Amz-Date' header")
	}
	return nil
}

func writeError(w http.ResponseWriter, e *apiError) {
	w.Header().Set("X-Amzn-ErrorType", e.code)
	writeJSON(w, e.status, struct {
		Type    string `json:"__type"`
		Message string `json:"message"`
	}{e.code, e.msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		body = []byte(`{"__type":"KMSInternalException","message":"response could not be encoded"}`)
		w.Header().Set("X-Amzn-ErrorType", "KMSInternalException")
	}
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("X-Amzn-RequestId", uuid.NewString())
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// createKey adds a key; s.mu must be held.
// ImportKey creates an enabled symmetric encryption key with the given id and 32 bytes of key
// material (as KMS's imported key material, BYOK), so that a server restarted with the same
// material decrypts what the previous one encrypted: local development across restarts.
func (s *Server) ImportKey(id string, material []byte) (string, error) {
	kid, err := uuid.Parse(id)
	if err != nil {
		return "", fmt.Errorf("key id %q is not a UUID", id)
	}
	if len(material) != 32 {
		return "", fmt.Errorf("key material must be 32 bytes, not %d", len(material))
	}
	block, err := aes.NewCipher(material)
	if err != nil {
		return "", err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return "", err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.keys[kid]; ok {
		return "", fmt.Errorf("key %s exists", id)
	}
	k := &key{id: kid, spec: specSymmetric, usage: usageEncrypt, state: stateEnabled, created: time.Now(), aead: aead}
	k.arn = s.arn("key/" + kid.String())
	s.keys[kid] = k
	return k.arn, nil
}

func (s *Server) createKey(description, spec, usage string) (*key, *apiError) {
	k := &key{
		id:          uuid.New(),
		description: description,
		spec:        spec,
		usage:       usage,
		state:       stateEnabled,
		created:     time.Now(),
	}
	k.arn = s.arn("key/" + k.id.String())
	if spec == specSymmetric && usage == usageEncrypt {
		raw := make([]byte, 32)
		if _, err := rand.Read(raw); err != nil {
			return nil, &apiError{status: http.StatusInternalServerError, code: "KMSInternalException", msg: "random source failed"}
		}
		block, err := aes.NewCipher(raw)
		clear(raw)
		if err != nil {
			return nil, &apiError{status: http.StatusInternalServerError, code: "KMSInternalException", msg: "cipher setup failed"}
		}
		if k.aead, err = cipher.NewGCM(block); err != nil {
			return nil, &apiError{status: http.StatusInternalServerError, code: "KMSInternalException", msg: "cipher setup failed"}
		}
	}
	s.keys[k.id] = k
	return k, nil
}

func (s *Server) arn(resource string) string {
	return "arn:aws:kms:" + s.region + ":" + s.account + ":" + resource
}

// resolve finds the key named by a key id, key ARN, alias name or alias ARN; s.mu must be held.
func (s *Server) resolve(ref string) (*key, *apiError) {
	if ref == "" {
		return nil, errf("ValidationException", "1 validation error detected: Value at 'keyId' failed to satisfy constraint: Member must not be null")
	}
	resource := ref
	if strings.HasPrefix(ref, "arn:") {
		parts := strings.SplitN(ref, ":", 6)
		if len(parts) != 6 || parts[1] == "" || parts[2] != "kms" {
			return nil, errf("InvalidArnException", "ARN %s is not a valid KMS ARN", ref)
		}
		if parts[3] != s.region || parts[4] != s.account {
			return nil, errf("NotFoundException", "Key '%s' does not exist", ref)
		}
		resource = parts[5]
		if !strings.HasPrefix(resource, "key/") && !strings.HasPrefix(resource, "alias/") {
			return nil, errf("InvalidArnException", "ARN %s names neither a key nor an alias", ref)
		}
		resource = strings.TrimPrefix(resource, "key/")
	}
	if strings.HasPrefix(resource, "alias/") {
		id, ok := s.aliases[resource]
		if !ok {
			return nil, errf("NotFoundException", "Alias %s is not found.", s.arn(resource))
		}
		return s.keys[id], nil
	}
	id, err := uuid.Parse(resource)
	if err != nil || id.String() != resource {
		return nil, errf("NotFoundException", "Invalid keyId '%s'", ref)
	}
	k, ok := s.keys[id]
	if !ok {
		return nil, errf("NotFoundException", "Key '%s' does not exist", s.arn("key/"+resource))
	}
	return k, nil
}

// usable reports why k cannot encrypt or decrypt now, as KMS does.
func usable(k *key) *apiError {
	switch k.state {
	case stateDisabled:
		return errf("DisabledException", "%s is disabled.", k.arn)
	case statePendingDeletion:
		return errf("KMSInvalidStateException", "%s is pending deletion.", k.arn)
	}
	if k.aead == nil {
		return errf("InvalidKeyUsageException", "%s key usage is %s and key spec is %s", k.arn, k.usage, k.spec)
	}
	return nil
}

var aliasName = regexp.MustCompile(`^alias/[a-zA-Z0-9/_-]{1,250}$`)

func (s *Server) createAlias(alias, target string) *apiError {
	if !aliasName.MatchString(alias) {
		return errf("ValidationException", "Alias must match %s", aliasName)
	}
	if strings.HasPrefix(alias, "alias/aws/") {
		return errf("NotAuthorizedException", "Alias names beginning with alias/aws/ are reserved")
	}
	if _, ok := s.aliases[alias]; ok {
		return errf("AlreadyExistsException", "An alias with the name %s already exists", s.arn(alias))
	}
	if strings.HasPrefix(target, "alias/") || strings.Contains(target, ":alias/") {
		return errf("ValidationException", "TargetKeyId must be a key id or key ARN, not an alias")
	}
	k, aerr := s.resolve(target)
	if aerr != nil {
		return aerr
	}
	if k.state == statePendingDeletion {
		return errf("KMSInvalidStateException", "%s is pending deletion.", k.arn)
	}
	s.aliases[alias] = k.id
	return nil
}

func (s *Server) setEnabled(ref string, enabled bool) *apiError {
	k, aerr := s.resolve(ref)
	if aerr != nil {
		return aerr
	}
	if k.state == statePendingDeletion {
		return errf("KMSInvalidStateException", "%s is pending deletion.", k.arn)
	}
	k.state = stateDisabled
	if enabled {
		k.state = stateEnabled
	}
	return nil
}

func (s *Server) scheduleDeletion(ref string, days int32) (*key, *apiError) {
	if days < 7 || days > 30 {
		return nil, errf("ValidationException", "PendingWindowInDays must be between 7 and 30")
	}
	k, aerr := s.resolve(ref)
	if aerr != nil {
		return nil, aerr
	}
	if k.state == statePendingDeletion {
		return nil, errf("KMSInvalidStateException", "%s is pending deletion.", k.arn)
	}
	k.state = statePendingDeletion
	k.window = days
	k.deletion = time.Now().Add(time.Duration(days) * 24 * time.Hour)
	return k, nil
}
