package app_test

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"
)

// TestPointInTime replays 50 random changes (writes, deletes, restores) against a model of
// the environment, then reads the environment at the moment after each change and checks it
// against the model; a rollback to one of those moments makes the environment equal to it.
func TestPointInTime(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *server) {
		s.withProject()
		list := envPath + "qa/secrets"
		s.must(http.StatusCreated, "POST", "/api/v1/tenants/default/projects/web/environments", s.owner, map[string]any{"slug": "qa", "name": "QA"})
		begin := time.Now()
		time.Sleep(5 * time.Millisecond)

		type state map[string]string // name > value of the secrets that exist
		model := state{}
		deleted := state{} // deleted secrets' values, for restore
		var moments []time.Time
		var snapshots []state
		rng := rand.New(rand.NewPCG(7, 11))
		names := []string{"ALPHA", "BETA", "GAMMA", "DELTA", "EPSILON"}
		for i := 0; i < 50; i++ {
			name := names[rng.IntN(len(names))]
			_, exists := model[name]
			_, wasDeleted := deleted[name]
			switch op := rng.IntN(4); {
			case op == 0 && exists:
				s.must(http.StatusNoContent, "DELETE", list+"/"+name, s.owner, nil)
				deleted[name] = model[name]
				delete(model, name)
			case op == 1 && wasDeleted:
				s.must(http.StatusOK, "POST", list+"/"+name+"/restore", s.owner, nil)
				model[name] = deleted[name]
				delete(deleted, name)
			default:
				value := fmt.Sprintf("%s-%d", strings.ToLower(name), i)
				r := s.call("PUT", list+"/"+name, s.owner, map[string]string{"value": value})
				if r.status != http.StatusOK && r.status != http.StatusCreated {
					t.Fatalf("put: %d %s", r.status, r.raw)
				}
				model[name] = value
				delete(deleted, name)
			}
			moments = append(moments, time.Now())
			snap := state{}
			for k, v := range model {
				snap[k] = v
			}
			snapshots = append(snapshots, snap)
			time.Sleep(2 * time.Millisecond)
		}

		at := func(m time.Time) string { return url.QueryEscape(m.UTC().Format(time.RFC3339Nano)) }
		read := func(m time.Time) state {
			t.Helper()
			r := s.must(http.StatusOK, "GET", list+"?include=values&at="+at(m), s.owner, nil)
			got := state{}
			for _, it := range r.items() {
				got[str(it["name"])] = str(it["value"])
			}
			return got
		}
		show := func(st state) string {
			var out []string
			for k, v := range st {
				out = append(out, k+"="+v)
			}
			sort.Strings(out)
			return strings.Join(out, " ")
		}
		for i, m := range moments {
			if got, want := show(read(m)), show(snapshots[i]); got != want {
				t.Fatalf("at change %d: read %s, want %s", i, got, want)
			}
		}
		// Before anything was written the environment was empty.
		if got := read(begin); len(got) != 0 {
			t.Fatalf("at the start: %v", got)
		}

		// Roll back to change 20: the environment equals that snapshot, in new versions.
		r := s.must(http.StatusOK, "POST", envPath+"qa/rollback", s.owner, map[string]string{"at": moments[20].UTC().Format(time.RFC3339Nano)})
		if len(r.items()) == 0 {
			t.Fatalf("rollback changed nothing: %s", r.raw)
		}
		now := s.must(http.StatusOK, "GET", list+"?include=values&limit=100", s.owner, nil)
		got := state{}
		for _, it := range now.items() {
			got[str(it["name"])] = str(it["value"])
		}
		if show(got) != show(snapshots[20]) {
			t.Fatalf("after rollback: %s, want %s", show(got), show(snapshots[20]))
		}
		// The history is kept: the state before the rollback is still readable.
		if show(read(moments[49])) != show(snapshots[49]) {
			t.Fatal("the rollback rewrote history")
		}
		// Rolling back to where it already is changes nothing.
		if r := s.must(http.StatusOK, "POST", envPath+"qa/rollback", s.owner, map[string]string{"at": time.Now().UTC().Format(time.RFC3339Nano)}); len(r.items()) != 0 {
			t.Fatalf("a rollback to now: %s", r.raw)
		}

		// Times the environment has no state for, and malformed ones, are refused.
		for _, q := range []string{at(begin.Add(-time.Hour)), at(time.Now().Add(time.Hour)), "yesterday"} {
			if r := s.call("GET", list+"?at="+q, s.owner, nil); r.status != http.StatusUnprocessableEntity {
				t.Errorf("at=%s: %d %s", q, r.status, r.raw)
			}
		}
		if r := s.call("POST", envPath+"qa/rollback", s.owner, map[string]string{"at": time.Now().Add(time.Hour).Format(time.RFC3339)}); r.status != http.StatusUnprocessableEntity {
			t.Errorf("rollback to the future: %d", r.status)
		}
	})
}
