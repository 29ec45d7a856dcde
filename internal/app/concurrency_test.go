package app_test

import (
	"net/http"
	"sync"
	"testing"
)

// TestConcurrentWritesToOneEnvironment: writers racing on the same secrets (in opposite
// orders, so naive row locking would deadlock) all succeed, and every write is one version.
func TestConcurrentWritesToOneEnvironment(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *server) {
		s.withProject()
		const writers = 16
		var wg sync.WaitGroup
		statuses := make([]int, writers)
		for i := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				list := []map[string]any{{"name": "A", "value": "a" + itoa(i)}, {"name": "B", "value": "b" + itoa(i)}}
				if i%2 == 1 {
					list[0], list[1] = list[1], list[0]
				}
				statuses[i] = s.call("PATCH", envPath+"development/secrets", s.owner, map[string]any{"secrets": list}).status
			}()
		}
		wg.Wait()
		for i, st := range statuses {
			if st != http.StatusOK {
				t.Errorf("writer %d: status %d", i, st)
			}
		}
		for _, name := range []string{"A", "B"} {
			vs := s.must(200, "GET", envPath+"development/secrets/"+name+"/versions?limit=100", s.owner, nil).items()
			if len(vs) != writers || vs[0]["version"] != float64(writers) {
				t.Fatalf("%s has %d versions (latest %v), want %d", name, len(vs), vs[0]["version"], writers)
			}
		}
	})
}
