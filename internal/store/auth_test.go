package store_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cofferhq/coffer"
	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/auth"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/tenant"
)

// tokenFixture bootstraps an owner with a root token and returns the store's view of them.
func tokenFixture(t *testing.T, st *store.Store) (auth.User, auth.Token) {
	t.Helper()
	now := time.Now().UTC()
	u := auth.User{ID: store.NewID(), Email: "owner@example.com", Name: "Owner", InstanceAdmin: true, CreatedAt: now}
	root := auth.Token{ID: store.NewID(), UserID: u.ID, Name: "bootstrap", DisplayPrefix: "cfr_pat_root", CreatedAt: now}
	tn := tenant.Tenant{ID: store.NewID(), Slug: "acme", Name: "Acme", CreatedAt: now, UpdatedAt: now}
	if err := st.Bootstrap(context.Background(), u, tn, root, "hash-root", audit.System.New(audit.ActionBootstrap, tn.ID, "user", u.ID, u.Email, nil)); err != nil {
		t.Fatalf("bootstrap: %v", err)
	}
	return u, root
}

// child stores a token minted by parent.
func child(st *store.Store, parent auth.Token, name string, expiresAt *time.Time) (auth.Token, error) {
	t := auth.Token{ID: store.NewID(), UserID: parent.UserID, Name: name, DisplayPrefix: "cfr_pat_" + name[:1],
		ParentID: parent.ID, ExpiresAt: expiresAt, CreatedAt: time.Now().UTC()}
	return t, st.CreateToken(context.Background(), t, "hash-"+t.ID, audit.System.New(audit.ActionTokenCreate, "", "token", t.ID, t.Name, nil))
}

// revokeEntries audits a revocation as the service does in essence: one entry per token.
func revokeEntries(descendants []string) []audit.Entry {
	out := []audit.Entry{audit.System.New(audit.ActionTokenRevoke, "", "token", "root", "root", nil)}
	for _, id := range descendants {
		out = append(out, audit.System.New(audit.ActionTokenRevoke, "", "token", id, id, nil))
	}
	return out
}

// TestCreateTokenNeedsALiveParent: the parent is checked again where the child is written, so
// a revocation or expiry that lands after the request authenticated still stops the child.
func TestCreateTokenNeedsALiveParent(t *testing.T) {
	forEachDialect(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		u, root := tokenFixture(t, st)
		past := time.Now().UTC().Add(-time.Minute)
		expired := auth.Token{ID: store.NewID(), UserID: u.ID, Name: "expired", DisplayPrefix: "cfr_pat_e", ExpiresAt: &past, CreatedAt: past.Add(-time.Hour)}
		if err := st.CreateToken(ctx, expired, "hash-expired", audit.System.New(audit.ActionTokenCreate, "", "token", expired.ID, "expired", nil)); err != nil {
			t.Fatal(err)
		}
		other := auth.User{ID: store.NewID(), Email: "other@example.com", Name: "Other", CreatedAt: time.Now().UTC()}
		otherRoot := auth.Token{ID: store.NewID(), UserID: other.ID, Name: "first token", DisplayPrefix: "cfr_pat_o", CreatedAt: other.CreatedAt}
		if err := st.CreateUser(ctx, other, otherRoot, "hash-other", audit.System.New(audit.ActionUserCreate, "", "user", other.ID, other.Email, nil)); err != nil {
			t.Fatal(err)
		}
		live, err := child(st, root, "live", nil)
		if err != nil {
			t.Fatalf("child of a live root: %v", err)
		}
		if err := st.RevokeToken(ctx, u.ID, live.ID, time.Now().UTC(), revokeEntries); err != nil {
			t.Fatal(err)
		}
		crossUser := root
		crossUser.UserID = other.ID // the other user's token, claiming the owner's as parent
		cases := []struct {
			name   string
			parent auth.Token
		}{
			{"revoked parent", live},
			{"expired parent", expired},
			{"missing parent", auth.Token{ID: store.NewID(), UserID: u.ID}},
			{"another user's token as parent", crossUser},
		}
		before, err := st.ListTokens(ctx, u.ID, "", 100)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cases {
			if _, err := child(st, c.parent, "refused", nil); !errors.Is(err, auth.ErrBadToken) || coffer.ErrorCode(err) != coffer.EUNAUTHORIZED {
				t.Errorf("%s: CreateToken = %v, want ErrBadToken", c.name, err)
			}
		}
		after, err := st.ListTokens(ctx, u.ID, "", 100)
		if err != nil {
			t.Fatal(err)
		}
		others, err := st.ListTokens(ctx, other.ID, "", 100)
		if err != nil {
			t.Fatal(err)
		}
		if len(after) != len(before) || len(others) != 1 {
			t.Errorf("refused children were stored: %d then %d tokens, other user %d", len(before), len(after), len(others))
		}
	})
}

// TestRevokeTokenRacingCreate: children and grandchildren minted while their ancestor is being
// revoked are either refused or revoked with it; none outlives the revocation.
func TestRevokeTokenRacingCreate(t *testing.T) {
	forEachDialect(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		u, root := tokenFixture(t, st)
		parent, err := child(st, root, "parent", nil)
		if err != nil {
			t.Fatal(err)
		}
		const workers, each = 4, 8
		var wg sync.WaitGroup
		errs := make(chan error, workers*each*2)
		start := make(chan struct{})
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				for i := range each {
					c, err := child(st, parent, fmt.Sprintf("c%d-%d", w, i), nil)
					if err == nil {
						_, err = child(st, c, fmt.Sprintf("g%d-%d", w, i), nil)
					}
					if err != nil && !errors.Is(err, auth.ErrBadToken) {
						errs <- err
					}
				}
			}()
		}
		var revokeErr error
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			time.Sleep(5 * time.Millisecond)
			revokeErr = st.RevokeToken(ctx, u.ID, root.ID, time.Now().UTC(), revokeEntries)
		}()
		close(start)
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Errorf("create: %v", err)
		}
		if revokeErr != nil {
			t.Fatalf("revoke: %v", revokeErr)
		}
		// Every token of the user descends from root, so none may be live.
		live, err := st.ListTokens(ctx, u.ID, "", 1000)
		if err != nil {
			t.Fatal(err)
		}
		for _, tok := range live {
			t.Errorf("token %s (%s, parent %s) outlived the revocation of its ancestor", tok.ID, tok.Name, tok.ParentID)
		}
	})
}
