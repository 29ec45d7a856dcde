package app_test

import (
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"errors"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/crypto/awskms/kmstest"
	"github.com/cofferhq/coffer/internal/crypto/localkey"
	"github.com/cofferhq/coffer/internal/store/storetest"
)

// deployment is one database and data directory that servers are started on, stopped and
// started again, as an operator would: the owner token survives restarts.
type deployment struct {
	dialect, dbURL, dir, owner string
}

func newDeployment(t *testing.T, dialect string) deployment {
	t.Helper()
	dbURL, dir := storetest.Database(t, dialect)
	return deployment{dialect: dialect, dbURL: dbURL, dir: dir, owner: newToken(t)}
}

func (d deployment) keyFile() string { return filepath.Join(d.dir, "master.key") }

func (d deployment) env(extra map[string]string) map[string]string {
	env := map[string]string{"COFFER_BOOTSTRAP_TOKEN": d.owner}
	for k, v := range extra {
		env[k] = v
	}
	return env
}

// start runs a server on the deployment until the test ends.
func (d deployment) start(t *testing.T, extra map[string]string) *server {
	t.Helper()
	s := startOn(t, d.dialect, d.dbURL, d.dir, d.env(extra))
	s.owner = d.owner
	return s
}

// run starts a server, hands it to fn and stops it before returning: a run before a restart.
func (d deployment) run(t *testing.T, name string, extra map[string]string, fn func(s *server)) {
	t.Helper()
	if !t.Run(name, func(t *testing.T) { fn(d.start(t, extra)) }) {
		t.FailNow()
	}
}

// startErr starts the program as startOn does, expecting it to refuse; a start that succeeds
// is stopped at once and reported as nil.
func (d deployment) startErr(extra map[string]string) error {
	vars := map[string]string{
		"COFFER_LISTEN":       "127.0.0.1:0",
		"COFFER_DATA_DIR":     d.dir,
		"COFFER_DATABASE_URL": d.dbURL,
	}
	for k, v := range d.env(extra) {
		vars[k] = v
	}
	return tryStart(vars)
}

// rawDB opens the deployment's database directly, with no server running.
func (d deployment) rawDB(t *testing.T) *sql.DB {
	t.Helper()
	return (&server{t: t, dialect: d.dialect, dbURL: d.dbURL, dataDir: d.dir}).rawDB()
}

// dbSnapshot reads every row of every table, as sorted strings per table. api_tokens'
// last_used_at is left out: any authenticated request may touch it.
func dbSnapshot(t *testing.T, dialect string, db *sql.DB) map[string][]string {
	t.Helper()
	list := `SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'`
	if dialect == "postgres" {
		list = `SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'`
	}
	tables := queryStrings(t, db, list)
	out := snapshotTables(t, db, tables)
	// The snapshot proves nothing unless it holds what a start could damage.
	for _, table := range []string{"key_checks", "data_keys", "secrets", "secret_versions", "audit_entries"} {
		if len(out[table]) == 0 {
			t.Fatalf("snapshot: table %s is empty or missing; tables %v", table, tables)
		}
	}
	return out
}

// sameSnapshot fails the test when any row differs between two snapshots.
func sameSnapshot(t *testing.T, what string, before, after map[string][]string) {
	t.Helper()
	tables := make([]string, 0, len(before))
	for table := range before {
		tables = append(tables, table)
	}
	for table := range after {
		if _, ok := before[table]; !ok {
			tables = append(tables, table)
		}
	}
	sameTables(t, what, tables, before, after)
}

func queryStrings(t *testing.T, db *sql.DB, query string, args ...any) []string {
	t.Helper()
	rows, err := db.Query(query, args...)
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

// keyChecks lists the KEK ids with a key-check record.
func keyChecks(t *testing.T, db *sql.DB) []string {
	t.Helper()
	return queryStrings(t, db, `SELECT kek_id FROM key_checks`)
}

// randomKey returns a new base64 local master key and its KEK id.
func randomKey(t *testing.T) (b64, id string) {
	t.Helper()
	var k [32]byte
	if _, err := rand.Read(k[:]); err != nil {
		t.Fatal(err)
	}
	b64 = base64.StdEncoding.EncodeToString(k[:])
	w, err := localkey.FromBase64(b64)
	if err != nil {
		t.Fatal(err)
	}
	return b64, w.KeyID()
}

// fileKey returns the deployment's key file as base64 and its KEK id.
func fileKey(t *testing.T, d deployment) (b64, id string) {
	t.Helper()
	raw, err := os.ReadFile(d.keyFile())
	if err != nil {
		t.Fatal(err)
	}
	w, err := localkey.Load(d.keyFile())
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(raw)), w.KeyID()
}

