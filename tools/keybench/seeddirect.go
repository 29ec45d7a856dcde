package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/cofferhq/coffer/internal/secrets"
	"github.com/cofferhq/coffer/internal/tenant"
)

// Writing 100,000 versions through the API takes two minutes here (each bulk write of 1,000
// is some 3,000 statements), far longer than the reseal being measured. So on Postgres the
// versions between the first and the last are written directly: sealed in this process by the
// server's own keyring, data key and additional data, exactly as the service seals them, and
// copied into secret_versions in one transaction that also counts the seals on the data key
// and bumps the environment's revision. The first and last versions still go through the API,
// and the checks after each reseal read versions of both kinds. What the direct versions lack
// is their audit entries, which the reseal never reads.

// directEnv is what the direct writer needs to know about the environment.
type directEnv struct {
	tenantID, projectID, envID string
	key                        tenant.WrappedKey
	secretIDs                  map[string]string // name → id
	author                     string
}

// seedDirect writes versions 2..len(values)-1 (values[v-1][i] is secret i's value at version
// v) of secrets that exist at version 1, leaving each secret at its version len(values)-1.
func seedDirect(ctx context.Context, srv *server, dbURL string, values [][]string) error {
	last := len(values) - 1 // the last version written here
	if last < 2 {
		return nil
	}
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return fmt.Errorf("connect to the benchmark database: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))

	env, err := loadDirectEnv(ctx, conn)
	if err != nil {
		return err
	}
	dk, err := srv.app.Keys.Unwrap(ctx, env.tenantID, env.projectID, env.envID, env.key)
	if err != nil {
		return fmt.Errorf("unwrap the environment's data key: %w", err)
	}
	defer dk.Wipe()
	if got := dk.ID().String(); got != env.key.ID {
		return fmt.Errorf("unwrapped data key %s, want %s", got, env.key.ID)
	}

	now := time.Now().UTC()
	rows := make([][]any, 0, (last-1)*len(values[0]))
	for v := 2; v <= last; v++ {
		for i, value := range values[v-1] {
			name := secretName(i)
			id, ok := env.secretIDs[name]
			if !ok {
				return fmt.Errorf("secret %s does not exist", name)
			}
			ct, err := dk.Seal([]byte(value), secrets.AAD(env.tenantID, env.projectID, env.envID, name, v))
			if err != nil {
				return err
			}
			rows = append(rows, []any{id, v, ct, "", env.author, now})
		}
	}

	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	// The environment's row lock first, as every write takes it.
	if _, err := tx.Exec(ctx, `UPDATE environments SET revision = revision + 1 WHERE id = $1`, env.envID); err != nil {
		return err
	}
	n, err := tx.CopyFrom(ctx, pgx.Identifier{"secret_versions"},
		[]string{"secret_id", "version", "ciphertext", "note", "created_by", "created_at"}, pgx.CopyFromRows(rows))
	if err != nil {
		return fmt.Errorf("copy versions: %w", err)
	}
	if n != int64(len(rows)) {
		return fmt.Errorf("copied %d versions, want %d", n, len(rows))
	}
	tag, err := tx.Exec(ctx, `UPDATE secrets s SET latest_version = v.version, ciphertext = v.ciphertext, updated_at = $3
		FROM secret_versions v WHERE v.secret_id = s.id AND v.version = $2 AND s.environment_id = $1`, env.envID, last, now)
	if err != nil {
		return err
	}
	if tag.RowsAffected() != int64(len(env.secretIDs)) {
		return fmt.Errorf("moved %d secrets to version %d, want %d", tag.RowsAffected(), last, len(env.secretIDs))
	}
	if _, err := tx.Exec(ctx, `UPDATE data_keys SET uses = uses + $1 WHERE id = $2`, len(rows), env.key.ID); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

func loadDirectEnv(ctx context.Context, conn *pgx.Conn) (directEnv, error) {
	var env directEnv
	err := conn.QueryRow(ctx, `SELECT e.tenant_id, e.project_id, e.id, k.id, k.kek_id, k.wrapped_key, k.created_at
		FROM environments e JOIN projects p ON p.id = e.project_id JOIN tenants t ON t.id = e.tenant_id
		JOIN data_keys k ON k.id = e.current_key_id
		WHERE t.slug = 'default' AND p.slug = 'web' AND e.slug = 'development'`).
		Scan(&env.tenantID, &env.projectID, &env.envID, &env.key.ID, &env.key.KEKID, &env.key.Wrapped, &env.key.CreatedAt)
	if err != nil {
		return env, fmt.Errorf("find the environment: %w", err)
	}
	if _, err := uuid.Parse(env.key.ID); err != nil {
		return env, fmt.Errorf("data key id %q: %w", env.key.ID, err)
	}
	rows, err := conn.Query(ctx, `SELECT id, name, updated_by FROM secrets WHERE environment_id = $1 AND latest_version = 1`, env.envID)
	if err != nil {
		return env, err
	}
	env.secretIDs = map[string]string{}
	for rows.Next() {
		var id, name string
		if err := rows.Scan(&id, &name, &env.author); err != nil {
			rows.Close()
			return env, err
		}
		env.secretIDs[name] = id
	}
	if err := rows.Err(); err != nil {
		return env, err
	}
	if len(env.secretIDs) == 0 {
		return env, errors.New("the environment has no secrets at version 1")
	}
	return env, nil
}

// vacuumAnalyze brings the tables a reseal reads and rewrites to the state autovacuum would
// leave them in after a while: planner statistics current (the seeding or the previous reseal
// changed every row) and the dead row versions of the previous reseal reclaimed. Each reseal
// then starts from the same state and measures the same work.
func vacuumAnalyze(ctx context.Context, dbURL string) error {
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	// One statement per Exec: VACUUM cannot run in the implicit transaction of a multi-statement query.
	for _, table := range []string{"secrets", "secret_versions", "data_keys", "environments"} {
		if _, err := conn.Exec(ctx, "VACUUM ANALYZE "+table); err != nil {
			return err
		}
	}
	return nil
}
