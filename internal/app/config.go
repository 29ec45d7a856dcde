// Package app is Coffer's composition root: it turns a Config into a running server by wiring
// store, key wrapper, services and HTTP handler together. cmd/server parses the Config and
// calls Run; tests and benchmarks start the whole program the same way on port 0.
package app

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/cofferhq/coffer"
	"github.com/cofferhq/coffer/internal/auth"
)

// Config is every setting; each is a flag and a COFFER_* environment variable. Values that
// are secrets (master key, bootstrap token) are read from the environment only, so they
// never show up in a process listing.
type Config struct {
	Listen         string
	DataDir        string
	DatabaseURL    string
	DBMaxConns     int
	MasterKeyFile  string
	MasterKey      string // base64, from COFFER_MASTER_KEY only
	LogLevel       string
	LogFormat      string
	Dev            bool
	BaseURL        string
	BehindTLSProxy bool
	BootstrapToken string // from COFFER_BOOTSTRAP_TOKEN only
	BootstrapEmail string
	// PreviousMasterKeys are base64 local keys that only unwrap, while a rewrap moves their
	// data keys to the current key (COFFER_PREVIOUS_MASTER_KEYS only, comma-separated).
	PreviousMasterKeys []string

	KMS               string // "local" or "awskms"
	KMSKeyID          string
	KMSRegion         string
	KMSEndpoint       string
	KMSPreviousKeyIDs []string
	MetricsListen     string
	// TrustedProxies are CIDRs (or addresses) whose X-Forwarded-For is believed.
	TrustedProxies []string
	KeyJobBatch    int
	// LocalLogin allows e-mail and password sign-in (default on).
	LocalLogin bool
	// OIDC is the instance's OpenID provider for browser sign-in; off without an issuer.
	OIDC OIDCConfig
	// SessionIdle and SessionMaxAge are the browser sessions' idle and absolute timeouts.
	SessionIdle   time.Duration
	SessionMaxAge time.Duration
	// AuditSink is a directory receiving a copy of every audit checkpoint (none when empty);
	// AuditCheckpointInterval is how often the chains that grew are checkpointed.
	AuditSink               string
	AuditCheckpointInterval time.Duration
	// AuditVerifyInterval is how often every chain is verified in the background.
	AuditVerifyInterval time.Duration
	// WebhookAllowPrivate lets webhooks reach loopback, private and other non-public
	// addresses (off: refused at registration and at every connection).
	WebhookAllowPrivate bool
	// AllowedOrigins are origins besides the base URL's whose pages may open the event
	// stream; EventRetention and EventMaxRows bound the events table per tenant.
	AllowedOrigins []string
	EventRetention time.Duration
	EventMaxRows   int64
	// KeyCacheSize bounds the unwrapped data keys kept in memory.
	KeyCacheSize int
	// Profiling serves Go's profiles on the metrics listener (measurement only).
	Profiling bool
}

// Setting documents one configuration entry; README's table lists the same.
type Setting struct {
	Flag, Env, Default, Usage string
}

