package app_test

import (
	"net"
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/app"
	"github.com/cofferhq/coffer/internal/store/storetest"
)

// longScopeTTL keeps scope cache entries for the whole test: only invalidations end them.
var longScopeTTL = app.Options{ScopeCacheTTL: time.Hour}

const stagingValues = envPath + "staging/secrets?include=values"

func TestScopeCacheRevocationOnTheSameReplica(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			dbURL, dir := storetest.Database(t, d)
			s := startWith(t, d, dbURL, dir, nil, longScopeTTL)
			s.withProject()
			s.must(http.StatusCreated, "PUT", envPath+"staging/secrets/KEY", s.owner, map[string]string{"value": "one"})

			// A write shows at once to a reader whose scope is cached: the write moved the
			// environment's revision, which dropped the tenant's entries.
			s.untilCached(s.owner)
			s.must(http.StatusOK, "PUT", envPath+"staging/secrets/KEY", s.owner, map[string]string{"value": "two"})
			if got := s.must(http.StatusOK, "GET", stagingValues, s.owner, nil).items(); len(got) != 1 || got[0]["value"] != "two" {
				t.Fatalf("after the write: %v", got)
			}

			// A personal token revoked by its user.
			user := s.newUser("dev@example.com")
			s.join(s.owner, "default", user, "dev@example.com", "admin")
			s.untilCached(user)
			tokens := s.must(http.StatusOK, "GET", "/api/v1/tokens", user, nil).items()
			s.must(http.StatusNoContent, "DELETE", "/api/v1/tokens/"+tokens[0]["id"].(string), user, nil)
			if r := s.call("GET", stagingValues, user, nil); r.status != http.StatusUnauthorized {
				t.Fatalf("revoked personal token: %d %s", r.status, r.raw)
			}

			// A service token revoked by the project's owner.
			created := s.serviceToken(s.owner, "deploy", "read", "staging")
			tok, _ := created.body["token"].(string)
			id, _ := created.body["id"].(string)
			s.untilCached(tok)
			s.must(http.StatusNoContent, "DELETE", svcPath+"/"+id, s.owner, nil)
			if r := s.call("GET", stagingValues, tok, nil); r.status != http.StatusUnauthorized {
				t.Fatalf("revoked service token: %d %s", r.status, r.raw)
			}

			// A member removed from the tenant.
			member := s.newUser("ops@example.com")
			s.join(s.owner, "default", member, "ops@example.com", "admin")
			s.untilCached(member)
			memberID, _ := isoUserID(s, member)
			s.must(http.StatusNoContent, "DELETE", "/api/v1/tenants/default/members/"+memberID, s.owner, nil)
			if r := s.call("GET", stagingValues, member, nil); r.status != http.StatusNotFound {
				t.Fatalf("removed member: %d %s", r.status, r.raw)
			}
		})
	}
}

// untilStatus repeats a GET until it answers want, and fails after limit.
func (s *server) untilStatus(want int, path, tok string, limit time.Duration) {
	s.t.Helper()
	deadline := time.Now().Add(limit)
	for {
		r := s.call("GET", path, tok, nil)
		if r.status == want {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("GET %s: still %d after %s, want %d", path, r.status, limit, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestScopeCacheRevocationOnAnotherReplica(t *testing.T) {
	dbURL, dir := storetest.Database(t, "postgres")
	a := startWith(t, "postgres", dbURL, dir, nil, longScopeTTL)
	b := startWith(t, "postgres", dbURL, dir, map[string]string{"COFFER_BOOTSTRAP_TOKEN": ""}, longScopeTTL)
	b.owner = a.owner
	a.withProject()
	a.must(http.StatusCreated, "PUT", envPath+"staging/secrets/KEY", a.owner, map[string]string{"value": "one"})

	// A write through A shows on B within a second.
	b.untilCached(a.owner)
	a.must(http.StatusOK, "PUT", envPath+"staging/secrets/KEY", a.owner, map[string]string{"value": "two"})
	deadline := time.Now().Add(time.Second)
	for b.must(http.StatusOK, "GET", stagingValues, a.owner, nil).items()[0]["value"] != "two" {
		if time.Now().After(deadline) {
			t.Fatal("replica B still serves the old value a second after the write through A")
		}
		time.Sleep(10 * time.Millisecond)
	}

	// A personal token revoked by a tenant admin through A (a change that reaches every
	// tenant of its user), a service token revoked through A: refused by B within a second.
	user := a.newUser("dev@example.com")
	a.join(a.owner, "default", user, "dev@example.com", "admin")
	b.untilCached(user)
	tokens := a.must(http.StatusOK, "GET", "/api/v1/tenants/default/tokens", a.owner, nil).items()
	var userToken string
	userID, _ := isoUserID(a, user)
	for _, tk := range tokens {
		if owner, _ := tk["user"].(map[string]any); owner != nil && owner["id"] == userID {
			userToken, _ = tk["id"].(string)
		}
	}
	if userToken == "" {
		t.Fatalf("the user's token is not among the tenant's: %v", tokens)
	}
	a.must(http.StatusNoContent, "DELETE", "/api/v1/tenants/default/tokens/"+userToken, a.owner, nil)
	b.untilStatus(http.StatusUnauthorized, stagingValues, user, time.Second)

	created := a.serviceToken(a.owner, "deploy", "read", "staging")
	tok, _ := created.body["token"].(string)
	id, _ := created.body["id"].(string)
	b.untilCached(tok)
	a.must(http.StatusNoContent, "DELETE", svcPath+"/"+id, a.owner, nil)
	b.untilStatus(http.StatusUnauthorized, stagingValues, tok, time.Second)
}

// stallProxy forwards TCP connections to target and, while stalled, holds every byte in
// both directions: what a replica sees when the network to its database goes silent.
type stallProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	cond   *sync.Cond
	stall  bool
}

func newStallProxy(t *testing.T, target string) *stallProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &stallProxy{ln: ln, target: target}
	p.cond = sync.NewCond(&p.mu)
	t.Cleanup(func() { _ = ln.Close(); p.set(false) })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.serve(c)
		}
	}()
	return p
}

