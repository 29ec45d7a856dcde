package app_test

import (
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

const auditPath = "/api/v1/tenants/default/audit"

// verifyAudit asks the server to verify the default tenant's chain.
func (s *server) verifyAudit() response {
	s.t.Helper()
	return s.must(http.StatusOK, "GET", auditPath+"/verify", s.owner, nil)
}

// tamper runs statements on the audit table as someone with database access would, with the
// append-only triggers out of the way.
func (s *server) tamper(stmts ...string) {
	s.t.Helper()
	db := s.rawDB()
	if s.dialect == "postgres" {
		stmts = append(append([]string{`ALTER TABLE audit_entries DISABLE TRIGGER USER`}, stmts...), `ALTER TABLE audit_entries ENABLE TRIGGER USER`)
	} else {
		stmts = append([]string{`DROP TRIGGER audit_entries_no_update`, `DROP TRIGGER audit_entries_no_delete`}, stmts...)
	}
	for _, q := range stmts {
		if _, err := db.Exec(q); err != nil {
			s.t.Fatalf("%s: %v", q, err)
		}
	}
}

// tenantID is the default tenant's id.
func (s *server) tenantID() string {
	s.t.Helper()
	var id string
	if err := s.rawDB().QueryRow(`SELECT id FROM tenants WHERE slug = 'default'`).Scan(&id); err != nil {
		s.t.Fatal(err)
	}
	return id
}

// chainWork writes and reads secrets so the default tenant's chain has n entries or more.
func (s *server) chainWork(n int) {
	s.t.Helper()
	s.withProject()
	for i := 0; ; i++ {
		s.must(http.StatusCreated, "PUT", envPath+"development/secrets/"+fmt.Sprintf("S_%d", i), s.owner, map[string]string{"value": "v"})
		s.must(http.StatusOK, "GET", envPath+"development/secrets/"+fmt.Sprintf("S_%d", i), s.owner, nil)
		var count int
		if err := s.rawDB().QueryRow(s.q(`SELECT COUNT(*) FROM audit_entries WHERE tenant_id = ?`), s.tenantID()).Scan(&count); err != nil {
			s.t.Fatal(err)
		}
		if count >= n {
			return
		}
	}
}

func TestAuditChainVerifies(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *server) {
		s.chainWork(20)
		v := s.verifyAudit()
		if v.body["ok"] != true || v.body["entries"].(float64) < 20 || v.body["first_bad_sequence"] != nil {
			t.Fatalf("verify: %s", v.raw)
		}
		list := s.must(http.StatusOK, "GET", auditPath+"?limit=5", s.owner, nil)
		items := list.items()
		if len(items) != 5 || items[0]["sequence"] != float64(1) || items[1]["prev_hash"] != items[0]["hash"] || str(list.body["next_cursor"]) == "" {
			t.Fatalf("audit listing: %s", list.raw)
		}
		if a, _ := items[0]["actor"].(map[string]any); a["kind"] == "" && items[0]["action"] != "instance.bootstrap" {
			t.Errorf("first entry's actor has no principal kind: %v", items[0])
		}
		reveals := s.must(http.StatusOK, "GET", auditPath+"?action=secret.reveal&limit=100", s.owner, nil)
		for _, it := range reveals.items() {
			if it["action"] != "secret.reveal" || it["outcome"] != "success" || !strings.HasPrefix(str(it["user_agent"]), "Go-http-client") {
				t.Fatalf("filtered listing: %v", it)
			}
		}
		// Members may not read the log.
		kim := s.newUser("kim@example.com")
		s.join(s.owner, "default", kim, "kim@example.com", "member")
		if r := s.call("GET", auditPath+"/verify", kim, nil); r.status != http.StatusForbidden {
			t.Fatalf("a member verifying: %d", r.status)
		}
	})
}

// TestAuditTamperDetected breaks the chain in each way someone with database access could,
// and checks that verify names the first bad sequence.
func TestAuditTamperDetected(t *testing.T) {
	cases := []struct {
		name  string
		stmts func(tenant string) []string
		first float64
	}{
		{"edit a field", func(tn string) []string {
			return []string{fmt.Sprintf(`UPDATE audit_entries SET target = 'elsewhere' WHERE tenant_id = '%s' AND seq = 7`, tn)}
		}, 7},
		{"delete one in the middle", func(tn string) []string {
			return []string{fmt.Sprintf(`DELETE FROM audit_entries WHERE tenant_id = '%s' AND seq = 9`, tn)}
		}, 9},
		{"delete the last three", func(tn string) []string {
			return []string{fmt.Sprintf(`DELETE FROM audit_entries WHERE tenant_id = '%s' AND seq > (SELECT MAX(seq) - 3 FROM audit_entries WHERE tenant_id = '%s')`, tn, tn)}
		}, -3},
		{"swap two", func(tn string) []string {
			return []string{
				fmt.Sprintf(`UPDATE audit_entries SET seq = -1 WHERE tenant_id = '%s' AND seq = 5`, tn),
				fmt.Sprintf(`UPDATE audit_entries SET seq = 5 WHERE tenant_id = '%s' AND seq = 6`, tn),
				fmt.Sprintf(`UPDATE audit_entries SET seq = 6 WHERE tenant_id = '%s' AND seq = -1`, tn),
			}
		}, 5},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			forEachDialect(t, func(t *testing.T, s *server) {
				s.chainWork(20)
				tn := s.tenantID()
				var last float64
				if err := s.rawDB().QueryRow(s.q(`SELECT MAX(seq) FROM audit_entries WHERE tenant_id = ?`), tn).Scan(&last); err != nil {
					t.Fatal(err)
				}
				s.tamper(c.stmts(tn)...)
				want := c.first
				if want < 0 {
					want = last + want + 1
				}
				v := s.verifyAudit()
				if v.body["ok"] != false || v.body["first_bad_sequence"] != want || str(v.body["reason"]) == "" {
					t.Fatalf("verify after %s: %s, want first bad %v", c.name, v.raw, want)
				}
			})
		})
	}
}