// isolateAWS points the AWS SDK's credential chain at static test credentials in the
// environment and at nothing else on the machine. It sets process environment variables, so
// the calling test cannot be parallel; its subtests can, since the variables stay set until
// they all finish.
func isolateAWS(t *testing.T) {
	t.Helper()
	dir := t.TempDir()
	for k, v := range map[string]string{
		"AWS_ACCESS_KEY_ID":           "AKIAKMSTEST",
		"AWS_SECRET_ACCESS_KEY":       "kmstest-secret-access-key",
		"AWS_SESSION_TOKEN":           "",
		"AWS_PROFILE":                 "",
		"AWS_REGION":                  kmstest.DefaultRegion,
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

// kmsEnv configures a server to wrap its data keys under keyID on the test KMS.
func kmsEnv(k *kmstest.Running, keyID string) map[string]string {
	return map[string]string{
		"COFFER_KMS":          "awskms",
		"COFFER_KMS_ENDPOINT": k.URL,
		"COFFER_KMS_REGION":   kmstest.DefaultRegion,
		"COFFER_KMS_KEY_ID":   keyID,
	}
}

// errContains fails the test unless err is an error whose message holds every part.
func errContains(t *testing.T, what string, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: the server started; want a refusal", what)
	}
	t.Logf("%s: %v", what, err)
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("%s: the error does not mention %q:\n%v", what, p, err)
		}
	}
}

const generatedKeyLog = "generated a new local master key"

// TestStartupKeyCheckFreshStart: the first start on an empty database generates a 0600 key
// file and records its key check; a restart uses that file, generates nothing, and reads
// what was written before.
func TestStartupKeyCheckFreshStart(t *testing.T) {
	for _, dialect := range storetest.Dialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			d := newDeployment(t, dialect)
			var kekID string
			d.run(t, "first start", nil, func(s *server) {
				info, err := os.Stat(d.keyFile())
				if err != nil {
					t.Fatalf("no key file after the first start: %v", err)
				}
				if info.Mode().Perm() != 0o600 {
					t.Errorf("key file mode %04o, want 0600", info.Mode().Perm())
				}
				_, kekID = fileKey(t, d)
				if got := keyChecks(t, s.rawDB()); len(got) != 1 || got[0] != kekID {
					t.Errorf("key checks %v, want one for the generated key %s", got, kekID)
				}
				if !strings.Contains(s.logs.String(), generatedKeyLog) {
					t.Errorf("the first start did not warn that it generated a key:\n%s", s.logs)
				}
				s.withProject()
				s.must(http.StatusCreated, "PUT", envPath+"development/secrets/DB_URL", s.owner, map[string]string{"value": "postgres://before-restart"})
			})
			before, err := os.ReadFile(d.keyFile())
			if err != nil {
				t.Fatal(err)
			}

			s := d.start(t, nil)
			if got := s.must(http.StatusOK, "GET", envPath+"development/secrets/DB_URL", s.owner, nil).body["value"]; got != "postgres://before-restart" {
				t.Errorf("after a restart the secret reads %v", got)
			}
			after, err := os.ReadFile(d.keyFile())
			if err != nil || string(after) != string(before) {
				t.Errorf("the restart changed the key file (err %v)", err)
			}
			if strings.Contains(s.logs.String(), generatedKeyLog) {
				t.Errorf("the restart generated a key:\n%s", s.logs)
			}
			if got := keyChecks(t, s.rawDB()); len(got) != 1 || got[0] != kekID {
				t.Errorf("key checks after the restart %v, want only %s", got, kekID)
			}
		})
	}
}

