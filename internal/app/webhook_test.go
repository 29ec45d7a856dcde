package app_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/app"
	"github.com/cofferhq/coffer/internal/store/storetest"
	"github.com/cofferhq/coffer/internal/webhook"
)

const hooksPath = "/api/v1/tenants/default/projects/web/webhooks"

// received is one request a test receiver got.
type received struct {
	header http.Header
	body   []byte
}

// receiver is an HTTPS endpoint that records what it is sent.
type receiver struct {
	srv  *httptest.Server
	mu   sync.Mutex
	got  []received
	code atomic.Int32 // the status it answers; 200 unless set
}

// newReceiver starts a receiver on addr ("" for any port on loopback).
func newReceiver(t *testing.T, addr string) *receiver {
	t.Helper()
	r := &receiver{}
	r.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.got = append(r.got, received{header: req.Header.Clone(), body: body})
		r.mu.Unlock()
		code := int(r.code.Load())
		if code == 0 {
			code = http.StatusOK
		}
		w.WriteHeader(code)
	}))
	if addr != "" {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("receiver on %s: %v", addr, err)
		}
		r.srv.Listener.Close()
		r.srv.Listener = ln
	}
	r.srv.StartTLS()
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) requests() []received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]received(nil), r.got...)
}

// waitFor polls until n requests have arrived.
func (r *receiver) waitFor(t *testing.T, n int) []received {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if got := r.requests(); len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("the receiver got %d requests within 30s, want %d", len(r.requests()), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// testRoots trusts httptest's certificate, which every httptest TLS server shares.
func testRoots(t *testing.T) *x509.CertPool {
	t.Helper()
	srv := httptest.NewTLSServer(http.NotFoundHandler())
	defer srv.Close()
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	return pool
}

// hookOptions are program options for webhook tests: httptest's roots, fast retries, a short
// poll, and resolve as the DNS (nil: the system's).
func hookOptions(t *testing.T, resolve webhook.Resolver) app.Options {
	t.Helper()
	return app.Options{WebhookRootCAs: testRoots(t), WebhookResolve: resolve,
		WebhookDispatch: webhook.Options{Poll: 50 * time.Millisecond, IdlePoll: 200 * time.Millisecond, RetryBase: 100 * time.Millisecond, RetryMax: 400 * time.Millisecond}}
}

// verifySignature is the receiver's check from docs/webhooks.md.
func verifySignature(secret, header string, body []byte, now time.Time) error {
	var ts, sig string
	for _, part := range strings.Split(header, ",") {
		k, v, _ := strings.Cut(part, "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			sig = v
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return errors.New("no timestamp")
	}
	if now.Sub(time.Unix(sec, 0)) > 5*time.Minute {
		return errors.New("too old")
	}
	got, err := hex.DecodeString(sig)
	if err != nil {
		return errors.New("bad signature encoding")
	}
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(ts + "." + string(body)))
	if !hmac.Equal(got, m.Sum(nil)) {
		return errors.New("signature mismatch")
	}
	return nil
}

// webhookLogs are the dispatcher's log lines.
func webhookLogs(s *server) string {
	var out []string
	for _, l := range strings.Split(s.logs.String(), "\n") {
		if strings.Contains(l, "webhooks:") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// deliveries polls a webhook's deliveries until done accepts them.
func (s *server) deliveries(id string, done func([]map[string]any) bool) []map[string]any {
	s.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		items := s.must(http.StatusOK, "GET", hooksPath+"/"+id+"/deliveries", s.owner, nil).items()
		if done(items) {
			return items
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("deliveries of webhook %s after 30s: %v\n%s", id, items, webhookLogs(s))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestWebhookDeliveredSigned(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			dbURL, dir := storetest.Database(t, d)
			s := startWith(t, d, dbURL, dir, map[string]string{"COFFER_WEBHOOK_ALLOW_PRIVATE": "true"}, hookOptions(t, nil))
			s.withProject()
			rcv := newReceiver(t, "")
			// An event before the webhook exists is not replayed to it.
			s.must(http.StatusCreated, "PUT", envPath+"staging/secrets/EARLIER", s.owner, map[string]string{"value": "before"})

			created := s.must(http.StatusCreated, "POST", hooksPath, s.owner, map[string]any{"url": rcv.srv.URL + "/hook?x=1", "events": []string{"secret.write"}})
			id, _ := created.body["id"].(string)
			secret, _ := created.body["signing_secret"].(string)
			if id == "" || !strings.HasPrefix(secret, "whsec_") || created.header.Get("Cache-Control") != "no-store" {
				t.Fatalf("created webhook: %s %v", created.raw, created.header)
			}
			list := s.must(http.StatusOK, "GET", hooksPath, s.owner, nil)
			if len(list.items()) != 1 || list.items()[0]["id"] != id || strings.Contains(string(list.raw), secret) {
				t.Fatalf("list: %s", list.raw)
			}
			// The secret is sealed: not in the database in clear.
			var stored []byte
			if err := s.rawDB().QueryRow(s.q(`SELECT secret FROM webhooks WHERE id = ?`), id).Scan(&stored); err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(stored), strings.TrimPrefix(secret, "whsec_")) {
				t.Fatal("the signing secret is stored in clear")
			}

			const canary = "canary-value-9f8e7d"
			s.must(http.StatusCreated, "PUT", envPath+"staging/secrets/API_KEY", s.owner, map[string]string{"value": canary})
			s.must(http.StatusNoContent, "DELETE", envPath+"staging/secrets/API_KEY", s.owner, nil) // not subscribed
			// Another project's events are not this webhook's.
			s.must(http.StatusCreated, "POST", "/api/v1/tenants/default/projects", s.owner, map[string]string{"slug": "api", "name": "API"})
			s.must(http.StatusCreated, "PUT", "/api/v1/tenants/default/projects/api/environments/staging/secrets/OTHER", s.owner, map[string]string{"value": "x"})
			got := rcv.waitFor(t, 1)[0]

			if err := verifySignature(secret, got.header.Get("Coffer-Signature"), got.body, time.Now()); err != nil {
				t.Fatalf("signature %q: %v", got.header.Get("Coffer-Signature"), err)
			}
			if err := verifySignature("whsec_wrong", got.header.Get("Coffer-Signature"), got.body, time.Now()); err == nil {
				t.Fatal("the signature verifies with another secret")
			}
			if err := webhook.Verify(secret, got.header.Get("Coffer-Signature"), got.body, time.Now()); err != nil {
				t.Fatalf("webhook.Verify: %v", err)
			}
			var ev struct {
				ID          int64  `json:"id"`
				Type        string `json:"type"`
				OccurredAt  string `json:"occurred_at"`
				Tenant      struct{ ID, Slug string }
				Project     struct{ ID, Slug string }
				Environment struct{ ID, Slug string }
				Name        string `json:"name"`
				Version     int    `json:"version"`
				Actor       struct{ Type, ID string }
			}
			if err := json.Unmarshal(got.body, &ev); err != nil {
				t.Fatalf("body %s: %v", got.body, err)
			}
			h := got.header
			if ev.Type != "secret.write" || ev.Name != "API_KEY" || ev.Version != 1 || ev.Tenant.Slug != "default" || ev.Project.Slug != "web" ||
				ev.Environment.Slug != "staging" || ev.Actor.Type != "user" || ev.Actor.ID == "" || ev.OccurredAt == "" {
				t.Errorf("body: %s", got.body)
			}
			if h.Get("Coffer-Event-Id") != strconv.FormatInt(ev.ID, 10) || h.Get("Coffer-Event-Type") != "secret.write" ||
				h.Get("Coffer-Webhook-Id") != id || h.Get("Content-Type") != "application/json" {
				t.Errorf("headers: %v", h)
			}
			if strings.Contains(string(got.body), canary) {
				t.Error("the delivery carries the secret's value")
			}

			items := s.deliveries(id, func(items []map[string]any) bool { return len(items) == 1 && items[0]["status"] == "delivered" })
			dl := items[0]
			if dl["attempts"] != float64(1) || dl["last_status_code"] != float64(200) || dl["event_type"] != "secret.write" ||
				dl["event_id"] != float64(ev.ID) || dl["next_attempt_at"] != nil || dl["last_error"] != "" {
				t.Errorf("delivery: %v", dl)
			}
			var attempts int
			if err := s.rawDB().QueryRow(s.q(`SELECT COUNT(*) FROM webhook_attempts a JOIN webhook_deliveries d ON d.id = a.delivery_id WHERE d.webhook_id = ? AND a.status_code = 200`), id).Scan(&attempts); err != nil || attempts != 1 {
				t.Errorf("recorded attempts: %d, %v", attempts, err)
			}
			// Nothing else came: the earlier write and the delete were not for it.
			time.Sleep(200 * time.Millisecond)
			if n := len(rcv.requests()); n != 1 {
				t.Errorf("the receiver got %d requests, want 1", n)
			}

			// Create and delete are audited, in the same transaction as the change.
			s.must(http.StatusNoContent, "DELETE", hooksPath+"/"+id, s.owner, nil)
			for _, action := range []string{"webhook.create", "webhook.delete"} {
				var n int
				if err := s.rawDB().QueryRow(s.q(`SELECT COUNT(*) FROM audit_entries WHERE action = ? AND target_id = ?`), action, id).Scan(&n); err != nil || n != 1 {
					t.Errorf("audit entries %s: %d, %v", action, n, err)
				}
			}
			s.must(http.StatusNotFound, "GET", hooksPath+"/"+id+"/deliveries", s.owner, nil)
			s.must(http.StatusNotFound, "DELETE", hooksPath+"/"+id, s.owner, nil)
			var left int
			if err := s.rawDB().QueryRow(`SELECT COUNT(*) FROM webhook_deliveries`).Scan(&left); err != nil || left != 0 {
				t.Errorf("deliveries left after delete: %d, %v", left, err)
			}
			if strings.Contains(s.logs.String(), canary) || strings.Contains(s.logs.String(), secret) {
				t.Error("the logs hold the secret value or the signing secret")
			}
		})
	}
}

// A receiver that is down is retried; after the server is stopped and another started on the
// same database, the delivery is made once the receiver is back.
func TestWebhookRetriedAcrossRestart(t *testing.T) {
	for _, dialect := range storetest.Dialects {
		t.Run(dialect, func(t *testing.T) {
			dep := newDeployment(t, dialect)
			env := dep.env(map[string]string{"COFFER_WEBHOOK_ALLOW_PRIVATE": "true"})
			opts := hookOptions(t, nil)
			// A port with nothing listening: the receiver is down.
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			addr := ln.Addr().String()
			ln.Close()

			var id string
			if !t.Run("down", func(t *testing.T) {
				s := startWith(t, dialect, dep.dbURL, dep.dir, env, opts)
				s.owner = dep.owner
				s.withProject()
				created := s.must(http.StatusCreated, "POST", hooksPath, s.owner, map[string]any{"url": "https://" + addr + "/hook", "events": []string{"*"}})
				id, _ = created.body["id"].(string)
				s.must(http.StatusCreated, "PUT", envPath+"staging/secrets/API_KEY", s.owner, map[string]string{"value": "v1"})
				items := s.deliveries(id, func(items []map[string]any) bool {
					return len(items) == 1 && items[0]["attempts"].(float64) >= 2
				})
				if d := items[0]; d["status"] != "pending" || d["last_error"] == "" || d["next_attempt_at"] == nil || d["last_status_code"] != nil {
					t.Fatalf("a delivery to a receiver that is down: %v", d)
				}
			}) {
				t.FailNow()
			}

			s := startWith(t, dialect, dep.dbURL, dep.dir, env, opts)
			s.owner = dep.owner
			rcv := newReceiver(t, addr)
			got := rcv.waitFor(t, 1)
			var ev struct{ Type, Name string }
			if err := json.Unmarshal(got[0].body, &ev); err != nil || ev.Type != "secret.write" || ev.Name != "API_KEY" {
				t.Fatalf("delivered after the restart: %s", got[0].body)
			}
			items := s.deliveries(id, func(items []map[string]any) bool { return len(items) == 1 && items[0]["status"] == "delivered" })
			var attempts, failed int
			if err := s.rawDB().QueryRow(s.q(`SELECT COUNT(*), SUM(CASE WHEN status_code = 0 AND error <> '' THEN 1 ELSE 0 END) FROM webhook_attempts WHERE delivery_id = ?`),
				items[0]["id"]).Scan(&attempts, &failed); err != nil {
				t.Fatal(err)
			}
			if attempts != int(items[0]["attempts"].(float64)) || failed != attempts-1 || attempts < 3 {
				t.Errorf("recorded attempts %d (%d failed), delivery says %v", attempts, failed, items[0]["attempts"])
			}
		})
	}
}

// switchable answers a name with a public address until flipped, then with loopback: DNS
// rebinding.
type switchable struct{ rebound atomic.Bool }

func (r *switchable) resolve(_ context.Context, host string) ([]netip.Addr, error) {
	switch {
	case host == "internal.hooks.test":
		return []netip.Addr{netip.MustParseAddr("93.184.215.14"), netip.MustParseAddr("192.168.1.5")}, nil
	case host != "rebind.hooks.test":
		return nil, errors.New("no such host")
	case r.rebound.Load():
		return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
	}
	return []netip.Addr{netip.MustParseAddr("93.184.215.14")}, nil
}

func TestWebhookPrivateAddressesRefused(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			dns := &switchable{}
			dbURL, dir := storetest.Database(t, d)
			s := startWith(t, d, dbURL, dir, nil, hookOptions(t, dns.resolve))
			s.withProject()
			rcv := newReceiver(t, "")
			_, port, _ := net.SplitHostPort(rcv.srv.Listener.Addr().String())

			// At registration.
			for _, c := range []struct{ url, want string }{
				{rcv.srv.URL + "/hook", "127.0.0.1 is a loopback address"},
				{"https://localhost." + ":" + port, "could not be resolved"},
				{"https://10.1.2.3/hook", "10.1.2.3 is a private address"},
				{"https://[::ffff:169.254.169.254]/latest", "link-local"},
				{"https://100.64.0.1/", "carrier-grade NAT"},
				{"https://[fd00::1]/", "private"},
				{"https://internal.hooks.test/hook", "192.168.1.5 is a private address"},
			} {
				r := s.call("POST", hooksPath, s.owner, map[string]any{"url": c.url, "events": []string{"*"}})
				msg, _ := r.body["error"].(map[string]any)["message"].(string)
				if r.status != http.StatusUnprocessableEntity || r.errCode() != "validation_failed" || !strings.Contains(msg, c.want) {
					t.Errorf("registering %s: %d %s, want 422 naming %q", c.url, r.status, r.raw, c.want)
				}
			}
			if r := s.must(http.StatusOK, "GET", hooksPath, s.owner, nil); len(r.items()) != 0 {
				t.Fatalf("refused webhooks were stored: %s", r.raw)
			}

			// At connection: the name resolved to a public address when registered, and to
			// loopback when dialled.
			created := s.must(http.StatusCreated, "POST", hooksPath, s.owner, map[string]any{"url": "https://rebind.hooks.test:" + port + "/hook", "events": []string{"secret.write"}})
			id, _ := created.body["id"].(string)
			dns.rebound.Store(true)
			s.must(http.StatusCreated, "PUT", envPath+"staging/secrets/API_KEY", s.owner, map[string]string{"value": "v"})
			items := s.deliveries(id, func(items []map[string]any) bool { return len(items) == 1 && items[0]["attempts"].(float64) >= 1 })
			msg, _ := items[0]["last_error"].(string)
			if items[0]["status"] != "pending" || !strings.Contains(msg, "refused to connect") || !strings.Contains(msg, "127.0.0.1 is a loopback address") {
				t.Errorf("the attempt's recorded error: %v", items[0])
			}
			var recorded string
			if err := s.rawDB().QueryRow(s.q(`SELECT error FROM webhook_attempts WHERE delivery_id = ? AND attempt = 1`), items[0]["id"]).Scan(&recorded); err != nil ||
				!strings.Contains(recorded, "refused to connect") {
				t.Errorf("attempt 1 recorded %q, %v", recorded, err)
			}
			if n := len(rcv.requests()); n != 0 {
				t.Errorf("the loopback receiver got %d requests", n)
			}

			// Retries stop 24 hours after the event: the delivery is then failed for good.
			if _, err := s.rawDB().Exec(s.q(`UPDATE webhook_deliveries SET event_at = ? WHERE id = ?`), time.Now().Add(-25*time.Hour).UTC(), items[0]["id"]); err != nil {
				t.Fatal(err)
			}
			final := s.deliveries(id, func(items []map[string]any) bool { return len(items) == 1 && items[0]["status"] != "pending" })
			if final[0]["status"] != "failed" || final[0]["next_attempt_at"] != nil {
				t.Errorf("a delivery past 24 hours: %v", final[0])
			}
		})
	}
}