// ParseConfig reads flags from args with defaults from getenv.
func ParseConfig(args []string, getenv func(string) string, stderr io.Writer) (Config, error) {
	var c Config
	fs := flag.NewFlagSet("coffer-server", flag.ContinueOnError)
	fs.SetOutput(stderr)
	str := func(p *string, name, env, def, usage string) {
		if v := getenv(env); v != "" {
			def = v
		}
		fs.StringVar(p, name, def, usage+" ("+env+")")
	}
	var boolErr error
	boolean := func(p *bool, name, env string, usage string) {
		def := false
		if v := getenv(env); v != "" {
			b, err := strconv.ParseBool(v)
			if err != nil {
				boolErr = fmt.Errorf("%s must be true or false", env)
			}
			def = b
		}
		fs.BoolVar(p, name, def, usage+" ("+env+")")
	}
	var maxConns string
	str(&c.Listen, "listen", "COFFER_LISTEN", "127.0.0.1:8080", "address to listen on")
	str(&c.DataDir, "data-dir", "COFFER_DATA_DIR", "./coffer-data", "directory for the embedded database and the local master key")
	str(&c.DatabaseURL, "database-url", "COFFER_DATABASE_URL", "", "postgres:// URL; empty uses SQLite in the data directory")
	str(&maxConns, "db-max-conns", "COFFER_DB_MAX_CONNS", "32", "maximum open database connections")
	str(&c.MasterKeyFile, "master-key-file", "COFFER_MASTER_KEY_FILE", "", "local master key file (default <data-dir>/master.key; created with mode 0600)")
	str(&c.LogLevel, "log-level", "COFFER_LOG_LEVEL", "info", "debug, info, warn or error")
	str(&c.LogFormat, "log-format", "COFFER_LOG_FORMAT", "text", "text or json")
	boolean(&c.Dev, "dev", "COFFER_DEV", "development mode: allow plain HTTP on a non-loopback address")
	str(&c.BaseURL, "base-url", "COFFER_BASE_URL", "", "URL users reach the server at (default http://<listen>)")
	boolean(&c.BehindTLSProxy, "tls-proxy", "COFFER_TLS_PROXY", "a TLS-terminating proxy fronts the server (sends HSTS)")
	var kmsPrevious, keyJobBatch, trustedProxies string
	str(&trustedProxies, "trusted-proxies", "COFFER_TRUSTED_PROXIES", "", "comma-separated CIDRs of proxies whose X-Forwarded-For is believed (default none)")
	str(&c.KMS, "kms", "COFFER_KMS", "local", "key-encryption key: local (master key file) or awskms")
	str(&c.KMSKeyID, "kms-key-id", "COFFER_KMS_KEY_ID", "", "AWS KMS key id, ARN or alias (with -kms=awskms)")
	str(&c.KMSRegion, "kms-region", "COFFER_KMS_REGION", "", "AWS region of the KMS key (default: the AWS SDK's)")
	str(&c.KMSEndpoint, "kms-endpoint", "COFFER_KMS_ENDPOINT", "", "KMS endpoint URL (VPC endpoint or a local KMS server)")
	str(&kmsPrevious, "kms-previous-key-ids", "COFFER_KMS_PREVIOUS_KEY_IDS", "", "comma-separated KMS key ARNs that only unwrap, until a rewrap moves their data keys")
	str(&c.MetricsListen, "metrics-listen", "COFFER_METRICS_LISTEN", "", "address for Prometheus /metrics (off when empty)")
	str(&keyJobBatch, "key-job-batch", "COFFER_KEY_JOB_BATCH", "1000", "items per transaction in key rotation jobs")
	var sessionIdle, sessionMax string
	str(&sessionIdle, "session-idle-timeout", "COFFER_SESSION_IDLE_TIMEOUT", "1h", "a browser session not used for this long ends")
	str(&sessionMax, "session-max-age", "COFFER_SESSION_MAX_AGE", "12h", "every browser session ends this long after sign-in")
	str(&c.OIDC.Issuer, "oidc-issuer", "COFFER_OIDC_ISSUER", "", "OpenID provider issuer URL for browser sign-in (off when empty)")
	str(&c.OIDC.ClientID, "oidc-client-id", "COFFER_OIDC_CLIENT_ID", "", "client id registered at the OpenID provider")
	str(&c.OIDC.Signup, "oidc-signup", "COFFER_OIDC_SIGNUP", "invite", "who may become a user by signing in: invite (a pending invitation) or open")
	// On unless turned off, unlike the other switches.
	c.LocalLogin = true
	if v := getenv("COFFER_LOCAL_LOGIN"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			boolErr = fmt.Errorf("COFFER_LOCAL_LOGIN must be true or false")
		}
		c.LocalLogin = b
	}
	fs.BoolVar(&c.LocalLogin, "local-login", c.LocalLogin, "allow sign-in with e-mail and password (COFFER_LOCAL_LOGIN)")
	var checkpointInterval, verifyInterval string
	str(&c.AuditSink, "audit-sink", "COFFER_AUDIT_SINK", "", "directory that keeps a copy of every signed audit checkpoint, out of the database's reach (none when empty)")
	str(&checkpointInterval, "audit-checkpoint-interval", "COFFER_AUDIT_CHECKPOINT_INTERVAL", "1m", "how often audit chains that grew get a signed checkpoint")
	str(&verifyInterval, "audit-verify-interval", "COFFER_AUDIT_VERIFY_INTERVAL", "1h", "how often every audit chain is verified in the background (failures: error log and metric)")
	boolean(&c.WebhookAllowPrivate, "webhook-allow-private", "COFFER_WEBHOOK_ALLOW_PRIVATE", "let webhooks reach loopback, private and link-local addresses (refused by default)")
	boolean(&c.Profiling, "pprof", "COFFER_PPROF", "also serve Go's profiles (/debug/pprof/) on the metrics listener, for measuring; never on a public address")
	var keyCacheSize string
	str(&keyCacheSize, "key-cache-size", "COFFER_KEY_CACHE_SIZE", "16384", "unwrapped data keys kept in memory at most (one per environment read lately; a miss calls the KMS)")
	var allowedOrigins, eventRetention, eventMaxRows string
	str(&allowedOrigins, "allowed-origins", "COFFER_ALLOWED_ORIGINS", "", "comma-separated origins (https://host[:port]) besides the base URL's whose pages may open the event stream")
	str(&eventRetention, "event-retention", "COFFER_EVENT_RETENTION", "168h", "how long events are kept for streams to resume from")
	str(&eventMaxRows, "event-max-rows", "COFFER_EVENT_MAX_ROWS", "1000000", "events kept per tenant at most (the oldest go first)")
	str(&c.BootstrapEmail, "bootstrap-email", "COFFER_BOOTSTRAP_EMAIL", "admin@localhost", "e-mail of the first owner created by COFFER_BOOTSTRAP_TOKEN")
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	// The flag parser stops at the first non-flag word: "-dev false" would turn dev mode on
	// and silently drop everything after it.
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("unexpected argument %q (write boolean flags as -flag=false)", fs.Arg(0))
	}
	if boolErr != nil {
		return Config{}, boolErr
	}
	n, err := strconv.Atoi(maxConns)
	if err != nil || n < 1 {
		return Config{}, fmt.Errorf("COFFER_DB_MAX_CONNS must be a positive integer")
	}
	c.DBMaxConns = n
	if c.KeyJobBatch, err = strconv.Atoi(keyJobBatch); err != nil || c.KeyJobBatch < 1 || c.KeyJobBatch > 10000 {
		return Config{}, fmt.Errorf("COFFER_KEY_JOB_BATCH must be an integer from 1 to 10000")
	}
	if c.SessionIdle, err = time.ParseDuration(sessionIdle); err != nil || c.SessionIdle < time.Minute {
		return Config{}, fmt.Errorf("COFFER_SESSION_IDLE_TIMEOUT must be a duration of at least 1m, such as 30m or 1h")
	}
	if c.SessionMaxAge, err = time.ParseDuration(sessionMax); err != nil || c.SessionMaxAge < c.SessionIdle || c.SessionMaxAge > 30*24*time.Hour {
		return Config{}, fmt.Errorf("COFFER_SESSION_MAX_AGE must be a duration from the idle timeout to 720h, such as 12h")
	}
	if c.AuditCheckpointInterval, err = time.ParseDuration(checkpointInterval); err != nil || c.AuditCheckpointInterval < time.Second || c.AuditCheckpointInterval > 24*time.Hour {
		return Config{}, fmt.Errorf("COFFER_AUDIT_CHECKPOINT_INTERVAL must be a duration from 1s to 24h, such as 1m")
	}
	if c.AuditVerifyInterval, err = time.ParseDuration(verifyInterval); err != nil || c.AuditVerifyInterval < time.Second || c.AuditVerifyInterval > 7*24*time.Hour {
		return Config{}, fmt.Errorf("COFFER_AUDIT_VERIFY_INTERVAL must be a duration from 1s to 168h, such as 1h")
	}
	if c.EventRetention, err = time.ParseDuration(eventRetention); err != nil || c.EventRetention < time.Minute {
		return Config{}, fmt.Errorf("COFFER_EVENT_RETENTION must be a duration of at least 1m, such as 168h")
	}
	if c.EventMaxRows, err = strconv.ParseInt(eventMaxRows, 10, 64); err != nil || c.EventMaxRows < 1000 {
		return Config{}, fmt.Errorf("COFFER_EVENT_MAX_ROWS must be an integer of at least 1000")
	}
	if c.KeyCacheSize, err = strconv.Atoi(keyCacheSize); err != nil || c.KeyCacheSize < 16 || c.KeyCacheSize > 1_000_000 {
		return Config{}, fmt.Errorf("COFFER_KEY_CACHE_SIZE must be an integer from 16 to 1000000")
	}
	if c.Profiling && c.MetricsListen == "" {
		return Config{}, fmt.Errorf("COFFER_PPROF serves profiles on the metrics listener: set COFFER_METRICS_LISTEN too")
	}
	c.AllowedOrigins = splitList(allowedOrigins)
	for i, o := range c.AllowedOrigins {
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
			return Config{}, fmt.Errorf("COFFER_ALLOWED_ORIGINS entry %q is not an origin such as https://app.example.com", o)
		}
		c.AllowedOrigins[i] = u.Scheme + "://" + u.Host
	}
	c.KMSPreviousKeyIDs = splitList(kmsPrevious)
	c.TrustedProxies = splitList(trustedProxies)
	for _, p := range c.TrustedProxies {
		if _, _, err := net.ParseCIDR(p); err != nil && net.ParseIP(p) == nil {
			return Config{}, fmt.Errorf("COFFER_TRUSTED_PROXIES entry %q is not a CIDR or an IP address", p)
		}
	}
	c.PreviousMasterKeys = splitList(getenv("COFFER_PREVIOUS_MASTER_KEYS"))
	c.MasterKey = getenv("COFFER_MASTER_KEY")
	c.BootstrapToken = getenv("COFFER_BOOTSTRAP_TOKEN")
	c.OIDC.ClientSecret = getenv("COFFER_OIDC_CLIENT_SECRET")
	if err := c.OIDC.check(c.Dev); err != nil {
		return Config{}, err
	}
	if err := c.normalize(); err != nil {
		return Config{}, err
	}
	return c, nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func (c *Config) normalize() error {
	switch c.KMS {
	case "local":
		if c.KMSKeyID != "" {
			return fmt.Errorf("COFFER_KMS_KEY_ID is set but COFFER_KMS is local: set COFFER_KMS=awskms to use it")
		}
	case "awskms":
		if c.KMSKeyID == "" {
			return fmt.Errorf("COFFER_KMS=awskms needs COFFER_KMS_KEY_ID (a key id, ARN or alias)")
		}
	default:
		return fmt.Errorf("COFFER_KMS must be local or awskms")
	}
	if c.MasterKeyFile == "" {
		c.MasterKeyFile = filepath.Join(c.DataDir, "master.key")
	}
	// An empty BaseURL is derived from the bound address once listening (port 0 included).
	c.BaseURL = strings.TrimRight(c.BaseURL, "/")
	if _, err := parseLevel(c.LogLevel); err != nil {
		return err
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		return fmt.Errorf("log format must be text or json")
	}
	host, _, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return fmt.Errorf("listen address %q: %w", c.Listen, err)
	}
	// Plain HTTP is only acceptable where nobody else can listen in: on loopback, behind a
	// TLS proxy, or when development mode says so explicitly.
	if !isLoopback(host) && !c.BehindTLSProxy && !c.Dev {
		return fmt.Errorf("refusing to serve plain HTTP on %s: put a TLS-terminating proxy in front and set COFFER_TLS_PROXY=true, or set COFFER_DEV=true for development", c.Listen)
	}
	return nil
}