// TestStartupKeyCheckMissingKeyFile: with the key file gone from a database that holds data,
// the start fails saying which file and key to restore, generates no key and changes no row;
// restoring the file, as the message says, brings everything back.
func TestStartupKeyCheckMissingKeyFile(t *testing.T) {
	for _, dialect := range storetest.Dialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			d := newDeployment(t, dialect)
			d.run(t, "first start", nil, func(s *server) {
				s.withProject()
				s.must(http.StatusCreated, "PUT", envPath+"development/secrets/API_KEY", s.owner, map[string]string{"value": "sk-live-kept"})
			})
			saved, err := os.ReadFile(d.keyFile())
			if err != nil {
				t.Fatal(err)
			}
			_, kekID := fileKey(t, d)
			if err := os.Remove(d.keyFile()); err != nil {
				t.Fatal(err)
			}
			db := d.rawDB(t)
			before := dbSnapshot(t, dialect, db)

			err = d.startErr(nil)
			errContains(t, "start without the key file", err, d.keyFile(), kekID, "restore", "never generates a new key")
			if _, err := os.Stat(d.keyFile()); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("a refused start left a key file behind (stat: %v)", err)
			}
			sameSnapshot(t, "a start without the key file", before, dbSnapshot(t, dialect, db))

			if err := os.WriteFile(d.keyFile(), saved, 0o600); err != nil {
				t.Fatal(err)
			}
			s := d.start(t, nil)
			if got := s.must(http.StatusOK, "GET", envPath+"development/secrets/API_KEY", s.owner, nil).body["value"]; got != "sk-live-kept" {
				t.Errorf("after restoring the key file the secret reads %v", got)
			}
		})
	}
}

// TestStartupKeyCheckWrongLocalKey: a master key other than the one the data is wrapped under
// stops the start with both key ids and the way to rotate, never echoes the key, and writes
// nothing.
func TestStartupKeyCheckWrongLocalKey(t *testing.T) {
	for _, dialect := range storetest.Dialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			d := newDeployment(t, dialect)
			d.run(t, "first start", nil, func(s *server) {
				s.withProject()
				s.must(http.StatusCreated, "PUT", envPath+"development/secrets/API_KEY", s.owner, map[string]string{"value": "sk-live-kept"})
			})
			_, usedID := fileKey(t, d)
			saved, err := os.ReadFile(d.keyFile())
			if err != nil {
				t.Fatal(err)
			}
			wrong, wrongID := randomKey(t)
			wrongPrev, _ := randomKey(t)
			db := d.rawDB(t)
			before := dbSnapshot(t, dialect, db)

			tests := []struct {
				name string
				env  map[string]string
				file string // replaces the key file for the attempt when set
				want []string
			}{
				{
					name: "COFFER_MASTER_KEY is another key", env: map[string]string{"COFFER_MASTER_KEY": wrong},
					want: []string{"COFFER_MASTER_KEY", wrongID, "wrapped under " + usedID, "COFFER_PREVIOUS_MASTER_KEYS"},
				},
				{
					name: "wrong current and previous keys", env: map[string]string{"COFFER_MASTER_KEY": wrong, "COFFER_PREVIOUS_MASTER_KEYS": wrongPrev},
					want: []string{wrongID, "wrapped under " + usedID, "COFFER_PREVIOUS_MASTER_KEYS"},
				},
				{
					name: "key file replaced by another key", file: wrong + "\n",
					want: []string{d.keyFile(), wrongID, "wrapped under " + usedID, "COFFER_PREVIOUS_MASTER_KEYS"},
				},
			}
			for _, tt := range tests {
				if tt.file != "" {
					if err := os.WriteFile(d.keyFile(), []byte(tt.file), 0o600); err != nil {
						t.Fatal(err)
					}
				}
				err := d.startErr(tt.env)
				errContains(t, tt.name, err, tt.want...)
				for _, key := range []string{wrong, wrongPrev} {
					if err != nil && strings.Contains(err.Error(), key) {
						t.Errorf("%s: the error shows a key itself", tt.name)
					}
				}
				if err := os.WriteFile(d.keyFile(), saved, 0o600); err != nil {
					t.Fatal(err)
				}
				sameSnapshot(t, tt.name, before, dbSnapshot(t, dialect, db))
			}

			s := d.start(t, nil)
			if got := s.must(http.StatusOK, "GET", envPath+"development/secrets/API_KEY", s.owner, nil).body["value"]; got != "sk-live-kept" {
				t.Errorf("with the right key again the secret reads %v", got)
			}
		})
	}
}

