// Package store is the only package that talks to the database. It implements the Store
// interfaces declared by the domain packages on SQLite (embedded default) and Postgres with
// gorm, applies the embedded migrations, and scopes every query by tenant. Each method runs
// in one transaction and appends its audit entries inside it.
package store

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	gosqlite "github.com/glebarez/go-sqlite"
	"github.com/glebarez/sqlite"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/pressly/goose/v3"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/cofferhq/coffer"
	"github.com/cofferhq/coffer/migrations"
)

// Dialects.
const (
	SQLite   = "sqlite"
	Postgres = "postgres"
)

// Store implements the domain stores on one database.
type Store struct {
	db      *gorm.DB
	dialect string
	heads   headCache // the audit chains' heads this process last saw
	// onEvents announces committed events (see OnEvents).
	onEvents atomic.Pointer[func(tenants []string)]
	// onChange announces committed changes to what credentials resolve to (see OnChange).
	onChange atomic.Pointer[func(tenants []string)]
	// writer queues this process's transactions on SQLite (see tx); nil on Postgres.
	writer chan struct{}
}

// Options configure Open.
type Options struct {
	// URL is a postgres:// URL, or empty for SQLite at SQLitePath.
	URL        string
	SQLitePath string
	MaxConns   int
	Logger     *slog.Logger
	// QueryHook, when set, is called with every SQL statement the store runs (tests count
	// queries with it). It never receives bound values.
	QueryHook func(sql string)
}

// Open connects to the database. It does not migrate; call Migrate.
func Open(ctx context.Context, opts Options) (*Store, error) {
	cfg := &gorm.Config{
		TranslateError: true,
		// Connecting is left to the first query, so a server can start (and wait) while its
		// database is still coming up.
		DisableAutomaticPing:   true,
		SkipDefaultTransaction: true,
		PrepareStmt:            false,
		// gorm's own logger would print SQL with bound values, which include ciphertexts
		// and token hashes: keep it silent and log failures ourselves without values.
		Logger:  logger.Discard,
		NowFunc: func() time.Time { return time.Now().UTC() },
	}
	var (
		dial    gorm.Dialector
		dialect string
	)
	switch {
	case opts.URL == "":
		if err := os.MkdirAll(filepath.Dir(opts.SQLitePath), 0o700); err != nil {
			return nil, fmt.Errorf("create data directory: %w", err)
		}
		// The database holds wrapped keys and ciphertexts only, but it is still nobody
		// else's business: create it owner-only before SQLite does with the umask.
		f, err := os.OpenFile(opts.SQLitePath, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return nil, fmt.Errorf("create database file: %w", err)
		}
		_ = f.Close()
		q := url.Values{}
		q.Add("_pragma", "busy_timeout(10000)")
		q.Add("_pragma", "journal_mode(WAL)")
		q.Add("_pragma", "foreign_keys(1)")
		q.Add("_pragma", "synchronous(FULL)")
		// Deleted rows (wrapped data keys, ciphertexts) are overwritten with zeros rather
		// than left in free pages, so a copy of the file does not hold what was deleted.
		q.Add("_pragma", "secure_delete(ON)")
		// Writers take the lock when they begin, so two transactions never deadlock
		// upgrading from read to write.
		q.Set("_txlock", "immediate")
		dial = sqlite.Open("file:" + opts.SQLitePath + "?" + q.Encode())
		dialect = SQLite
	case strings.HasPrefix(opts.URL, "postgres://") || strings.HasPrefix(opts.URL, "postgresql://"):
		dial = postgres.Open(opts.URL)
		dialect = Postgres
	default:
		return nil, errors.New("database URL must start with postgres:// (or be empty for the embedded SQLite)")
	}
	db, err := gorm.Open(dial, cfg)
	if err != nil {
		return nil, fmt.Errorf("open %s database: %w", dialect, err)
	}
	sqlDB, err := db.DB()
	if err != nil {
		return nil, err
	}
	maxConns := opts.MaxConns
	if maxConns <= 0 {
		maxConns = 32
	}
	sqlDB.SetMaxOpenConns(maxConns)
	sqlDB.SetMaxIdleConns(maxConns)
	sqlDB.SetConnMaxIdleTime(5 * time.Minute)
	if opts.QueryHook != nil {
		hook := opts.QueryHook
		cb := func(tx *gorm.DB) { hook(tx.Statement.SQL.String()) }
		_ = db.Callback().Query().After("gorm:query").Register("coffer:hook", cb)
		_ = db.Callback().Raw().After("gorm:raw").Register("coffer:hook", cb)
		_ = db.Callback().Row().After("gorm:row").Register("coffer:hook", cb)
		_ = db.Callback().Create().After("gorm:create").Register("coffer:hook", cb)
		_ = db.Callback().Update().After("gorm:update").Register("coffer:hook", cb)
		_ = db.Callback().Delete().After("gorm:delete").Register("coffer:hook", cb)
	}
	st := &Store{db: db, dialect: dialect}
	if dialect == SQLite {
		st.writer = make(chan struct{}, 1)
	}
	return st, nil
}

