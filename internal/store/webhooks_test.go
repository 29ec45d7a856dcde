package store_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cofferhq/coffer"
	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/webhook"
)

// TestWebhookDispatchAndClaim: a webhook is sent its project's events of its types from its
// creation on, each once; claims made at once never share a delivery (FOR UPDATE SKIP LOCKED
// on Postgres), and only the claim's holder records an attempt.
func TestWebhookDispatchAndClaim(t *testing.T) {
	forEachDialect(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		for _, q := range []string{
			`INSERT INTO tenants (id, slug, name, created_at, updated_at) VALUES ('t1', 'acme', 'Acme', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)`,
			`INSERT INTO projects (id, tenant_id, slug, name, created_at, updated_at) VALUES ('p1', 't1', 'web', 'Web', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)`,
			`INSERT INTO projects (id, tenant_id, slug, name, created_at, updated_at) VALUES ('p2', 't1', 'api', 'API', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)`,
		} {
			if err := st.ExecForTest(ctx, q); err != nil {
				t.Fatal(err)
			}
		}
		change := func(action, project, name string) {
			t.Helper()
			e := audit.System.New(action, "t1", "secret", name, "acme/"+project+"/"+name, nil)
			e.Event = &coffer.Event{Type: action, TenantID: "t1", ProjectID: project, Name: name, Version: 1}
			if err := st.AppendAudit(ctx, []audit.Entry{e}); err != nil {
				t.Fatal(err)
			}
		}
		change(audit.ActionSecretWrite, "p1", "BEFORE") // before the webhooks: never sent
		now := time.Now().UTC()
		for _, w := range []webhook.Webhook{
			{ID: "w1", TenantID: "t1", ProjectID: "p1", URL: "https://a.example.com", Events: []string{"secret.write"}, CreatedAt: now},
			{ID: "w2", TenantID: "t1", ProjectID: "p1", URL: "https://b.example.com", Events: []string{"*"}, CreatedAt: now},
		} {
			if err := st.CreateWebhook(ctx, w, []byte("sealed-"+w.ID), audit.System.New(audit.ActionWebhookCreate, "t1", "webhook", w.ID, "acme/web", nil)); err != nil {
				t.Fatal(err)
			}
		}
		change(audit.ActionSecretWrite, "p1", "A")
		change(audit.ActionSecretDelete, "p1", "B")
		change(audit.ActionSecretWrite, "p2", "C") // another project

		behind, err := st.WebhooksBehind(ctx)
		if slices.Sort(behind); err != nil || !slices.Equal(behind, []string{"w1", "w2"}) {
			t.Fatalf("WebhooksBehind = %v, %v", behind, err)
		}
		var names []string
		body := func(w webhook.Webhook, ev webhook.Event) ([]byte, error) {
			names = append(names, w.ID+":"+ev.Name+":"+ev.ProjectSlug)
			return webhook.Body(w, ev)
		}
		for _, id := range []string{"w1", "w2"} {
			if n, err := st.DispatchWebhook(ctx, id, 100, now, body); err != nil || n != 3 {
				t.Fatalf("dispatch %s: %d events read, %v", id, n, err)
			}
			if n, err := st.DispatchWebhook(ctx, id, 100, now, body); err != nil || n != 0 {
				t.Fatalf("dispatch %s again: %d events read, %v", id, n, err)
			}
		}
		if want := []string{"w1:A:web", "w2:A:web", "w2:B:web"}; !slices.Equal(names, want) {
			t.Fatalf("deliveries made for %v, want %v", names, want)
		}
		if behind, err := st.WebhooksBehind(ctx); err != nil || len(behind) != 0 {
			t.Fatalf("WebhooksBehind after dispatch = %v, %v", behind, err)
		}

		// Two claimers at once share nothing.
		var (
			mu     sync.Mutex
			claims []webhook.Claim
			wg     sync.WaitGroup
		)
		for range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				cs, err := st.ClaimDeliveries(ctx, time.Now().UTC(), time.Minute, 10, nil)
				if err != nil {
					t.Error(err)
				}
				mu.Lock()
				claims = append(claims, cs...)
				mu.Unlock()
			}()
		}
		wg.Wait()
		seen := map[string]bool{}
		for _, c := range claims {
			if seen[c.ID] {
				t.Fatalf("delivery %s claimed twice", c.ID)
			}
			seen[c.ID] = true
			if string(c.Sealed) != "sealed-"+c.WebhookID || c.URL == "" || len(c.Payload) == 0 {
				t.Fatalf("claim %+v", c)
			}
		}
		if len(claims) != 3 {
			t.Fatalf("%d deliveries claimed, want 3", len(claims))
		}
		if again, err := st.ClaimDeliveries(ctx, time.Now().UTC(), time.Minute, 10, nil); err != nil || len(again) != 0 {
			t.Fatalf("claimed deliveries claimed again: %v, %v", again, err)
		}

		// Only the claim's holder records.
		c := claims[0]
		lost := c
		lost.Token = "another"
		a := webhook.Attempt{At: time.Now().UTC(), StatusCode: 200, Duration: time.Millisecond}
		if err := st.RecordAttempt(ctx, lost, a, webhook.StatusDelivered, nil); err != nil {
			t.Fatal(err)
		}
		if err := st.RecordAttempt(ctx, c, a, webhook.StatusDelivered, nil); err != nil {
			t.Fatal(err)
		}
		ds, err := st.Deliveries(ctx, c.WebhookID, 0, 10)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range ds {
			if d.ID == c.ID && (d.Status != webhook.StatusDelivered || d.Attempts != 1 || d.LastStatus != 200 || d.NextAttemptAt != nil) {
				t.Fatalf("recorded delivery: %+v", d)
			}
		}
		// A released claim is due again at once, without an attempt counted.
		if err := st.ReleaseClaim(ctx, claims[1]); err != nil {
			t.Fatal(err)
		}
		again, err := st.ClaimDeliveries(ctx, time.Now().UTC().Add(time.Second), time.Minute, 10, nil)
		if err != nil || len(again) != 1 || again[0].ID != claims[1].ID || again[0].Attempts != 0 {
			t.Fatalf("after release: %+v, %v", again, err)
		}
	})
}
