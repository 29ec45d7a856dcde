package app_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/cofferhq/coffer/internal/app"
	"github.com/cofferhq/coffer/internal/auth"
	"github.com/cofferhq/coffer/internal/store/storetest"
)

// wsURL is the event stream's WebSocket URL on s.
func (s *server) wsURL() string { return "ws" + strings.TrimPrefix(s.base, "http") + "/api/v1/events" }

// dialEvents opens the event stream with a bearer token (or a session cookie) and an Origin
// ("" for none).
func (s *server) dialEvents(token, cookie, origin string) (*websocket.Conn, *http.Response, error) {
	h := http.Header{}
	if token != "" {
		h.Set("Authorization", "Bearer "+token)
	}
	if cookie != "" {
		h.Set("Cookie", "coffer_session="+cookie)
	}
	if origin != "" {
		h.Set("Origin", origin)
	}
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	return d.Dial(s.wsURL(), h)
}

// subscribe opens a stream and subscribes; it fails the test unless the server confirms.
func (s *server) subscribe(token string, req map[string]any) *websocket.Conn {
	s.t.Helper()
	conn, resp, err := s.dialEvents(token, "", "")
	if err != nil {
		s.t.Fatalf("dial events: %v (%v)", err, resp)
	}
	s.t.Cleanup(func() { conn.Close() })
	req["type"] = "subscribe"
	if err := conn.WriteJSON(req); err != nil {
		s.t.Fatal(err)
	}
	if m := readMessage(s.t, conn, 10*time.Second); m["type"] != "subscribed" {
		s.t.Fatalf("subscribe %v: got %v", req, m)
	}
	return conn
}

// readMessage reads one JSON message; it fails the test on a timeout or a close.
func readMessage(t *testing.T, conn *websocket.Conn, within time.Duration) map[string]any {
	t.Helper()
	m, err := tryRead(conn, within)
	if err != nil {
		t.Fatalf("read event: %v", err)
	}
	return m
}

func tryRead(conn *websocket.Conn, within time.Duration) (map[string]any, error) {
	_ = conn.SetReadDeadline(time.Now().Add(within))
	_, data, err := conn.ReadMessage()
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, err
	}
	return m, nil
}

// closeCode waits for the server to close conn and returns the close code.
func closeCode(t *testing.T, conn *websocket.Conn, within time.Duration) int {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		_ = conn.SetReadDeadline(deadline)
		_, _, err := conn.ReadMessage()
		if err == nil {
			continue
		}
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			return ce.Code
		}
		t.Fatalf("no close frame within %v: %v", within, err)
	}
}

// nextEvent reads messages until an event arrives.
func nextEvent(t *testing.T, conn *websocket.Conn, within time.Duration) map[string]any {
	t.Helper()
	for {
		m := readMessage(t, conn, within)
		if m["type"] == "event" {
			return m
		}
	}
}

// nextSecretEvent reads events until one about a secret arrives.
func nextSecretEvent(t *testing.T, conn *websocket.Conn) map[string]any {
	t.Helper()
	for {
		if ev := nextEvent(t, conn, 10*time.Second); strings.HasPrefix(ev["event"].(string), "secret.") {
			return ev
		}
	}
}

// closedWithout waits for the server to close conn and returns the close code; an event about
// a secret that arrives first fails the test (the subscriber may no longer see any).
func closedWithout(t *testing.T, conn *websocket.Conn, within time.Duration) int {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(within))
	var err error
	for {
		var data []byte
		if _, data, err = conn.ReadMessage(); err != nil {
			break
		}
		if strings.Contains(string(data), `"event":"secret.`) {
			t.Fatalf("unexpected event before the close: %s", data)
		}
	}
	var ce *websocket.CloseError
	if !errors.As(err, &ce) {
		t.Fatalf("no close frame within %v: %v", within, err)
	}
	return ce.Code
}

