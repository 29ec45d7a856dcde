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
