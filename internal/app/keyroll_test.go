package app_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/app"
	"github.com/cofferhq/coffer/internal/secrets"
	"github.com/cofferhq/coffer/internal/store/storetest"
)

// TestDataKeyRollsBeforeItsBound: a data key seals a bounded number of values; the write that
// would pass the bound first gives the environment a new key, every older value stays
// readable under the key that sealed it, and the roll is audited.
func TestDataKeyRollsBeforeItsBound(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			dbURL, dir := storetest.Database(t, d)
			owner := newToken(t)
			s := startWith(t, d, dbURL, dir, map[string]string{"COFFER_BOOTSTRAP_TOKEN": owner},
				app.Options{KeyPolicy: &secrets.KeyPolicy{MaxUses: 3, MaxAge: time.Hour}})
			s.owner = owner
			s.withProject()
			p := envPath + "development/secrets/"
			for i := range 7 {
				s.must(http.StatusCreated, "PUT", p+"K_"+itoa(i), s.owner, map[string]string{"value": "v" + itoa(i)})
			}
			db := s.rawDB()
			var keys int
			if err := db.QueryRow(`SELECT COUNT(*) FROM data_keys k JOIN environments e ON e.id = k.environment_id WHERE e.slug = 'development'`).Scan(&keys); err != nil {
				t.Fatal(err)
			}
			// Seven seals with at most three per key: keys of 3, 3 and 1 uses.
			if keys != 3 {
				t.Fatalf("development has %d data keys after 7 seals at 3 per key, want 3", keys)
			}
			var maxUses int64
			if err := db.QueryRow(`SELECT MAX(uses) FROM data_keys`).Scan(&maxUses); err != nil {
				t.Fatal(err)
			}
			if maxUses > 3 {
				t.Fatalf("a data key sealed %d values, bound is 3", maxUses)
			}
			var rolls int
			if err := db.QueryRow(s.q(`SELECT COUNT(*) FROM audit_entries WHERE action = ?`), "environment.key.roll").Scan(&rolls); err != nil {
				t.Fatal(err)
			}
			if rolls != 2 {
				t.Fatalf("%d key rolls audited, want 2", rolls)
			}
			items := s.must(200, "GET", envPath+"development/secrets?include=values", s.owner, nil).items()
			if len(items) != 7 {
				t.Fatalf("%d values readable, want 7", len(items))
			}
			for i, it := range items {
				if it["value"] != "v"+itoa(i) {
					t.Fatalf("K_%d = %v after key rolls", i, it["value"])
				}
			}
		})
	}
}

// TestIdleEnvironmentRollsByAge: an environment nobody writes to still gets a new data key
// once its key is older than the policy allows; the server's rotation runner notices at start
// (and hourly), rolls, reseals the values and retires the old key.
func TestIdleEnvironmentRollsByAge(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			dbURL, dir := storetest.Database(t, d)
			owner := newToken(t)
			env := map[string]string{"COFFER_BOOTSTRAP_TOKEN": owner}
			policy := app.Options{KeyPolicy: &secrets.KeyPolicy{MaxUses: 1 << 30, MaxAge: time.Hour}}
			s := startWith(t, d, dbURL, dir, env, policy)
			s.owner = owner
			s.withProject()
			s.must(http.StatusCreated, "PUT", envPath+"staging/secrets/IDLE", s.owner, map[string]string{"value": "still-here"})
			db := s.rawDB()
			var oldKey string
			if err := db.QueryRow(`SELECT e.current_key_id FROM environments e WHERE e.slug = 'staging'`).Scan(&oldKey); err != nil {
				t.Fatal(err)
			}
			// Age the staging key only.
			if _, err := db.Exec(s.q(`UPDATE data_keys SET created_at = ? WHERE id = ?`), time.Now().Add(-2*time.Hour).UTC(), oldKey); err != nil {
				t.Fatal(err)
			}

			s2 := startWith(t, d, dbURL, dir, env, policy)
			s2.owner = owner
			deadline := time.Now().Add(30 * time.Second)
			for {
				var keys int
				var current string
				if err := db.QueryRow(`SELECT COUNT(*), MAX(e.current_key_id) FROM data_keys k JOIN environments e ON e.id = k.environment_id WHERE e.slug = 'staging'`).Scan(&keys, &current); err != nil {
					t.Fatal(err)
				}
				if keys == 1 && current != oldKey {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("staging still has %d data keys (current %s, old %s) 30s after start", keys, current, oldKey)
				}
				time.Sleep(50 * time.Millisecond)
			}
			if got := s2.must(http.StatusOK, "GET", envPath+"staging/secrets/IDLE", s2.owner, nil); got.body["value"] != "still-here" {
				t.Fatalf("value after the age roll = %s", got.raw)
			}
			var jobs int
			if err := db.QueryRow(`SELECT COUNT(*) FROM key_jobs WHERE kind = 'reseal'`).Scan(&jobs); err != nil {
				t.Fatal(err)
			}
			if jobs != 1 {
				t.Fatalf("%d reseal jobs, want 1: only the aged environment rolls", jobs)
			}
		})
	}
}