func TestWebhookAccess(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *server) {
		s.withProject()
		body := map[string]any{"url": "https://hooks.example.com/x", "events": []string{"*"}}

		viewer := s.newUser("viewer@example.com")
		s.join(s.owner, "default", viewer, "viewer@example.com", "member")
		s.must(http.StatusOK, "POST", "/api/v1/tenants/default/projects/web/members", s.owner, map[string]any{"email": "viewer@example.com", "role": "viewer"})
		svc := s.serviceToken(s.owner, "ci", "read-write", "staging")
		svcTok, _ := svc.body["token"].(string)

		bob := s.newUser("bob@example.com")
		s.must(http.StatusCreated, "POST", "/api/v1/tenants", bob, map[string]string{"slug": "other", "name": "Other"})
		s.must(http.StatusCreated, "POST", "/api/v1/tenants/other/projects", bob, map[string]string{"slug": "web", "name": "Web"})
		foreign := "/api/v1/tenants/other/projects/web/webhooks"

		for _, c := range []struct {
			name, method, path, token string
			body                      any
			status                    int
			code                      string
		}{
			{"viewer creates", "POST", hooksPath, viewer, body, 403, "forbidden"},
			{"viewer lists", "GET", hooksPath, viewer, nil, 403, "forbidden"},
			{"service token creates", "POST", hooksPath, svcTok, body, 403, "forbidden"},
			{"service token lists", "GET", hooksPath, svcTok, nil, 403, "forbidden"},
			{"another tenant's project", "POST", foreign, s.owner, body, 404, "not_found"},
			{"another tenant's list", "GET", foreign, s.owner, nil, 404, "not_found"},
			{"no credentials", "GET", hooksPath, "", nil, 401, "unauthorized"},
			{"no events", "POST", hooksPath, s.owner, map[string]any{"url": "https://hooks.example.com/x", "events": []string{}}, 422, "validation_failed"},
			{"unknown event type", "POST", hooksPath, s.owner, map[string]any{"url": "https://hooks.example.com/x", "events": []string{"secret.reveal"}}, 422, "validation_failed"},
			{"plain http", "POST", hooksPath, s.owner, map[string]any{"url": "http://hooks.example.com/x", "events": []string{"*"}}, 422, "validation_failed"},
			{"unknown field", "POST", hooksPath, s.owner, map[string]any{"url": "https://hooks.example.com/x", "events": []string{"*"}, "secret": "x"}, 400, "bad_request"},
			{"unknown webhook", "DELETE", hooksPath + "/0190a0b0-0000-7000-8000-000000000000", s.owner, nil, 404, "not_found"},
			{"malformed id", "GET", hooksPath + "/a%00b/deliveries", s.owner, nil, 404, "not_found"},
			{"bad cursor", "GET", hooksPath + "/x/deliveries?cursor=!!", s.owner, nil, 422, "validation_failed"},
		} {
			r := s.call(c.method, c.path, c.token, c.body)
			if r.status != c.status || r.errCode() != c.code {
				t.Errorf("%s: %d %s, want %d %s", c.name, r.status, r.raw, c.status, c.code)
			}
		}
		var n int
		if err := s.rawDB().QueryRow(`SELECT COUNT(*) FROM webhooks`).Scan(&n); err != nil || n != 0 {
			t.Errorf("webhooks stored by refused requests: %d, %v", n, err)
		}
	})
}

