package webhook

import (
	"io"
	"log/slog"
	"testing"
	"time"
)

func TestRetryGivesUpAfterADay(t *testing.T) {
	d := NewDispatcher(nil, nil, NewGuard(false, nil), slog.New(slog.NewTextHandler(io.Discard, nil)), Options{})
	now := time.Now()
	fresh := Claim{Delivery: Delivery{EventAt: now.Add(-time.Minute), Attempts: 0}}
	status, next := d.retry(fresh, now)
	if status != StatusPending || next == nil || next.Sub(now) < 5*time.Second || next.Sub(now) > 10*time.Second {
		t.Fatalf("first failure: %s %v, want pending in 5-10s", status, next)
	}
	late := Claim{Delivery: Delivery{EventAt: now.Add(-23*time.Hour - 30*time.Minute), Attempts: 25}}
	if status, next := d.retry(late, now); status != StatusFailed || next != nil {
		t.Fatalf("a failure whose next attempt falls past 24h: %s %v, want failed", status, next)
	}
}

func TestBodyCarriesNoValue(t *testing.T) {
	ev := Event{TenantSlug: "acme", ProjectSlug: "web"}
	ev.ID, ev.Type, ev.TenantID, ev.ProjectID, ev.Name, ev.Version = 9, "secret.write", "t1", "p1", "DB_URL", 3
	b, err := Body(Webhook{}, ev)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":9,"type":"secret.write","occurred_at":"0001-01-01T00:00:00Z","tenant":{"id":"t1","slug":"acme"},"project":{"id":"p1","slug":"web"},"name":"DB_URL","version":3,"actor":{"type":"","id":""}}`
	if string(b) != want {
		t.Fatalf("body\n%s\nwant\n%s", b, want)
	}
}
