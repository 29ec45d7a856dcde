package app_test

import (
	"bytes"
	"context"
	"io"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/app"
)

// cfgParse runs ParseConfig with env as the whole environment and returns what it wrote to
// stderr.
func cfgParse(t *testing.T, args []string, env map[string]string) (app.Config, string, error) {
	t.Helper()
	var stderr bytes.Buffer
	c, err := app.ParseConfig(args, func(k string) string { return env[k] }, &stderr)
	return c, stderr.String(), err
}

// cfgMustParse is cfgParse for inputs that must be accepted.
func cfgMustParse(t *testing.T, args []string, env map[string]string) app.Config {
	t.Helper()
	c, _, err := cfgParse(t, args, env)
	if err != nil {
		t.Fatalf("ParseConfig(%q, %v) = %v", args, env, err)
	}
	return c
}

// cfgSamePath compares file paths by meaning: "./a/b" and "a/b" are the same file.
func cfgSamePath(t *testing.T, what, got, want string) {
	t.Helper()
	if filepath.Clean(got) != filepath.Clean(want) {
		t.Errorf("%s = %q, want %q", what, got, want)
	}
}

func TestConfigDefaults(t *testing.T) {
	c := cfgMustParse(t, nil, nil)
	want := app.Config{
		Listen:         "127.0.0.1:8080",
		DataDir:        "./coffer-data",
		DBMaxConns:     32,
		LogLevel:       "info",
		LogFormat:      "text",
		BootstrapEmail: "admin@localhost",
		KMS:            "local",
		KeyJobBatch:    1000,
		LocalLogin:     true,
		SessionIdle:    time.Hour,
		SessionMaxAge:  12 * time.Hour,
		OIDC:           app.OIDCConfig{Signup: "invite"},

		AuditCheckpointInterval: time.Minute,
		AuditVerifyInterval:     time.Hour,
		EventRetention:          7 * 24 * time.Hour,
		EventMaxRows:            1000000,
		KeyCacheSize:            16384,
	}
	cfgSamePath(t, "MasterKeyFile", c.MasterKeyFile, "./coffer-data/master.key")
	// An empty BaseURL means "http://" plus the address actually bound, which for the
	// default listen address is http://127.0.0.1:8080 (TestConfigBaseURLFollowsListener).
	if c.BaseURL != "" && c.BaseURL != "http://127.0.0.1:8080" {
		t.Errorf("BaseURL = %q, want http://127.0.0.1:8080 (or empty, derived from the listener)", c.BaseURL)
	}
	c.MasterKeyFile, c.BaseURL = "", ""
	if !reflect.DeepEqual(c, want) {
		t.Errorf("defaults:\n got %+v\nwant %+v", c, want)
	}
}