// Dialect returns "sqlite" or "postgres".
func (s *Store) Dialect() string { return s.dialect }

// Close closes the connection pool.
func (s *Store) Close() error {
	sqlDB, err := s.db.DB()
	if err != nil {
		return err
	}
	return sqlDB.Close()
}

func (s *Store) provider() (*goose.Provider, error) {
	fsys, err := migrations.FS(s.dialect)
	if err != nil {
		return nil, err
	}
	return s.providerFor(fsys)
}

func (s *Store) providerFor(fsys fs.FS) (*goose.Provider, error) {
	sqlDB, err := s.db.DB()
	if err != nil {
		return nil, err
	}
	d := goose.DialectSQLite3
	if s.dialect == Postgres {
		d = goose.DialectPostgres
	}
	return goose.NewProvider(d, sqlDB, fsys)
}

// Migrate applies pending migrations, each in its own transaction; applied ones are skipped.
func (s *Store) Migrate(ctx context.Context) ([]string, error) {
	p, err := s.provider()
	if err != nil {
		return nil, err
	}
	return s.migrate(ctx, p)
}

func (s *Store) migrate(ctx context.Context, p *goose.Provider) ([]string, error) {
	results, err := p.Up(ctx)
	var applied []string
	for _, r := range results {
		if r.Error == nil {
			applied = append(applied, r.Source.Path)
		}
	}
	if err != nil {
		return applied, fmt.Errorf("migrate %s: %w", s.dialect, err)
	}
	return applied, nil
}

// Ready reports whether the database answers and every migration is applied.
func (s *Store) Ready(ctx context.Context) error {
	p, err := s.provider()
	if err != nil {
		return err
	}
	pending, err := p.HasPending(ctx)
	if err != nil {
		return dbErr(err)
	}
	if pending {
		return coffer.Errorf(coffer.EUNAVAILABLE, "database migrations are pending")
	}
	return nil
}

// NewID returns a new object id. Version 7 UUIDs sort by creation time, which keeps indexes
// compact and makes ids usable as pagination cursors.
func NewID() string { return uuid.Must(uuid.NewV7()).String() }

// tx runs fn in a transaction and maps database errors to domain errors.
func (s *Store) tx(ctx context.Context, fn func(tx *gorm.DB) error) error {
	if s.writer != nil {
		// SQLite has one writer at a time, and every transaction here begins IMMEDIATE, taking
		// the write lock. Waiting for it in SQLite's busy handler (sleep and poll) is unfair:
		// under load a waiter can lose to newcomers for seconds. Waiting here instead, in
		// arrival order (a channel's blocked senders are woken first in, first out), hands the
		// lock over as soon as it is free, and gives up when ctx ends.
		select {
		case s.writer <- struct{}{}:
		case <-ctx.Done():
			return coffer.Wrap(coffer.EUNAVAILABLE, ctx.Err(), "the database is busy; retry")
		}
		defer func() { <-s.writer }()
	}
	var c committed
	err := dbErr(s.db.WithContext(context.WithValue(ctx, committedKey{}, &c)).Transaction(fn))
	if err != nil {
		return err
	}
	// Changes first: a request that starts once the event is announced must not be answered
	// from a cached scope the change made stale.
	if hook := s.onChange.Load(); hook != nil && len(c.changed) > 0 {
		(*hook)(c.changed)
	}
	if hook := s.onEvents.Load(); hook != nil && len(c.tenants) > 0 {
		(*hook)(c.tenants)
	}
	return nil
}

// committed collects, during a transaction, the tenants ("" for the instance) whose events it
// wrote and the tenants whose credentials' scopes it changed ("" for all), to be announced
// once it has committed.
type committed struct{ tenants, changed []string }

type committedKey struct{}

func (c *committed) add(tenantID string) {
	if !slices.Contains(c.tenants, tenantID) {
		c.tenants = append(c.tenants, tenantID)
	}
	c.change(tenantID)
}

func (c *committed) change(tenantID string) {
	if !slices.Contains(c.changed, tenantID) {
		c.changed = append(c.changed, tenantID)
	}
}

// changed records, in a transaction, that it changes what credentials of the tenant resolve
// to ("" for every tenant), so that OnChange's hook hears of it after the commit. Other
// replicas hear of it through Postgres: the events table's trigger (00015), the environments'
// revision trigger (00017), or, for "", a notification sent here.
func changed(tx *gorm.DB, tenantID string) error {
	if c, ok := tx.Statement.Context.Value(committedKey{}).(*committed); ok {
		c.change(tenantID)
	}
	if tenantID == "" && tx.Dialector.Name() == Postgres {
		return tx.Exec(`SELECT pg_notify('` + ChangesChannel + `', '')`).Error
	}
	return nil
}