// TestStartupKeyCheckWrongKMSKey: a database made under KMS key A refuses to start under
// another KMS key (naming A), under a key that does not exist, and under A while A is
// disabled or pending deletion; none of these writes anything, and A works again once
// re-enabled.
func TestStartupKeyCheckWrongKMSKey(t *testing.T) {
	isolateAWS(t)
	for _, dialect := range storetest.Dialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			k := kmstest.Start(t)
			keyA, keyB, doomed := k.CreateKey(), k.CreateKey(), k.CreateKey()
			if err := k.ScheduleDeletion(doomed); err != nil {
				t.Fatal(err)
			}
			missing := "arn:aws:kms:us-east-1:" + kmstest.DefaultAccount + ":key/00000000-0000-4000-8000-000000000000"
			d := newDeployment(t, dialect)
			d.run(t, "first start", kmsEnv(k, keyA), func(s *server) {
				if got := keyChecks(t, s.rawDB()); len(got) != 1 || got[0] != keyA {
					t.Errorf("key checks %v, want one for %s", got, keyA)
				}
				s.withProject()
				s.must(http.StatusCreated, "PUT", envPath+"development/secrets/API_KEY", s.owner, map[string]string{"value": "sk-live-kept"})
			})
			if _, err := os.Stat(d.keyFile()); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("a KMS start created a local key file (stat: %v)", err)
			}
			db := d.rawDB(t)
			before := dbSnapshot(t, dialect, db)

			tests := []struct {
				name    string
				keyID   string
				disable bool // disable A for the attempt
				want    []string
			}{
				{name: "another key", keyID: keyB, want: []string{"COFFER_KMS_KEY_ID", keyB, "wrapped under " + keyA, "COFFER_KMS_PREVIOUS_KEY_IDS"}},
				{name: "key that does not exist", keyID: missing, want: []string{"COFFER_KMS_KEY_ID", missing, "not found"}},
				{name: "the right key, disabled", keyID: keyA, disable: true, want: []string{"COFFER_KMS_KEY_ID", keyA, "disabled"}},
				{name: "key pending deletion", keyID: doomed, want: []string{"COFFER_KMS_KEY_ID", doomed, "pending deletion"}},
			}
			for _, tt := range tests {
				if tt.disable {
					if err := k.DisableKey(keyA); err != nil {
						t.Fatal(err)
					}
				}
				errContains(t, tt.name, d.startErr(kmsEnv(k, tt.keyID)), tt.want...)
				if tt.disable {
					if err := k.EnableKey(keyA); err != nil {
						t.Fatal(err)
					}
				}
				sameSnapshot(t, tt.name, before, dbSnapshot(t, dialect, db))
			}
			if _, err := os.Stat(d.keyFile()); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("a refused KMS start created a local key file (stat: %v)", err)
			}

			s := d.start(t, kmsEnv(k, keyA))
			if got := s.must(http.StatusOK, "GET", envPath+"development/secrets/API_KEY", s.owner, nil).body["value"]; got != "sk-live-kept" {
				t.Errorf("under key A again the secret reads %v", got)
			}
		})
	}
}