func TestConfigEnvOverrides(t *testing.T) {
	env := map[string]string{
		"COFFER_LISTEN":               "127.0.0.1:9090",
		"COFFER_DATA_DIR":             "/var/lib/coffer",
		"COFFER_DATABASE_URL":         "postgres://coffer@db/coffer",
		"COFFER_DB_MAX_CONNS":         "7",
		"COFFER_MASTER_KEY_FILE":      "/etc/coffer/kek",
		"COFFER_MASTER_KEY":           "bWFzdGVyLWtleS1mcm9tLWVudg==",
		"COFFER_LOG_LEVEL":            "debug",
		"COFFER_LOG_FORMAT":           "json",
		"COFFER_DEV":                  "true",
		"COFFER_BASE_URL":             "https://coffer.example.com/",
		"COFFER_TLS_PROXY":            "1",
		"COFFER_BOOTSTRAP_TOKEN":      "cfr_pat_" + strings.Repeat("t", 43),
		"COFFER_BOOTSTRAP_EMAIL":      "ops@example.com",
		"COFFER_KMS":                  "awskms",
		"COFFER_KMS_KEY_ID":           "alias/coffer",
		"COFFER_KMS_REGION":           "eu-west-1",
		"COFFER_KMS_ENDPOINT":         "https://kms.eu-west-1.amazonaws.com",
		"COFFER_KMS_PREVIOUS_KEY_IDS": "arn:aws:kms:eu-west-1:111122223333:key/a, arn:aws:kms:eu-west-1:111122223333:key/b",
		"COFFER_PREVIOUS_MASTER_KEYS": "b2xkLWtleS1vbmU=,b2xkLWtleS10d28=",
		"COFFER_METRICS_LISTEN":       "127.0.0.1:9100",
		"COFFER_KEY_JOB_BATCH":        "500",
		"COFFER_SESSION_IDLE_TIMEOUT": "30m",
		"COFFER_SESSION_MAX_AGE":      "8h",
		"COFFER_LOCAL_LOGIN":          "false", // on by default: the want below has it off

		"COFFER_AUDIT_SINK":                "/var/lib/coffer-audit",
		"COFFER_AUDIT_CHECKPOINT_INTERVAL": "5m",
		"COFFER_ALLOWED_ORIGINS":           "https://app.example.com, http://localhost:3000/",
		"COFFER_EVENT_RETENTION":           "24h",
		"COFFER_EVENT_MAX_ROWS":            "5000",
	}
	want := app.Config{
		Listen:             "127.0.0.1:9090",
		DataDir:            "/var/lib/coffer",
		DatabaseURL:        "postgres://coffer@db/coffer",
		DBMaxConns:         7,
		MasterKeyFile:      "/etc/coffer/kek",
		MasterKey:          "bWFzdGVyLWtleS1mcm9tLWVudg==",
		LogLevel:           "debug",
		LogFormat:          "json",
		Dev:                true,
		BaseURL:            "https://coffer.example.com", // trailing slash trimmed
		BehindTLSProxy:     true,
		BootstrapToken:     "cfr_pat_" + strings.Repeat("t", 43),
		BootstrapEmail:     "ops@example.com",
		KMS:                "awskms",
		KMSKeyID:           "alias/coffer",
		KMSRegion:          "eu-west-1",
		KMSEndpoint:        "https://kms.eu-west-1.amazonaws.com",
		KMSPreviousKeyIDs:  []string{"arn:aws:kms:eu-west-1:111122223333:key/a", "arn:aws:kms:eu-west-1:111122223333:key/b"},
		PreviousMasterKeys: []string{"b2xkLWtleS1vbmU=", "b2xkLWtleS10d28="},
		MetricsListen:      "127.0.0.1:9100",
		KeyJobBatch:        500,
		SessionIdle:        30 * time.Minute,
		SessionMaxAge:      8 * time.Hour,
		OIDC:               app.OIDCConfig{Signup: "invite"},

		AuditSink:               "/var/lib/coffer-audit",
		AuditCheckpointInterval: 5 * time.Minute,
		AuditVerifyInterval:     time.Hour,
		AllowedOrigins:          []string{"https://app.example.com", "http://localhost:3000"},
		EventRetention:          24 * time.Hour,
		EventMaxRows:            5000,
		KeyCacheSize:            16384,
	}
	if got := cfgMustParse(t, nil, env); !reflect.DeepEqual(got, want) {
		t.Errorf("from env:\n got %+v\nwant %+v", got, want)
	}
}

func TestConfigDerivedDefaults(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		keyFile string
	}{
		{"key file follows data dir from env", nil, map[string]string{"COFFER_DATA_DIR": "/srv/coffer"}, "/srv/coffer/master.key"},
		{"key file follows data dir from flag", []string{"-data-dir", "/srv/flag"}, map[string]string{"COFFER_DATA_DIR": "/srv/env"}, "/srv/flag/master.key"},
		{"explicit key file wins", []string{"-data-dir", "/srv/flag", "-master-key-file", "/k"}, nil, "/k"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := cfgMustParse(t, tc.args, tc.env)
			cfgSamePath(t, "MasterKeyFile", c.MasterKeyFile, tc.keyFile)
		})
	}
}

