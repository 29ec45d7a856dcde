package app_test

import (
	"bytes"
	"net/http"
	"testing"

	"github.com/cofferhq/coffer/internal/app"
	"github.com/cofferhq/coffer/internal/store/storetest"
)

// TestPlatformFieldSealing: instance-level secrets are sealed under the platform data key,
// which is stored only wrapped; a sealed field opens only for the purpose and owner it was
// sealed for, survives a restart, and never reaches the database in clear.
func TestPlatformFieldSealing(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			dbURL, dir := storetest.Database(t, d)
			owner := newToken(t)
			env := map[string]string{"COFFER_BOOTSTRAP_TOKEN": owner}
			s := startWith(t, d, dbURL, dir, env, app.Options{})
			ctx := t.Context()
			secret := []byte("totp-seed-JBSWY3DPEHPK3PXP-canary")
			sealed, err := s.app.Fields.Seal(ctx, "totp_seed", "user-1", secret)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(sealed, secret) {
				t.Fatal("sealed field holds the plaintext")
			}
			got, err := s.app.Fields.Open(ctx, "totp_seed", "user-1", sealed)
			if err != nil || !bytes.Equal(got, secret) {
				t.Fatalf("Open = %q, %v", got, err)
			}
			for _, c := range []struct{ purpose, owner string }{{"totp_seed", "user-2"}, {"oidc_client_secret", "user-1"}} {
				if _, err := s.app.Fields.Open(ctx, c.purpose, c.owner, sealed); err == nil {
					t.Fatalf("a field sealed for totp_seed/user-1 opened as %s/%s", c.purpose, c.owner)
				}
			}
			var n int
			if err := s.rawDB().QueryRow(`SELECT COUNT(*) FROM platform_keys WHERE length(wrapped_key) > 0`).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n != 1 {
				t.Fatalf("%d platform keys stored, want 1 wrapped key", n)
			}

			// Another replica (a fresh cache) opens it through the stored, wrapped key.
			s2 := startWith(t, d, dbURL, dir, env, app.Options{})
			got, err = s2.app.Fields.Open(ctx, "totp_seed", "user-1", sealed)
			if err != nil || !bytes.Equal(got, secret) {
				t.Fatalf("Open on another replica = %q, %v", got, err)
			}
			s2.must(http.StatusOK, "GET", "/readyz", "", nil)
		})
	}
}
