package app_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

// tokenOf is a token minted through the API: its id, the secret shown once, and its expiry
// as the API wrote it (empty: never).
type tokenOf struct{ id, secret, expires string }

// mint creates a token with parent and checks that the answer names that parent.
func (s *server) mint(parent tokenOf, name string, days int) tokenOf {
	s.t.Helper()
	r := s.must(http.StatusCreated, "POST", "/api/v1/tokens", parent.secret, map[string]any{"name": name, "expires_in_days": days})
	tok := tokenOf{id: str(r.body["id"]), secret: str(r.body["token"]), expires: str(r.body["expires_at"])}
	if tok.id == "" || tok.secret == "" || r.body["parent_id"] != parent.id {
		s.t.Fatalf("minted %s = %s, want an id, a token and parent_id %s", name, r.raw, parent.id)
	}
	return tok
}

func str(v any) string { s, _ := v.(string); return s }

// liveTokens reports, per token, whether it still authenticates: on /me, and on a tenant
// route, where a live token of a non-member is 404 and a dead one 401 before anything else.
func (s *server) liveTokens(t *testing.T, want map[string]bool, toks map[string]tokenOf) {
	t.Helper()
	for name, live := range want {
		tok := toks[name]
		me := s.call("GET", "/api/v1/me", tok.secret, nil)
		scoped := s.call("GET", "/api/v1/tenants/default", tok.secret, nil)
		if live {
			if me.status != http.StatusOK || str(me.body["token_id"]) != tok.id {
				t.Errorf("%s: /me = %d %s, want 200 with its id", name, me.status, me.raw)
			}
			isoCheckError(t, name+" on another tenant", scoped, http.StatusNotFound, "not_found")
			continue
		}
		isoCheckError(t, name+" on /me", me, http.StatusUnauthorized, "unauthorized")
		isoCheckError(t, name+" on a tenant route", scoped, http.StatusUnauthorized, "unauthorized")
	}
}