func TestConfigFlagBeatsEnv(t *testing.T) {
	tests := []struct {
		name  string
		args  []string
		env   map[string]string
		check func(c app.Config) bool
	}{
		{"listen", []string{"-listen", "127.0.0.1:9100"}, map[string]string{"COFFER_LISTEN": "127.0.0.1:9000"},
			func(c app.Config) bool { return c.Listen == "127.0.0.1:9100" }},
		{"data dir", []string{"-data-dir=/flag"}, map[string]string{"COFFER_DATA_DIR": "/env"},
			func(c app.Config) bool { return c.DataDir == "/flag" }},
		{"database url", []string{"-database-url", "postgres://flag"}, map[string]string{"COFFER_DATABASE_URL": "postgres://env"},
			func(c app.Config) bool { return c.DatabaseURL == "postgres://flag" }},
		{"max conns", []string{"-db-max-conns", "5"}, map[string]string{"COFFER_DB_MAX_CONNS": "50"},
			func(c app.Config) bool { return c.DBMaxConns == 5 }},
		{"log level", []string{"-log-level", "warn"}, map[string]string{"COFFER_LOG_LEVEL": "debug"},
			func(c app.Config) bool { return c.LogLevel == "warn" }},
		{"log format", []string{"-log-format", "text"}, map[string]string{"COFFER_LOG_FORMAT": "json"},
			func(c app.Config) bool { return c.LogFormat == "text" }},
		{"dev off", []string{"-dev=false"}, map[string]string{"COFFER_DEV": "true"},
			func(c app.Config) bool { return !c.Dev }},
		{"dev on", []string{"-dev"}, map[string]string{"COFFER_DEV": "false"},
			func(c app.Config) bool { return c.Dev }},
		{"tls proxy off", []string{"-tls-proxy=false"}, map[string]string{"COFFER_TLS_PROXY": "true"},
			func(c app.Config) bool { return !c.BehindTLSProxy }},
		{"base url", []string{"-base-url", "https://flag.example"}, map[string]string{"COFFER_BASE_URL": "https://env.example"},
			func(c app.Config) bool { return c.BaseURL == "https://flag.example" }},
		{"bootstrap email", []string{"-bootstrap-email", "flag@example.com"}, map[string]string{"COFFER_BOOTSTRAP_EMAIL": "env@example.com"},
			func(c app.Config) bool { return c.BootstrapEmail == "flag@example.com" }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if c := cfgMustParse(t, tc.args, tc.env); !tc.check(c) {
				t.Errorf("flag %q did not win over env %v: %+v", tc.args, tc.env, c)
			}
		})
	}
}

func TestConfigRejects(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		mention string // the error names what is wrong
	}{
		{"dev not a bool", nil, map[string]string{"COFFER_DEV": "maybe"}, "COFFER_DEV"},
		{"dev not a bool despite flag", []string{"-dev"}, map[string]string{"COFFER_DEV": "yes please"}, "COFFER_DEV"},
		{"tls proxy not a bool", nil, map[string]string{"COFFER_TLS_PROXY": "yes"}, "COFFER_TLS_PROXY"},
		{"dev flag not a bool", []string{"-dev=sometimes"}, nil, "dev"},
		{"bad log level", nil, map[string]string{"COFFER_LOG_LEVEL": "verbose"}, "log level"},
		{"origin with a path", nil, map[string]string{"COFFER_ALLOWED_ORIGINS": "https://app.example.com/page"}, "COFFER_ALLOWED_ORIGINS"},
		{"origin without a scheme", nil, map[string]string{"COFFER_ALLOWED_ORIGINS": "app.example.com"}, "COFFER_ALLOWED_ORIGINS"},
		{"event retention too short", nil, map[string]string{"COFFER_EVENT_RETENTION": "10s"}, "COFFER_EVENT_RETENTION"},
		{"event rows not a number", nil, map[string]string{"COFFER_EVENT_MAX_ROWS": "many"}, "COFFER_EVENT_MAX_ROWS"},
		{"profiles without the metrics listener", nil, map[string]string{"COFFER_PPROF": "true"}, "COFFER_METRICS_LISTEN"},
		{"bad log level flag", []string{"-log-level", "trace"}, nil, "log level"},
		{"bad log format", nil, map[string]string{"COFFER_LOG_FORMAT": "xml"}, "log format"},
		{"bad log format flag", []string{"-log-format", "logfmt"}, nil, "log format"},
		{"zero max conns", nil, map[string]string{"COFFER_DB_MAX_CONNS": "0"}, "COFFER_DB_MAX_CONNS"},
		{"idle timeout not a duration", nil, map[string]string{"COFFER_SESSION_IDLE_TIMEOUT": "an hour"}, "COFFER_SESSION_IDLE_TIMEOUT"},
		{"idle timeout too short", nil, map[string]string{"COFFER_SESSION_IDLE_TIMEOUT": "10s"}, "COFFER_SESSION_IDLE_TIMEOUT"},
		{"max age below idle", nil, map[string]string{"COFFER_SESSION_IDLE_TIMEOUT": "2h", "COFFER_SESSION_MAX_AGE": "1h"}, "COFFER_SESSION_MAX_AGE"},
		{"max age above 30 days", nil, map[string]string{"COFFER_SESSION_MAX_AGE": "1000h"}, "COFFER_SESSION_MAX_AGE"},
		{"checkpoint interval not a duration", nil, map[string]string{"COFFER_AUDIT_CHECKPOINT_INTERVAL": "often"}, "COFFER_AUDIT_CHECKPOINT_INTERVAL"},
		{"checkpoint interval zero", nil, map[string]string{"COFFER_AUDIT_CHECKPOINT_INTERVAL": "0s"}, "COFFER_AUDIT_CHECKPOINT_INTERVAL"},
		{"verify interval not a duration", nil, map[string]string{"COFFER_AUDIT_VERIFY_INTERVAL": "hourly"}, "COFFER_AUDIT_VERIFY_INTERVAL"},
		{"negative max conns", nil, map[string]string{"COFFER_DB_MAX_CONNS": "-4"}, "COFFER_DB_MAX_CONNS"},
		{"non-numeric max conns", nil, map[string]string{"COFFER_DB_MAX_CONNS": "lots"}, "COFFER_DB_MAX_CONNS"},
		{"zero max conns flag", []string{"-db-max-conns", "0"}, nil, "COFFER_DB_MAX_CONNS"},
		{"listen without port", nil, map[string]string{"COFFER_LISTEN": "127.0.0.1"}, "listen"},
		{"unknown flag", []string{"-no-such-flag"}, nil, "no-such-flag"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, stderr, err := cfgParse(t, tc.args, tc.env)
			if err == nil {
				t.Fatalf("ParseConfig(%q, %v) = %+v, want an error", tc.args, tc.env, c)
			}
			if tc.mention != "" && !strings.Contains(err.Error()+stderr, tc.mention) {
				t.Errorf("error %q (stderr %q) does not mention %q", err, stderr, tc.mention)
			}
		})
	}
}