// TestStartupKeyCheckRotation: a new master key with the old one configured as previous is a
// deliberate rotation: the server starts, old secrets stay readable, a background rewrap moves
// every data key to the new key and retires the old key's check, after which the old key
// alone no longer opens the database and the new key alone does.
func TestStartupKeyCheckRotation(t *testing.T) {
	for _, dialect := range storetest.Dialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			d := newDeployment(t, dialect)
			d.run(t, "first start", nil, func(s *server) {
				s.withProject()
				s.must(http.StatusCreated, "PUT", envPath+"development/secrets/API_KEY", s.owner, map[string]string{"value": "dev-before"})
				s.must(http.StatusCreated, "PUT", envPath+"staging/secrets/API_KEY", s.owner, map[string]string{"value": "staging-before"})
			})
			oldKey, oldID := fileKey(t, d)
			newKey, newID := randomKey(t)
			rotated := map[string]string{"COFFER_MASTER_KEY": newKey, "COFFER_PREVIOUS_MASTER_KEYS": oldKey}

			d.run(t, "rotated", rotated, func(s *server) {
				db := s.rawDB()
				// The old key's record may already be retired by the background rewrap.
				if got := keyChecks(t, db); !slices.Contains(got, newID) {
					t.Errorf("key checks at start %v, want one for the new key %s", got, newID)
				}
				for env, want := range map[string]string{"development": "dev-before", "staging": "staging-before"} {
					if got := s.must(http.StatusOK, "GET", envPath+env+"/secrets/API_KEY", s.owner, nil).body["value"]; got != want {
						t.Errorf("%s after rotation reads %v, want %s", env, got, want)
					}
				}
				s.must(http.StatusCreated, "PUT", envPath+"production/secrets/API_KEY", s.owner, map[string]string{"value": "prod-after"})

				waitRewrap(t, s, db)
				if got := queryStrings(t, db, `SELECT DISTINCT kek_id FROM data_keys`); len(got) != 1 || got[0] != newID {
					t.Errorf("data keys after the rewrap are under %v, want only %s", got, newID)
				}
				if got := keyChecks(t, db); len(got) != 1 || got[0] != newID {
					t.Errorf("key checks after the rewrap %v, want only %s", got, newID)
				}
			})

			// The key file still holds the old key: alone, it is now the wrong key.
			errContains(t, "old key alone after the rewrap", d.startErr(nil), oldID, "wrapped under "+newID)

			s := d.start(t, map[string]string{"COFFER_MASTER_KEY": newKey})
			for env, want := range map[string]string{"development": "dev-before", "staging": "staging-before", "production": "prod-after"} {
				if got := s.must(http.StatusOK, "GET", envPath+env+"/secrets/API_KEY", s.owner, nil).body["value"]; got != want {
					t.Errorf("%s under the new key alone reads %v, want %s", env, got, want)
				}
			}
		})
	}
}

// waitRewrap waits until every platform rewrap job, at least one, is done.
func waitRewrap(t *testing.T, s *server, db *sql.DB) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		states := queryStrings(t, db, s.q(`SELECT state FROM key_jobs WHERE kind = ?`), "rewrap")
		if len(states) > 0 && !slices.Contains(states, "running") && !slices.Contains(states, "failed") {
			return
		}
		if slices.Contains(states, "failed") || time.Now().After(deadline) {
			t.Fatalf("rewrap jobs in states %v, want all done; logs:\n%s", states, s.logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestStartupKeyCheckMoveToKMS: moving from the local key to KMS key A with the old key file
// still in place rewraps every data key under A and retires the local key. Restarts with the
// file still there must not record the local key again: once the operator deletes the file,
// a later rotation from A to B must need only A.
func TestStartupKeyCheckMoveToKMS(t *testing.T) {
	isolateAWS(t)
	for _, dialect := range storetest.Dialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			k := kmstest.Start(t)
			keyA, keyB := k.CreateKey(), k.CreateKey()
			d := newDeployment(t, dialect)
			d.run(t, "local", nil, func(s *server) {
				s.withProject()
				s.must(http.StatusCreated, "PUT", envPath+"development/secrets/API_KEY", s.owner, map[string]string{"value": "kept"})
			})
			_, localID := fileKey(t, d)

			d.run(t, "move to A", kmsEnv(k, keyA), func(s *server) {
				db := s.rawDB()
				waitRewrap(t, s, db)
				if got := queryStrings(t, db, `SELECT DISTINCT kek_id FROM data_keys`); len(got) != 1 || got[0] != keyA {
					t.Errorf("data keys after the move are under %v, want only %s", got, keyA)
				}
			})
			d.run(t, "restart under A with the key file", kmsEnv(k, keyA), func(s *server) {
				if got := keyChecks(t, s.rawDB()); len(got) != 1 || got[0] != keyA {
					t.Errorf("key checks %v, want only %s: the retired local key %s was recorded again", got, keyA, localID)
				}
			})

			if err := os.Remove(d.keyFile()); err != nil {
				t.Fatal(err)
			}
			rotate := kmsEnv(k, keyB)
			rotate["COFFER_KMS_PREVIOUS_KEY_IDS"] = keyA
			// Nothing is wrapped under the deleted local key, so A alone is the key to keep.
			s := d.start(t, rotate)
			waitRewrap(t, s, s.rawDB())
			if got := s.must(http.StatusOK, "GET", envPath+"development/secrets/API_KEY", s.owner, nil).body["value"]; got != "kept" {
				t.Errorf("under B the secret reads %v", got)
			}
		})
	}
}
