package store_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/cofferhq/coffer"
	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/secrets"
	"github.com/cofferhq/coffer/internal/store"
)

// TestOverlappingKeyJobsAreRefused: two reseals of one environment would re-encrypt each
// other's work and two rewraps would move keys to and fro, so a job whose scope overlaps a
// running job of its kind is refused; other scopes, other tenants and other kinds go ahead.
func TestOverlappingKeyJobsAreRefused(t *testing.T) {
	forEachDialect(t, func(t *testing.T, st *store.Store) {
		ctx := t.Context()
		for _, q := range []string{
			`INSERT INTO tenants (id, slug, name, created_at, updated_at) VALUES ('t1', 'one', 'One', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)`,
			`INSERT INTO tenants (id, slug, name, created_at, updated_at) VALUES ('t2', 'two', 'Two', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)`,
		} {
			if err := st.ExecForTest(ctx, q); err != nil {
				t.Fatal(err)
			}
		}
		n := 0
		job := func(tenantID, kind, project, env string) secrets.Job {
			n++
			now := time.Now().UTC()
			return secrets.Job{ID: "job-" + strconv.Itoa(n), TenantID: tenantID, Kind: kind, ProjectID: project, EnvironmentID: env,
				TargetKEK: "local:target", State: secrets.JobRunning, CreatedAt: now, UpdatedAt: now}
		}
		create := func(j secrets.Job) error {
			return st.CreateJob(ctx, j, audit.System.New(audit.ActionKeyJobStart, j.TenantID, "key_job", j.ID, j.Kind, nil))
		}
		steps := []struct {
			name string
			job  secrets.Job
			ok   bool
		}{
			{"reseal of a project", job("t1", secrets.JobReseal, "p1", ""), true},
			{"reseal of an environment in that project", job("t1", secrets.JobReseal, "p1", "e1"), false},
			{"reseal of the whole tenant", job("t1", secrets.JobReseal, "", ""), false},
			{"reseal of another project", job("t1", secrets.JobReseal, "p2", "e9"), true},
			{"reseal in another tenant", job("t2", secrets.JobReseal, "p1", ""), true},
			{"rewrap of the tenant", job("t1", secrets.JobRewrap, "", ""), true},
			{"second rewrap of the tenant", job("t1", secrets.JobRewrap, "", ""), false},
			{"platform rewrap", job("", secrets.JobRewrap, "", ""), true},
			{"second platform rewrap", job("", secrets.JobRewrap, "", ""), false},
		}
		for _, s := range steps {
			err := create(s.job)
			switch {
			case s.ok && err != nil:
				t.Errorf("%s: refused: %v", s.name, err)
			case !s.ok && coffer.ErrorCode(err) != coffer.ECONFLICT:
				t.Errorf("%s: got %v, want a conflict", s.name, err)
			}
			if _, err := st.Job(ctx, s.job.TenantID, s.job.ID); (err == nil) != s.ok {
				t.Errorf("%s: job stored = %v, want %v", s.name, err == nil, s.ok)
			}
		}
	})
}
