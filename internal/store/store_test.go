package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/auth"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/store/storetest"
	"github.com/cofferhq/coffer/internal/tenant"
)

func open(t *testing.T, dialect string) *store.Store {
	t.Helper()
	dbURL, dir := storetest.Database(t, dialect)
	st, err := store.Open(context.Background(), store.Options{URL: dbURL, SQLitePath: storetest.SQLitePath(dir)})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

func forEachDialect(t *testing.T, fn func(t *testing.T, st *store.Store)) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			st := open(t, d)
			if _, err := st.Migrate(context.Background()); err != nil {
				t.Fatalf("migrate: %v", err)
			}
			fn(t, st)
		})
	}
}

func TestMigrateFreshThenNoop(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			ctx := context.Background()
			st := open(t, d)
			if err := st.Ready(ctx); err == nil {
				t.Fatal("Ready before migrating: want pending-migrations error")
			}
			applied, err := st.Migrate(ctx)
			if err != nil {
				t.Fatalf("first migrate: %v", err)
			}
			if len(applied) == 0 {
				t.Fatal("first migrate applied nothing on a fresh database")
			}
			again, err := st.Migrate(ctx)
			if err != nil {
				t.Fatalf("second migrate: %v", err)
			}
			if len(again) != 0 {
				t.Fatalf("second migrate applied %v, want nothing", again)
			}
			if err := st.Ready(ctx); err != nil {
				t.Fatalf("Ready after migrating: %v", err)
			}
		})
	}
}

func TestTokenByHashRoundTrip(t *testing.T) {
	forEachDialect(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		now := time.Now().UTC()
		u := auth.User{ID: store.NewID(), Email: "a@example.com", Name: "A", InstanceAdmin: true, CreatedAt: now}
		tok := auth.Token{ID: store.NewID(), UserID: u.ID, Name: "t", DisplayPrefix: "cfr_pat_abcd", CreatedAt: now}
		tn := tenant.Tenant{ID: store.NewID(), Slug: "acme", Name: "Acme", CreatedAt: now, UpdatedAt: now}
		if err := st.Bootstrap(ctx, u, tn, tok, "hash-1", audit.System.New(audit.ActionBootstrap, tn.ID, "user", u.ID, u.Email, nil)); err != nil {
			t.Fatalf("bootstrap: %v", err)
		}
		rec, err := st.TokenByHash(ctx, "hash-1")
		if err != nil {
			t.Fatalf("TokenByHash: %v", err)
		}
		if rec.Hash != "hash-1" || rec.ID != tok.ID || rec.User.ID != u.ID || !rec.User.InstanceAdmin || rec.User.Email != u.Email {
			t.Fatalf("TokenByHash = %+v", rec)
		}
		err = st.Bootstrap(ctx, u, tn, tok, "hash-2", audit.System.New(audit.ActionBootstrap, tn.ID, "user", u.ID, u.Email, nil))
		if err != auth.ErrAlreadyBootstrapped {
			t.Fatalf("second bootstrap: got %v, want ErrAlreadyBootstrapped", err)
		}
	})
}

func TestAuditEntriesAreAppendOnly(t *testing.T) {
	forEachDialect(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		e := audit.System.New(audit.ActionBootstrap, "t1", "user", "u1", "someone", map[string]any{"k": "v"})
		if err := st.AppendAudit(ctx, []audit.Entry{e, e}); err != nil {
			t.Fatalf("append: %v", err)
		}
		for _, q := range []string{
			`UPDATE audit_entries SET action = 'forged'`,
			`DELETE FROM audit_entries`,
		} {
			if err := st.ExecForTest(ctx, q); err == nil {
				t.Errorf("%s succeeded on an append-only table", q)
			}
		}
		got, err := st.AuditEntries(ctx, "t1", 0, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 2 || got[0].Action != audit.ActionBootstrap || got[1].Metadata["k"] != "v" {
			t.Fatalf("entries after tampering attempts = %+v", got)
		}
	})
}