// Two replicas on one Postgres database: every event is delivered, and by one of them only.
func TestWebhookReplicasDeliverOnce(t *testing.T) {
	dep := newDeployment(t, "postgres")
	// Few connections each: two replicas must fit beside other tests in Postgres's limit.
	env := dep.env(map[string]string{"COFFER_WEBHOOK_ALLOW_PRIVATE": "true", "COFFER_DB_MAX_CONNS": "8"})
	opts := hookOptions(t, nil)
	a := startWith(t, "postgres", dep.dbURL, dep.dir, env, opts)
	a.owner = dep.owner
	b := startWith(t, "postgres", dep.dbURL, dep.dir, env, opts)
	b.owner = dep.owner
	a.withProject()
	rcv := newReceiver(t, "")
	created := a.must(http.StatusCreated, "POST", hooksPath, a.owner, map[string]any{"url": rcv.srv.URL, "events": []string{"secret.write"}})
	id, _ := created.body["id"].(string)

	const n = 40
	var wg sync.WaitGroup
	for w := range 4 { // four writers, alternating replicas
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 4 {
				s := []*server{a, b}[i%2]
				if r := s.call("PUT", envPath+"staging/secrets/KEY_"+strconv.Itoa(i), s.owner, map[string]string{"value": "v"}); r.status != http.StatusCreated {
					t.Errorf("write %d: %d %s", i, r.status, r.raw)
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	rcv.waitFor(t, n)
	a.deliveries(id, func(items []map[string]any) bool {
		if len(items) != n {
			return false
		}
		for _, d := range items {
			if d["status"] != "delivered" {
				return false
			}
		}
		return true
	})
	time.Sleep(300 * time.Millisecond) // room for a duplicate to show up
	seen := map[string]int{}
	for _, r := range rcv.requests() {
		seen[r.header.Get("Coffer-Event-Id")]++
	}
	if len(seen) != n || len(rcv.requests()) != n {
		t.Fatalf("%d requests for %d distinct events, want %d of each: %v", len(rcv.requests()), len(seen), n, seen)
	}
}