func TestEventStreamDeliversWhatTheSubscriberMaySee(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *server) {
		s.withProject()
		s.must(http.StatusCreated, "POST", "/api/v1/tenants/default/projects", s.owner, map[string]string{"slug": "api", "name": "API"})
		staging := s.subscribe(s.owner, map[string]any{"tenant": "default", "project": "web", "environments": []string{"staging"}})
		whole := s.subscribe(s.owner, map[string]any{"tenant": "default"})

		// A member who sees project web only.
		viewer := s.newUser("viewer@example.com")
		s.join(s.owner, "default", viewer, "viewer@example.com", "member")
		s.must(http.StatusOK, "POST", "/api/v1/tenants/default/projects/web/members", s.owner, map[string]any{"email": "viewer@example.com", "role": "viewer"})
		viewerConn := s.subscribe(viewer, map[string]any{"tenant": "default"})
		// Someone else's tenant: refused as not found, like one that does not exist.
		for _, tenant := range []string{"elsewhere", "nope"} {
			if tenant == "elsewhere" {
				other := s.newUser("other@example.com")
				s.must(http.StatusCreated, "POST", "/api/v1/tenants", other, map[string]string{"slug": "elsewhere", "name": "Elsewhere"})
			}
			conn, _, err := s.dialEvents(viewer, "", "")
			if err != nil {
				t.Fatal(err)
			}
			_ = conn.WriteJSON(map[string]any{"type": "subscribe", "tenant": tenant})
			if m := readMessage(t, conn, 10*time.Second); m["type"] != "error" || m["code"] != "not_found" {
				t.Fatalf("subscribe to %s: %v", tenant, m)
			}
			conn.Close()
		}

		const value = "canary-value-that-must-not-travel"
		s.must(http.StatusCreated, "PUT", envPath+"staging/secrets/DB_URL", s.owner, map[string]string{"value": value})
		s.must(http.StatusCreated, "PUT", "/api/v1/tenants/default/projects/api/environments/staging/secrets/TOKEN", s.owner, map[string]string{"value": value})
		ev := nextEvent(t, staging, 10*time.Second)
		if ev["event"] != "secret.write" || ev["tenant"] != "default" || ev["project"] != "web" || ev["environment"] != "staging" ||
			ev["name"] != "DB_URL" || ev["version"] != float64(1) || ev["id"] == "" {
			t.Fatalf("event: %v", ev)
		}
		raw, _ := json.Marshal(ev)
		if strings.Contains(string(raw), value) {
			t.Fatalf("an event carries the value: %s", raw)
		}
		// The tenant-wide subscriber sees both writes, in order; the viewer only web's.
		first, second := nextSecretEvent(t, whole), nextSecretEvent(t, whole)
		if first["name"] != "DB_URL" || second["name"] != "TOKEN" || second["project"] != "api" {
			t.Fatalf("tenant-wide events: %v then %v", first, second)
		}
		a, _ := strconv.Atoi(first["id"].(string))
		b, _ := strconv.Atoi(second["id"].(string))
		if b <= a {
			t.Fatalf("ids do not increase: %d then %d", a, b)
		}
		// The viewer and the staging subscription saw nothing of api: their next event is
		// the next write to web's staging.
		s.must(http.StatusOK, "PUT", envPath+"staging/secrets/DB_URL", s.owner, map[string]string{"value": "second"})
		for _, conn := range []*websocket.Conn{viewerConn, viewerConn, staging} {
			if got := nextSecretEvent(t, conn); got["name"] != "DB_URL" || got["project"] != "web" {
				t.Fatalf("next event: %v", got)
			}
		}

		// Removed from the project, the viewer gets no more of its events; removed from the
		// tenant, its stream closes with 4403.
		viewerID, _ := isoUserID(s, viewer)
		s.must(http.StatusNoContent, "DELETE", "/api/v1/tenants/default/projects/web/members/"+viewerID, s.owner, nil)
		s.must(http.StatusOK, "PUT", envPath+"staging/secrets/DB_URL", s.owner, map[string]string{"value": "third"})
		if got := nextEvent(t, staging, 10*time.Second); got["version"] != float64(3) {
			t.Fatalf("staging: %v", got)
		}
		s.must(http.StatusNoContent, "DELETE", "/api/v1/tenants/default/members/"+viewerID, s.owner, nil)
		if code := closedWithout(t, viewerConn, time.Second); code != 4403 {
			t.Fatalf("removed member: close %d, want 4403", code)
		}
	})
}

