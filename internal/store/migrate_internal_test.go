package store

import (
	"context"
	"io/fs"
	"testing"
	"testing/fstest"

	"github.com/cofferhq/coffer/internal/store/storetest"
	"github.com/cofferhq/coffer/migrations"
)

// TestFailedMigrationLeavesSchemaAsItWas: a migration that fails half-way is rolled back as a
// whole on both dialects, because each migration runs in its own transaction.
func TestFailedMigrationLeavesSchemaAsItWas(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			ctx := context.Background()
			dbURL, dir := storetest.Database(t, d)
			st, err := Open(ctx, Options{URL: dbURL, SQLitePath: storetest.SQLitePath(dir)})
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			real, err := migrations.FS(d)
			if err != nil {
				t.Fatal(err)
			}
			first, err := fs.ReadFile(real, "00001_core.sql")
			if err != nil {
				t.Fatal(err)
			}
			broken := fstest.MapFS{
				"00001_core.sql": {Data: first},
				"00002_broken.sql": {Data: []byte(`-- +goose Up
CREATE TABLE half_done (id TEXT PRIMARY KEY);
ALTER TABLE tenants ADD COLUMN half_done TEXT;
INSERT INTO no_such_table VALUES (1);
`)},
			}
			p, err := st.providerFor(broken)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := st.migrate(ctx, p); err == nil {
				t.Fatal("the broken migration succeeded")
			}
			var n int64
			if err := st.db.Raw(`SELECT COUNT(*) FROM tenants`).Scan(&n).Error; err != nil {
				t.Fatalf("the first migration did not stay applied: %v", err)
			}
			if err := st.db.Exec(`SELECT half_done FROM tenants`).Error; err == nil {
				t.Fatal("the failed migration's ALTER TABLE stayed applied")
			}
			if err := st.db.Exec(`SELECT COUNT(*) FROM half_done`).Error; err == nil {
				t.Fatal("the failed migration's CREATE TABLE stayed applied")
			}
			version, err := p.GetDBVersion(ctx)
			if err != nil || version != 1 {
				t.Fatalf("schema version = %d (%v), want 1", version, err)
			}
			// And the real migrations carry on from there.
			if _, err := st.Migrate(ctx); err != nil {
				t.Fatalf("migrate after the failure: %v", err)
			}
		})
	}
}