func isLoopback(host string) bool { return auth.LoopbackHost(host) }

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return l, fmt.Errorf("log level must be debug, info, warn or error")
	}
	return l, nil
}

// NewLogger builds the process logger.
func NewLogger(c Config, w io.Writer) *slog.Logger {
	level, _ := parseLevel(c.LogLevel)
	opts := &slog.HandlerOptions{Level: level}
	if c.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// OIDCConfig is the instance's OpenID provider. The client secret is read from
// COFFER_OIDC_CLIENT_SECRET only, like the other secrets.
type OIDCConfig struct {
	Issuer       string
	ClientID     string
	ClientSecret string
	Signup       string // "invite" or "open"
}

// check validates the settings without contacting the provider, so that a provider that is
// down never stops the server from starting. The issuer must be HTTPS, as tokens and
// discovery travel over it, except on loopback (tests, a provider on the same host) or in
// development mode, like the server's own plain HTTP.
func (o *OIDCConfig) check(dev bool) error {
	if o.Signup != "invite" && o.Signup != "open" {
		return fmt.Errorf("COFFER_OIDC_SIGNUP must be invite or open")
	}
	// The issuer is kept exactly as given: ID tokens must name it character for character.
	if o.Issuer == "" {
		if o.ClientID != "" || o.ClientSecret != "" {
			return fmt.Errorf("COFFER_OIDC_CLIENT_ID or COFFER_OIDC_CLIENT_SECRET is set but COFFER_OIDC_ISSUER is not")
		}
		return nil
	}
	if err := auth.ValidateIssuerURL("COFFER_OIDC_ISSUER", o.Issuer, dev); err != nil {
		return errors.New(coffer.ErrorMessage(err))
	}
	if o.ClientID == "" || o.ClientSecret == "" {
		return fmt.Errorf("COFFER_OIDC_ISSUER needs COFFER_OIDC_CLIENT_ID and COFFER_OIDC_CLIENT_SECRET (environment only)")
	}
	return nil
}