func TestEventStreamServiceTokenAndRevocation(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *server) {
		defer func() {
			if t.Failed() {
				t.Log(s.logs.String())
			}
		}()
		s.withProject()
		created := s.serviceToken(s.owner, "deploy", "read", "staging")
		tok, _ := created.body["token"].(string)
		id, _ := created.body["id"].(string)
		if tok == "" || id == "" {
			t.Fatalf("service token: %d %s", created.status, created.raw)
		}
		// A service token subscribes to its project and sees only its environments.
		conn := s.subscribe(tok, map[string]any{"tenant": "default", "project": "web"})
		s.must(http.StatusCreated, "PUT", envPath+"production/secrets/KEY", s.owner, map[string]string{"value": "p"})
		s.must(http.StatusCreated, "PUT", envPath+"staging/secrets/KEY", s.owner, map[string]string{"value": "s"})
		if ev := nextEvent(t, conn, 10*time.Second); ev["environment"] != "staging" {
			t.Fatalf("service token got %v", ev)
		}
		// Revoking it closes the stream with 4401 within a second.
		s.must(http.StatusNoContent, "DELETE", svcPath+"/"+id, s.owner, nil)
		if code := closeCode(t, conn, time.Second); code != 4401 {
			t.Fatalf("revoked service token: close %d, want 4401", code)
		}

		// A personal token, revoked by its owner; a session, signed out.
		user := s.newUser("dev@example.com")
		s.join(s.owner, "default", user, "dev@example.com", "admin")
		userConn := s.subscribe(user, map[string]any{"tenant": "default"})
		tokens := s.must(http.StatusOK, "GET", "/api/v1/tokens", user, nil).items()
		s.must(http.StatusNoContent, "DELETE", "/api/v1/tokens/"+tokens[0]["id"].(string), user, nil)
		if code := closeCode(t, userConn, time.Second); code != 4401 {
			t.Fatalf("revoked personal token: close %d, want 4401", code)
		}
		cookie := s.signIn(s.owner)
		h := http.Header{"Cookie": {"coffer_session=" + cookie}, "Origin": {s.base}}
		browser, _, err := (&websocket.Dialer{}).Dial(s.wsURL(), h)
		if err != nil {
			t.Fatal(err)
		}
		defer browser.Close()
		_ = browser.WriteJSON(map[string]any{"type": "subscribe", "tenant": "default"})
		if m := readMessage(t, browser, 10*time.Second); m["type"] != "subscribed" {
			t.Fatalf("session subscribe: %v", m)
		}
		r := s.browse("POST", "/auth/logout", cookie, s.base, auth.CSRFToken(cookie), "", false)
		if r.status >= 400 {
			t.Fatalf("logout: %d %s", r.status, r.raw)
		}
		if code := closeCode(t, browser, time.Second); code != 4401 {
			t.Fatalf("signed-out session: close %d, want 4401", code)
		}
	})
}

func TestEventStreamRefusesBeforeUpgrade(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *server) {
		cookie := s.signIn(s.owner)
		for _, c := range []struct {
			name          string
			token, cookie string
			origin        string
			want          int
		}{
			{"no credential", "", "", "", http.StatusUnauthorized},
			{"bad token", "cfr_pat_" + strings.Repeat("A", 43), "", "", http.StatusUnauthorized},
			{"foreign origin", s.owner, "", "https://evil.example", http.StatusForbidden},
			{"cookie without origin", "", cookie, "", http.StatusForbidden},
			{"cookie from a foreign origin", "", cookie, "https://evil.example", http.StatusForbidden},
		} {
			conn, resp, err := s.dialEvents(c.token, c.cookie, c.origin)
			if err == nil {
				conn.Close()
				t.Fatalf("%s: upgraded", c.name)
			}
			if resp == nil || resp.StatusCode != c.want {
				t.Fatalf("%s: %v, want %d", c.name, resp, c.want)
			}
		}
		// Allowed: a bearer token without Origin (a program), a cookie from the base URL.
		for _, c := range []struct{ token, cookie, origin string }{{s.owner, "", ""}, {"", cookie, s.base}} {
			conn, resp, err := s.dialEvents(c.token, c.cookie, c.origin)
			if err != nil {
				t.Fatalf("dial %+v: %v %v", c, err, resp)
			}
			conn.Close()
		}
		// A plain GET is told how to open the stream.
		if r := s.call("GET", "/api/v1/events", s.owner, nil); r.status != http.StatusUnprocessableEntity {
			t.Fatalf("plain GET: %d %s", r.status, r.raw)
		}

		// A 1 MiB frame closes that connection with 1009, malformed JSON with 1008; the
		// server keeps serving the others.
		bystander := s.subscribe(s.owner, map[string]any{"tenant": "default"})
		big, _, err := s.dialEvents(s.owner, "", "")
		if err != nil {
			t.Fatal(err)
		}
		defer big.Close()
		_ = big.WriteMessage(websocket.TextMessage, []byte(`{"type":"subscribe","tenant":"`+strings.Repeat("a", 1<<20)+`"}`))
		if code := closeCode(t, big, 10*time.Second); code != websocket.CloseMessageTooBig {
			t.Fatalf("1 MiB frame: close %d, want 1009", code)
		}
		bad, _, err := s.dialEvents(s.owner, "", "")
		if err != nil {
			t.Fatal(err)
		}
		defer bad.Close()
		_ = bad.WriteMessage(websocket.TextMessage, []byte(`{"type":`))
		if code := closeCode(t, bad, 10*time.Second); code != websocket.ClosePolicyViolation {
			t.Fatalf("malformed message: close %d, want 1008", code)
		}
		s.withProject()
		if ev := nextEvent(t, bystander, 10*time.Second); ev["event"] != "project.create" {
			t.Fatalf("bystander: %v", ev)
		}
	})
}

