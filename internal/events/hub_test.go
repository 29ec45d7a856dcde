package events_test

import (
	"context"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/cofferhq/coffer"
	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/events"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/store/storetest"
)

// write appends one audited change of tenant "t1" whose event is named n.
func write(ctx context.Context, st *store.Store, n int) error {
	e := audit.System.New(audit.ActionSecretWrite, "t1", "secret", "S", "t1/p/e/S", map[string]any{"version": n})
	e.Event = &coffer.Event{Type: audit.ActionSecretWrite, TenantID: "t1", ProjectID: "p", EnvironmentID: "e", Name: strconv.Itoa(n), Version: n}
	return st.AppendAudit(ctx, []audit.Entry{e})
}

// collect reads a subscription's events until it has seen the event named last.
func collect(t *testing.T, sub *events.Subscription, got []int, last int) []int {
	t.Helper()
	for len(got) == 0 || got[len(got)-1] != last {
		select {
		case batch := <-sub.Events():
			for _, ev := range batch.Events {
				n, _ := strconv.Atoi(ev.Name)
				got = append(got, n)
			}
		case <-sub.Done():
			t.Fatalf("subscription ended: %v", sub.Err())
		case <-time.After(20 * time.Second):
			t.Fatalf("no event %d; got up to %v", last, got[max(0, len(got)-3):])
		}
	}
	return got
}

// TestSubscribeWhileWriting subscribes, live and with a resume point, while another goroutine
// commits events: each subscription must see one contiguous, ordered run of them, with
// nothing missing and nothing twice, on the real store of each dialect.
func TestSubscribeWhileWriting(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			dbURL, dir := storetest.Database(t, d)
			st, err := store.Open(context.Background(), store.Options{URL: dbURL, SQLitePath: storetest.SQLitePath(dir)})
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if _, err := st.Migrate(ctx); err != nil {
				t.Fatal(err)
			}
			hub := events.NewHub(st, slog.New(slog.NewTextHandler(io.Discard, nil)), events.Options{Queue: 4096})
			st.OnEvents(func(tenants []string) {
				for _, id := range tenants {
					hub.Notify(id)
				}
			})
			var wg sync.WaitGroup
			defer wg.Wait()
			defer cancel()
			wg.Go(func() { hub.Run(ctx) })

			const before, during = 50, 300
			for n := 1; n <= before; n++ {
				if err := write(ctx, st, n); err != nil {
					t.Fatal(err)
				}
			}
			evs, err := st.EventsAfter(ctx, "t1", 0, 100)
			if err != nil || len(evs) != before {
				t.Fatalf("stored events: %d, %v", len(evs), err)
			}
			resumeAfter := evs[24].ID // the 25th

			writeErr := make(chan error, 1)
			go func() {
				for n := before + 1; n <= before+during; n++ {
					if err := write(ctx, st, n); err != nil {
						writeErr <- err
						return
					}
				}
				writeErr <- nil
			}()
			time.Sleep(10 * time.Millisecond) // let some of the writes land first

			if err := hub.Resumable(ctx, "t1", resumeAfter); err != nil {
				t.Fatal(err)
			}
			resumed, err := hub.Subscribe(ctx, "t1", &resumeAfter)
			if err != nil {
				t.Fatal(err)
			}
			var got []int
			if err := resumed.Replay(ctx, func(ev coffer.Event) error {
				n, _ := strconv.Atoi(ev.Name)
				got = append(got, n)
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			live, err := hub.Subscribe(ctx, "t1", nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := <-writeErr; err != nil {
				t.Fatal(err)
			}
			got = collect(t, resumed, got, before+during)
			for i, n := range got {
				if n != 26+i {
					t.Fatalf("resumed subscription: event %d is %d (around %v)", i, n, got[max(0, i-2):min(len(got), i+3)])
				}
			}
			if len(got) != before+during-25 {
				t.Fatalf("resumed subscription: %d events, want %d", len(got), before+during-25)
			}
			tail := collect(t, live, nil, before+during)
			for i := 1; i < len(tail); i++ {
				if tail[i] != tail[i-1]+1 {
					t.Fatalf("live subscription: %d after %d", tail[i], tail[i-1])
				}
			}

			// Retention keeps the newest 100: a resume from before them is a reset, from the
			// newest it is fine, from an id never issued a reset.
			if n, err := st.PruneEvents(ctx, time.Hour, 100); err != nil || n != before+during-100 {
				t.Fatalf("prune: %d, %v", n, err)
			}
			_, newest, err := st.EventBounds(ctx, "t1")
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range []struct {
				after int64
				want  error
			}{{resumeAfter, events.ErrReset}, {newest, nil}, {newest + 1, events.ErrReset}, {0, events.ErrReset}} {
				if err := hub.Resumable(ctx, "t1", c.after); err != c.want {
					t.Fatalf("resume after %d: %v, want %v", c.after, err, c.want)
				}
			}
		})
	}
}