// TestConfigRejectsStrayArguments: Go's flag package stops at the first non-flag argument, so
// "-dev false" sets dev mode and silently drops "false" and every flag after it. Arguments
// left over after the flags are therefore a mistake the operator must hear about.
func TestConfigRejectsStrayArguments(t *testing.T) {
	tests := []struct {
		name string
		args []string
	}{
		{"bool flag with separate value", []string{"-dev", "false"}},
		{"flags after a stray word are dropped", []string{"-tls-proxy", "false", "-listen", "127.0.0.1:9999"}},
		{"positional words", []string{"serve"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, _, err := cfgParse(t, tc.args, nil)
			if err == nil {
				t.Errorf("ParseConfig(%q) = %+v, nil; want an error for the unparsed arguments", tc.args, c)
			}
		})
	}
}

func TestConfigPlainHTTPOnlyOnLoopback(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		ok   bool
	}{
		{"default", nil, nil, true},
		{"loopback v4", nil, map[string]string{"COFFER_LISTEN": "127.0.0.1:8080"}, true},
		{"other loopback v4", nil, map[string]string{"COFFER_LISTEN": "127.0.0.2:8080"}, true},
		{"loopback v6", nil, map[string]string{"COFFER_LISTEN": "[::1]:8080"}, true},
		{"localhost", nil, map[string]string{"COFFER_LISTEN": "localhost:8080"}, true},
		{"all interfaces", nil, map[string]string{"COFFER_LISTEN": "0.0.0.0:8080"}, false},
		{"all interfaces by flag", []string{"-listen", "0.0.0.0:8080"}, nil, false},
		{"empty host", nil, map[string]string{"COFFER_LISTEN": ":8080"}, false},
		{"all interfaces v6", nil, map[string]string{"COFFER_LISTEN": "[::]:8080"}, false},
		{"private address", nil, map[string]string{"COFFER_LISTEN": "10.0.0.5:8080"}, false},
		{"host name", nil, map[string]string{"COFFER_LISTEN": "coffer.internal:8080"}, false},
		{"tls proxy false", nil, map[string]string{"COFFER_LISTEN": "0.0.0.0:8080", "COFFER_TLS_PROXY": "false"}, false},
		{"dev false", nil, map[string]string{"COFFER_LISTEN": "0.0.0.0:8080", "COFFER_DEV": "false"}, false},
		{"behind tls proxy", nil, map[string]string{"COFFER_LISTEN": "0.0.0.0:8080", "COFFER_TLS_PROXY": "true"}, true},
		{"dev mode", nil, map[string]string{"COFFER_LISTEN": "0.0.0.0:8080", "COFFER_DEV": "true"}, true},
		{"tls proxy flag", []string{"-tls-proxy"}, map[string]string{"COFFER_LISTEN": "0.0.0.0:8080"}, true},
		{"dev flag", []string{"-dev", "-listen", ":8080"}, nil, true},
		{"env tls proxy turned off by flag", []string{"-tls-proxy=false"}, map[string]string{"COFFER_LISTEN": "0.0.0.0:8080", "COFFER_TLS_PROXY": "true"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := cfgParse(t, tc.args, tc.env)
			if tc.ok {
				if err != nil {
					t.Fatalf("ParseConfig = %v, want accepted", err)
				}
				return
			}
			if err == nil {
				t.Fatal("plain HTTP on a non-loopback address was accepted")
			}
			if !strings.Contains(err.Error(), "TLS") {
				t.Errorf("error %q does not mention TLS", err)
			}
		})
	}
}