// writeSecrets writes n secrets to web/staging, one event each.
func (s *server) writeSecrets(prefix string, n int) {
	s.t.Helper()
	for i := range n {
		s.must(http.StatusCreated, "PUT", envPath+"staging/secrets/"+prefix+strconv.Itoa(i), s.owner, map[string]string{"value": "v"})
	}
}

func TestEventStreamResumesWithoutGapOrDuplicate(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *server) {
		s.withProject()
		sub := map[string]any{"tenant": "default", "project": "web"}
		conn := s.subscribe(s.owner, sub)
		s.writeSecrets("FIRST_", 1)
		last := nextEvent(t, conn, 10*time.Second)["id"].(string)
		conn.Close()

		s.writeSecrets("MISSED_", 50)
		// Reads of values are audited too (their entries take sequence numbers) but are
		// not events: the resume must skip them.
		s.must(http.StatusOK, "GET", envPath+"staging/secrets?include=values", s.owner, nil)
		resumed := map[string]any{"tenant": "default", "project": "web", "last_event_id": last}
		conn = s.subscribe(s.owner, resumed)
		for i := range 50 {
			ev := nextEvent(t, conn, 10*time.Second)
			if ev["name"] != "MISSED_"+strconv.Itoa(i) {
				t.Fatalf("resumed event %d: %v", i, ev)
			}
		}
		s.writeSecrets("LIVE_", 1)
		if ev := nextEvent(t, conn, 10*time.Second); ev["name"] != "LIVE_0" {
			t.Fatalf("after the replay: %v", ev)
		}

		// The same over Server-Sent Events, with Last-Event-ID.
		req, _ := http.NewRequest("GET", s.base+"/api/v1/events?transport=sse&tenant=default&project=web", nil)
		req.Header.Set("Authorization", "Bearer "+s.owner)
		req.Header.Set("Last-Event-ID", last)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		resp, err := http.DefaultClient.Do(req.WithContext(ctx))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
			t.Fatalf("sse: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		lines := bufio.NewScanner(resp.Body)
		var names []string
		lastID := ""
		for len(names) < 51 && lines.Scan() {
			line := lines.Text()
			if id, ok := strings.CutPrefix(line, "id: "); ok {
				lastID = id
			}
			if data, ok := strings.CutPrefix(line, "data: "); ok {
				var m map[string]any
				if err := json.Unmarshal([]byte(data), &m); err != nil {
					t.Fatalf("sse data %q: %v", data, err)
				}
				if m["type"] == "event" {
					if m["id"] != lastID {
						t.Fatalf("sse id line %q, event id %v", lastID, m["id"])
					}
					names = append(names, m["name"].(string))
				}
			}
		}
		for i := range 50 {
			if names[i] != "MISSED_"+strconv.Itoa(i) {
				t.Fatalf("sse event %d: %s", i, names[i])
			}
		}
		if names[50] != "LIVE_0" {
			t.Fatalf("sse after the replay: %s", names[50])
		}

		// A resume from an id the table does not hold is a reset.
		conn2, _, err := s.dialEvents(s.owner, "", "")
		if err != nil {
			t.Fatal(err)
		}
		defer conn2.Close()
		_ = conn2.WriteJSON(map[string]any{"type": "subscribe", "tenant": "default", "last_event_id": "999999999"})
		if m := readMessage(t, conn2, 10*time.Second); m["type"] != "reset" {
			t.Fatalf("resume from an unknown id: %v", m)
		}
	})
}