// TestAuditChainUnderConcurrency: many writers and revealers at once leave one unbroken chain:
// no gaps, no duplicate sequence numbers, no two entries after the same one.
// retryBusy repeats a request that was refused with 503 as a well-behaved client does, a few
// times: on SQLite 32 clients contend for the one write lock, and on a loaded two-core machine
// under -race a request can wait out the lock's timeout (the request then changed nothing, and
// a reveal returned no value). What the test checks is the chain afterwards.
func retryBusy(do func() response) response {
	r := do()
	for i := 0; i < 5 && r.status == http.StatusServiceUnavailable; i++ {
		time.Sleep(100 * time.Millisecond)
		r = do()
	}
	return r
}

func TestAuditChainUnderConcurrency(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *server) {
		s.withProject()
		s.must(http.StatusCreated, "PUT", envPath+"development/secrets/READ_ME", s.owner, map[string]string{"value": "x"})
		// 16 x 500 takes about three minutes under -race on two cores; make test runs 100 each,
		// COFFER_AUDIT_STRESS_OPS=500 the full size.
		const writers, revealers = 16, 16
		ops := 100
		if n, err := strconv.Atoi(os.Getenv("COFFER_AUDIT_STRESS_OPS")); err == nil && n > 0 {
			ops = n
		}
		var wg sync.WaitGroup
		errs := make(chan string, writers+revealers)
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range ops {
					r := retryBusy(func() response {
						return s.call("PUT", envPath+"development/secrets/"+fmt.Sprintf("W%d_%d", w, i%5), s.owner, map[string]string{"value": fmt.Sprint(i)})
					})
					if r.status != http.StatusOK && r.status != http.StatusCreated {
						errs <- fmt.Sprintf("write: %d %s", r.status, r.raw)
						return
					}
				}
			}()
		}
		for range revealers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range ops {
					if r := retryBusy(func() response { return s.call("GET", envPath+"development/secrets/READ_ME", s.owner, nil) }); r.status != http.StatusOK {
						errs <- fmt.Sprintf("read: %d %s", r.status, r.raw)
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for e := range errs {
			t.Fatal(e)
		}
		v := s.verifyAudit()
		if v.body["ok"] != true || v.body["entries"].(float64) < float64(writers*ops+revealers*ops) {
			t.Fatalf("verify after concurrent work: %s", v.raw)
		}
		var n, seqs, prevs int
		if err := s.rawDB().QueryRow(s.q(`SELECT COUNT(*), COUNT(DISTINCT seq), COUNT(DISTINCT prev_hash) FROM audit_entries WHERE tenant_id = ? AND seq IS NOT NULL`), s.tenantID()).Scan(&n, &seqs, &prevs); err != nil {
			t.Fatal(err)
		}
		if n != seqs || n != prevs {
			t.Fatalf("%d entries, %d distinct sequence numbers, %d distinct previous hashes", n, seqs, prevs)
		}
	})
}

// TestDeniedAttemptsAreAudited: an authenticated caller refused on a secret (403, or 404 for
// what they may not see) leaves an entry with outcome denied, at most 20 a minute per caller.
func TestDeniedAttemptsAreAudited(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *server) {
		s.withProject()
		s.must(http.StatusCreated, "PUT", envPath+"production/secrets/KEY", s.owner, map[string]string{"value": "v"})
		viewer := s.newUser("viewer@example.com")
		s.join(s.owner, "default", viewer, "viewer@example.com", "member")
		s.must(http.StatusOK, "POST", "/api/v1/tenants/default/projects/web/members", s.owner, map[string]any{"email": "viewer@example.com", "role": "viewer"})
		if r := s.call("GET", envPath+"production/secrets/KEY", viewer, nil); r.status != http.StatusForbidden {
			t.Fatalf("a viewer reading a value: %d", r.status)
		}
		denied := s.must(http.StatusOK, "GET", auditPath+"?outcome=denied", s.owner, nil).items()
		if len(denied) != 1 || denied[0]["action"] != "secret.denied" || denied[0]["target_id"] != "KEY" {
			t.Fatalf("denied entries: %v", denied)
		}
		// An outsider's probes land in the instance chain (they cannot see the tenant); a
		// flood of them records about 20.
		outsider := s.newUser("outsider@example.com")
		for range 40 {
			if r := s.call("GET", envPath+"production/secrets/KEY", outsider, nil); r.status != http.StatusNotFound {
				t.Fatalf("an outsider: %d", r.status)
			}
		}
		var n int
		// 20 at once, then one every 3 s: a slow run may record a few more, never all 40.
		if err := s.rawDB().QueryRow(`SELECT COUNT(*) FROM audit_entries WHERE tenant_id = '' AND outcome = 'denied'`).Scan(&n); err != nil || n < 20 || n > 25 {
			t.Fatalf("the outsider's denied entries: %d (%v), want 20 (a few more on a slow run)", n, err)
		}
		// A bad token is a 401 and no entry; the chains still verify.
		s.call("GET", envPath+"production/secrets/KEY", "cfr_pat_"+strings.Repeat("x", 43), nil)
		if v := s.verifyAudit(); v.body["ok"] != true {
			t.Fatalf("verify: %s", v.raw)
		}
	})
}