func TestConfigSecretsFromEnvOnly(t *testing.T) {
	const secret = "c2VjcmV0LXZhbHVlLW5ldmVyLWVjaG9lZA=="
	t.Run("env is read", func(t *testing.T) {
		c := cfgMustParse(t, nil, map[string]string{"COFFER_MASTER_KEY": secret, "COFFER_BOOTSTRAP_TOKEN": "tok-" + secret})
		if c.MasterKey != secret || c.BootstrapToken != "tok-"+secret {
			t.Errorf("MasterKey %q, BootstrapToken %q: not read from env", c.MasterKey, c.BootstrapToken)
		}
	})
	tests := []struct {
		name string
		args []string
	}{
		{"master key flag", []string{"-master-key=" + secret}},
		{"master key flag, separate value", []string{"-master-key", secret}},
		{"master key double dash", []string{"--master-key=" + secret}},
		{"bootstrap token flag", []string{"-bootstrap-token=" + secret}},
		{"bootstrap token flag, separate value", []string{"-bootstrap-token", secret}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, stderr, err := cfgParse(t, tc.args, nil)
			if err == nil {
				t.Fatalf("ParseConfig(%q) accepted a secret on the command line: %+v", tc.args, c)
			}
			if strings.Contains(err.Error(), secret) || strings.Contains(stderr, secret) {
				t.Errorf("the secret was echoed: err %q, stderr %q", err, stderr)
			}
		})
	}
	t.Run("usage lists no secret flag", func(t *testing.T) {
		_, stderr, _ := cfgParse(t, []string{"-h"}, nil)
		if !strings.Contains(stderr, "-listen") {
			t.Fatalf("usage output missing, got %q", stderr)
		}
		for _, f := range []string{"-master-key ", "-master-key\n", "-bootstrap-token"} {
			if strings.Contains(stderr, f) {
				t.Errorf("usage lists %q", strings.TrimSpace(f))
			}
		}
	})
}

// TestConfigBaseURLFollowsListener starts the program with an empty base URL and checks the
// URL it prints is built from the address it actually bound.
func TestConfigBaseURLFollowsListener(t *testing.T) {
	tests := []struct {
		name   string
		env    map[string]string
		prefix func(addr string) string
	}{
		{"derived", map[string]string{}, func(addr string) string { return "http://" + addr + "/setup?code=" }},
		{"configured", map[string]string{"COFFER_BASE_URL": "https://coffer.example.com/"}, func(string) string { return "https://coffer.example.com/setup?code=" }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.env["COFFER_LISTEN"] = "127.0.0.1:0"
			tc.env["COFFER_DATA_DIR"] = t.TempDir()
			c := cfgMustParse(t, nil, tc.env)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var stdout bytes.Buffer
			a, err := app.New(ctx, c, app.NewLogger(c, io.Discard), &stdout, app.Options{})
			if err != nil {
				t.Fatalf("app.New: %v", err)
			}
			done := make(chan error, 1)
			go func() { done <- a.Serve(ctx) }()
			defer func() {
				cancel()
				if err := <-done; err != nil {
					t.Errorf("Serve: %v", err)
				}
			}()
			want := tc.prefix(a.Addr())
			if strings.HasSuffix(a.Addr(), ":0") {
				t.Fatalf("Addr %q is not the bound address", a.Addr())
			}
			if !strings.HasPrefix(a.SetupURL, want) {
				t.Errorf("SetupURL = %q, want prefix %q", a.SetupURL, want)
			}
			if !strings.Contains(stdout.String(), a.SetupURL) {
				t.Errorf("setup link not printed: %q", stdout.String())
			}
		})
	}
}

func TestConfigTrustedProxies(t *testing.T) {
	c := cfgMustParse(t, nil, map[string]string{"COFFER_TRUSTED_PROXIES": "10.0.0.0/8, 192.168.1.5"})
	if !reflect.DeepEqual(c.TrustedProxies, []string{"10.0.0.0/8", "192.168.1.5"}) {
		t.Fatalf("TrustedProxies = %v", c.TrustedProxies)
	}
	if _, _, err := cfgParse(t, nil, map[string]string{"COFFER_TRUSTED_PROXIES": "10.0.0.0/33"}); err == nil || !strings.Contains(err.Error(), "COFFER_TRUSTED_PROXIES") {
		t.Fatalf("a bad CIDR: %v", err)
	}
}