func (p *stallProxy) set(stall bool) {
	p.mu.Lock()
	p.stall = stall
	p.mu.Unlock()
	p.cond.Broadcast()
}

func (p *stallProxy) wait() {
	p.mu.Lock()
	for p.stall {
		p.cond.Wait()
	}
	p.mu.Unlock()
}

func (p *stallProxy) serve(c net.Conn) {
	defer c.Close()
	p.wait()
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer up.Close()
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				p.wait()
				if _, werr := dst.Write(buf[:n]); werr != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		done <- struct{}{}
	}
	go pipe(up, c)
	go pipe(c, up)
	<-done
}

func TestScopeCacheBypassedWhileTheListenerIsSilent(t *testing.T) {
	dbURL, dir := storetest.Database(t, "postgres")
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := newStallProxy(t, u.Host)
	viaProxy := *u
	viaProxy.Host = proxy.ln.Addr().String()
	a := startWith(t, "postgres", dbURL, dir, nil, longScopeTTL)
	opts := longScopeTTL
	opts.EventsListenURL = viaProxy.String()
	b := startWith(t, "postgres", dbURL, dir, map[string]string{"COFFER_BOOTSTRAP_TOKEN": ""}, opts)
	a.withProject()
	a.must(http.StatusCreated, "PUT", envPath+"staging/secrets/KEY", a.owner, map[string]string{"value": "one"})
	user := a.newUser("dev@example.com")
	a.join(a.owner, "default", user, "dev@example.com", "admin")
	b.untilCached(user)

	// B's listener goes silent: within about a second B stops answering from its cache.
	proxy.set(true)
	deadline := time.Now().Add(5 * time.Second)
	for {
		before := b.app.Scopes.Stats().Bypassed
		b.must(http.StatusOK, "GET", stagingValues, user, nil)
		if b.app.Scopes.Stats().Bypassed > before {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("B still uses its scope cache 5 s after its listener went silent: %+v", b.app.Scopes.Stats())
		}
		time.Sleep(20 * time.Millisecond)
	}
	// A revocation through A, which B cannot hear of: B refuses the token at once all the
	// same, because it asks the database.
	tokens := a.must(http.StatusOK, "GET", "/api/v1/tokens", user, nil).items()
	a.must(http.StatusNoContent, "DELETE", "/api/v1/tokens/"+tokens[0]["id"].(string), user, nil)
	if r := b.call("GET", stagingValues, user, nil); r.status != http.StatusUnauthorized {
		t.Fatalf("revoked token on the replica whose listener is silent: %d %s", r.status, r.raw)
	}

	// Heard again, B uses its cache again, and the revoked token stays refused.
	proxy.set(false)
	b.untilCached(a.owner)
	if r := b.call("GET", stagingValues, user, nil); r.status != http.StatusUnauthorized {
		t.Fatalf("revoked token once the listener is back: %d %s", r.status, r.raw)
	}
}

// untilCached reads staging's values with tok until a read is answered from the scope cache,
// and fails after 10 s: what follows then tests an entry that is really there. (The listener's
// first heartbeat may not be back yet, and on Postgres a replica hears its own changes again
// from Postgres a moment after it dropped its entries for them.)
func (s *server) untilCached(tok string) {
	s.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		before := s.app.Scopes.Stats().Hits
		s.must(http.StatusOK, "GET", stagingValues, tok, nil)
		if s.app.Scopes.Stats().Hits > before {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("no read was answered from the scope cache in 10 s: %+v", s.app.Scopes.Stats())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