func TestEventStreamAcrossReplicas(t *testing.T) {
	// storetest.Database skips (or, under CI=true, fails) when Postgres is absent.
	dbURL, dir := storetest.Database(t, "postgres")
	a := startOn(t, "postgres", dbURL, dir, nil)
	b := startOn(t, "postgres", dbURL, dir, map[string]string{"COFFER_BOOTSTRAP_TOKEN": ""})
	b.owner = a.owner
	a.withProject()
	conn := b.subscribe(a.owner, map[string]any{"tenant": "default", "project": "web"})
	a.writeSecrets("VIA_A_", 1)
	if ev := nextEvent(t, conn, time.Second); ev["name"] != "VIA_A_0" {
		t.Fatalf("replica B got %v", ev)
	}

	// B's LISTEN connection is cut: it reconnects and catches up, losing nothing.
	db := a.rawDB()
	if _, err := db.Exec(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'coffer-events-listener' AND datname = current_database()`); err != nil {
		t.Fatal(err)
	}
	a.writeSecrets("DURING_", 3)
	for i := range 3 {
		if ev := nextEvent(t, conn, 10*time.Second); ev["name"] != fmt.Sprintf("DURING_%d", i) {
			t.Fatalf("after the listener's reconnect: %v", ev)
		}
	}
}

func TestEventStreamDropsASlowSubscriberOnly(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			dbURL, dir := storetest.Database(t, d)
			s := startWith(t, d, dbURL, dir, nil, app.Options{EventQueue: 2})
			s.withProject()
			sub := map[string]any{"tenant": "default", "project": "web", "environments": []string{"staging"}}
			// The slow subscriber reads nothing, through a small receive buffer, so that the
			// server's writes to it stall soon.
			small := websocket.Dialer{NetDialContext: (&net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
				var serr error
				err := c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
				return errors.Join(err, serr)
			}}).DialContext}
			slow, _, err := small.Dial(s.wsURL(), http.Header{"Authorization": {"Bearer " + s.owner}})
			if err != nil {
				t.Fatal(err)
			}
			defer slow.Close()
			sub["type"] = "subscribe"
			_ = slow.WriteJSON(sub)
			if m := readMessage(t, slow, 10*time.Second); m["type"] != "subscribed" {
				t.Fatalf("slow subscribe: %v", m)
			}

			const readers, batches, perBatch = 100, 10, 100
			var wg sync.WaitGroup
			got := make([]int, readers)
			for i := range readers {
				conn := s.subscribe(s.owner, sub)
				wg.Go(func() {
					for got[i] < batches*perBatch {
						_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
						_, data, err := conn.ReadMessage()
						if err != nil {
							return
						}
						if bytes.HasPrefix(data, []byte(`{"type":"event"`)) {
							got[i]++
						}
					}
				})
			}
			for b := range batches {
				list := make([]map[string]any, perBatch)
				for i := range list {
					list[i] = map[string]any{"name": fmt.Sprintf("K%d_%d", b, i), "value": strings.Repeat("v", 64)}
				}
				s.must(http.StatusOK, "PATCH", envPath+"staging/secrets", s.owner, map[string]any{"secrets": list})
			}
			wg.Wait()
			for i, n := range got {
				if n != batches*perBatch {
					t.Fatalf("reader %d got %d of %d events", i, n, batches*perBatch)
				}
			}
			// The slow one, and only it, was dropped: closed with 1013 when the close frame
			// could still be written, cut off otherwise (its socket was full).
			if n := s.app.Events.Stats().Dropped; n != 1 {
				t.Fatalf("%d subscribers dropped, want 1", n)
			}
			deadline := time.Now().Add(30 * time.Second)
			for {
				_ = slow.SetReadDeadline(deadline)
				_, _, err := slow.ReadMessage()
				var ce *websocket.CloseError
				if errors.As(err, &ce) {
					if ce.Code != websocket.CloseTryAgainLater && ce.Code != websocket.CloseAbnormalClosure {
						t.Fatalf("slow subscriber closed with %d, want 1013 (or 1006)", ce.Code)
					}
					break
				}
				if err != nil {
					t.Fatalf("slow subscriber: %v", err)
				}
			}
			s.must(http.StatusOK, "GET", "/api/v1/me", s.owner, nil) // and the server still serves
		})
	}
}

func TestEventStreamClosesWith1001OnShutdown(t *testing.T) {
	dbURL, dir := storetest.Database(t, "sqlite")
	s := startWith(t, "sqlite", dbURL, dir, nil, app.Options{})
	conn := s.subscribe(s.owner, map[string]any{"tenant": "default"})
	idle, _, err := s.dialEvents(s.owner, "", "") // not subscribed yet
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	s.stop()
	for _, c := range []*websocket.Conn{conn, idle} {
		if code := closeCode(t, c, 10*time.Second); code != websocket.CloseGoingAway {
			t.Fatalf("shutdown: close %d, want 1001", code)
		}
	}
}
