package store

import "context"

// ExecForTest runs a raw statement, for tests that must try what no code path does.
func (s *Store) ExecForTest(ctx context.Context, query string) error {
	return s.db.WithContext(ctx).Exec(query).Error
}