// ChangesChannel is the Postgres notification channel that names, as payload, a tenant whose
// credentials' scopes changed without a new event (an environment's revision moved), or ""
// when a change reaches every tenant (a personal token revoked by a tenant's admin).
const ChangesChannel = "coffer_changes"

// OnChange sets the function told, after each commit that changed what credentials resolve to
// (access, memberships, environments' revisions), which tenants it changed ("" for all): the
// in-process invalidation of cached scopes. It must not block.
func (s *Store) OnChange(hook func(tenants []string)) { s.onChange.Store(&hook) }

// OnEvents sets the function told, after each commit that wrote events, which tenants they
// belong to: the in-process announcement of new events (Postgres also notifies every replica
// through the events table's trigger). It must not block.
func (s *Store) OnEvents(hook func(tenants []string)) { s.onEvents.Store(&hook) }

// forUpdate locks selected rows where the dialect needs it; SQLite transactions already hold
// the database's write lock from their start.
func (s *Store) forUpdate() string {
	if s.dialect == Postgres {
		return " FOR UPDATE"
	}
	return ""
}

var errNoRows = errors.New("no rows")

// dbErr turns driver errors into *coffer.Error values whose messages are safe to return:
// no SQL, no values. Domain errors pass through unchanged.
func dbErr(err error) error {
	if err == nil {
		return nil
	}
	var ce *coffer.Error
	if errors.As(err, &ce) {
		return err
	}
	if errors.Is(err, gorm.ErrDuplicatedKey) {
		return coffer.Wrap(coffer.ECONFLICT, err, "it already exists")
	}
	if errors.Is(err, gorm.ErrRecordNotFound) || errors.Is(err, errNoRows) {
		return coffer.Wrap(coffer.ENOTFOUND, err, "not found")
	}
	if errors.Is(err, context.Canceled) {
		return coffer.Wrap(coffer.EUNAVAILABLE, err, "the request was cancelled")
	}
	// A failed connection attempt is unavailability whatever the server said (database
	// shutting down, not accepting connections, too many clients).
	var connErr *pgconn.ConnectError
	if errors.As(err, &connErr) {
		return coffer.Wrap(coffer.EUNAVAILABLE, err, "the database is unavailable")
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case pgErr.Code == "23505":
			return coffer.Wrap(coffer.ECONFLICT, err, "it already exists")
		case pgErr.Code == "40001" || pgErr.Code == "40P01":
			return coffer.Wrap(coffer.ECONFLICT, err, "a concurrent change conflicted; retry")
		case strings.HasPrefix(pgErr.Code, "08"), strings.HasPrefix(pgErr.Code, "53"),
			strings.HasPrefix(pgErr.Code, "57"):
			return coffer.Wrap(coffer.EUNAVAILABLE, err, "the database is unavailable")
		}
		return coffer.Wrap(coffer.EINTERNAL, err, "internal error")
	}
	var sqliteErr *gosqlite.Error
	if errors.As(err, &sqliteErr) {
		switch sqliteErr.Code() & 0xff {
		case 9: // SQLITE_INTERRUPT: the request's context ended
			return coffer.Wrap(coffer.EUNAVAILABLE, err, "the request was cancelled")
		case 5, 6: // SQLITE_BUSY, SQLITE_LOCKED
			return coffer.Wrap(coffer.EUNAVAILABLE, err, "the database is busy; retry")
		case 10, 13, 14: // SQLITE_IOERR, SQLITE_FULL, SQLITE_CANTOPEN
			return coffer.Wrap(coffer.EUNAVAILABLE, err, "the database is unavailable")
		}
		return coffer.Wrap(coffer.EINTERNAL, err, "internal error")
	}
	var netErr net.Error
	if errors.As(err, &netErr) || errors.Is(err, driver.ErrBadConn) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, context.DeadlineExceeded) ||
		strings.Contains(err.Error(), "sql: database is closed") || strings.Contains(err.Error(), "conn closed") {
		return coffer.Wrap(coffer.EUNAVAILABLE, err, "the database is unavailable")
	}
	return coffer.Wrap(coffer.EINTERNAL, err, "internal error")
}

// Unavailable reports whether err means the database could not be reached, as opposed to
// refusing what was asked of it.
func Unavailable(err error) bool { return coffer.ErrorCode(dbErr(err)) == coffer.EUNAVAILABLE }

// notFound returns a not-found error with a caller-safe message.
func notFound(what string) error { return coffer.Errorf(coffer.ENOTFOUND, "%s not found", what) }