// TestTokenLineage: a token never mints a token that outlives it, and revoking a token
// revokes, on the very next request, everything minted from it, transitively, and nothing
// else; every revoked token gets an audit entry that holds no secret nor hash.
func TestTokenLineage(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *server) {
		db := s.rawDB()
		root := tokenOf{secret: s.newUser("lineage@example.com")}
		root.id = str(s.must(http.StatusOK, "GET", "/api/v1/me", root.secret, nil).body["token_id"])

		// The user's first token is a root: created by the admin, but not the admin's child.
		var parentOfRoot *string
		if err := db.QueryRow(s.q(`SELECT parent_id FROM api_tokens WHERE id = ?`), root.id).Scan(&parentOfRoot); err != nil {
			t.Fatal(err)
		}
		if parentOfRoot != nil {
			t.Errorf("a user's first token has parent %s, want none", *parentOfRoot)
		}

		unrelated := s.mint(root, "unrelated", 30)
		parent := s.mint(root, "parent", 7)

		// A 7-day token cannot mint a longer or a non-expiring token; nothing is written.
		latest, err := time.Parse(time.RFC3339Nano, parent.expires)
		if err != nil {
			t.Fatalf("parent expires_at %q: %v", parent.expires, err)
		}
		before := isoSnapshot(t, db)
		for _, days := range []int{30, 0, 7} {
			r := s.call("POST", "/api/v1/tokens", parent.secret, map[string]any{"name": "too long", "expires_in_days": days})
			if !isoCheckError(t, "a 7-day token minting "+itoa(days)+" days", r, http.StatusUnprocessableEntity, "validation_failed") {
				continue
			}
			// Moments into its life the parent has six whole days left, and says so.
			msg := str(r.body["error"].(map[string]any)["message"])
			if !strings.Contains(msg, "outlives") || !strings.Contains(msg, "at most 6 days") || !strings.Contains(msg, latest.UTC().Format(time.RFC3339)) {
				t.Errorf("refusal message %q does not give the latest expiry allowed", msg)
			}
		}
		isoSameSnapshot(t, "refused mints", before, isoSnapshot(t, db))

		oneDay := s.mint(parent, "one day", 1)
		child := s.mint(parent, "child", 5)
		grandchild := s.mint(child, "grandchild", 1)
		toks := map[string]tokenOf{"root": root, "unrelated": unrelated, "parent": parent,
			"one day": oneDay, "child": child, "grandchild": grandchild}

		// The listing shows each token's parent.
		list := s.must(http.StatusOK, "GET", "/api/v1/tokens", root.secret, nil)
		parents := map[string]any{}
		for _, it := range list.items() {
			parents[str(it["id"])] = it["parent_id"]
		}
		for id, want := range map[string]any{root.id: nil, unrelated.id: root.id, parent.id: root.id,
			oneDay.id: parent.id, child.id: parent.id, grandchild.id: child.id} {
			if got, ok := parents[id]; !ok || got != want {
				t.Errorf("listed parent of %s = %v (listed: %v), want %v", id, got, ok, want)
			}
		}

		// Revoking a child leaves its parent (and its siblings) working.
		s.must(http.StatusNoContent, "DELETE", "/api/v1/tokens/"+oneDay.id, root.secret, nil)
		s.liveTokens(t, map[string]bool{"one day": false, "parent": true, "child": true, "grandchild": true, "root": true}, toks)

		// Revoking the parent, with an unrelated token of the same user, takes child and
		// grandchild with it on the next request; the unrelated token and the root live on.
		var oneDayRevoked string
		if err := db.QueryRow(s.q(`SELECT revoked_at FROM api_tokens WHERE id = ?`), oneDay.id).Scan(&oneDayRevoked); err != nil {
			t.Fatal(err)
		}
		s.must(http.StatusNoContent, "DELETE", "/api/v1/tokens/"+parent.id, unrelated.secret, nil)
		s.liveTokens(t, map[string]bool{"parent": false, "child": false, "grandchild": false, "unrelated": true, "root": true}, toks)
		var again string
		if err := db.QueryRow(s.q(`SELECT revoked_at FROM api_tokens WHERE id = ?`), oneDay.id).Scan(&again); err != nil || again != oneDayRevoked {
			t.Errorf("the earlier revocation of a descendant moved: %q, then %q (%v)", oneDayRevoked, again, err)
		}
		// One revocation, one moment: the whole subtree carries the parent's revoked_at.
		var distinct int
		if err := db.QueryRow(s.q(`SELECT COUNT(DISTINCT revoked_at) FROM api_tokens WHERE id IN (?, ?, ?)`),
			parent.id, child.id, grandchild.id).Scan(&distinct); err != nil || distinct != 1 {
			t.Errorf("parent, child and grandchild hold %d revocation times (%v), want 1", distinct, err)
		}
		for _, id := range []string{parent.id, child.id} {
			isoCheckError(t, "revoking an already revoked token", s.call("DELETE", "/api/v1/tokens/"+id, root.secret, nil), http.StatusNotFound, "not_found")
		}
		listed := s.must(http.StatusOK, "GET", "/api/v1/tokens", root.secret, nil).items()
		if len(listed) != 2 {
			t.Errorf("%d tokens listed after the revocations, want root and unrelated: %v", len(listed), listed)
		}

		// The audit log has one entry per revoked token, naming the revocation's start;
		// descendants come in id order, which is creation order.
		rows, err := db.Query(`SELECT actor_id, target_id, metadata FROM audit_entries WHERE action = 'token.revoke' ORDER BY id`)
		if err != nil {
			t.Fatal(err)
		}
		type entry struct {
			actor, target string
			meta          map[string]any
		}
		var got []entry
		var raw strings.Builder
		for rows.Next() {
			var e entry
			var meta string
			if err := rows.Scan(&e.actor, &e.target, &meta); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal([]byte(meta), &e.meta); err != nil {
				t.Fatalf("metadata %q: %v", meta, err)
			}
			raw.WriteString(e.target + meta)
			got = append(got, e)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		rows.Close()
		userID := str(s.must(http.StatusOK, "GET", "/api/v1/me", root.secret, nil).body["user"].(map[string]any)["id"])
		want := []entry{
			{userID, oneDay.id, map[string]any{"user": userID, "descendants": float64(0)}},
			{userID, parent.id, map[string]any{"user": userID, "descendants": float64(2)}},
			{userID, child.id, map[string]any{"user": userID, "revoked_with": parent.id}},
			{userID, grandchild.id, map[string]any{"user": userID, "revoked_with": parent.id}},
		}
		if len(got) != len(want) {
			t.Fatalf("token.revoke entries = %+v, want %d", got, len(want))
		}
		for i := range want {
			w, g := want[i], got[i]
			wm, _ := json.Marshal(w.meta)
			gm, _ := json.Marshal(g.meta)
			if g.actor != w.actor || g.target != w.target || string(gm) != string(wm) {
				t.Errorf("entry %d = %+v, want %+v", i, g, w)
			}
		}
		hashes, err := db.Query(`SELECT token_hash FROM api_tokens`)
		if err != nil {
			t.Fatal(err)
		}
		defer hashes.Close()
		for hashes.Next() {
			var h string
			if err := hashes.Scan(&h); err != nil {
				t.Fatal(err)
			}
			if strings.Contains(raw.String(), h) {
				t.Error("an audit entry holds a token hash")
			}
		}
		for name, tok := range toks {
			if strings.Contains(raw.String(), tok.secret) {
				t.Errorf("an audit entry holds the %s token", name)
			}
		}
	})
}
