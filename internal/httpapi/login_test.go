package httpapi

import (
	"testing"
	"time"
)

func TestFailureWindow(t *testing.T) {
	w := newFailureWindow(3, time.Minute)
	t0 := time.Unix(1_000_000, 0)
	for i := range 3 {
		if d := w.wait("k", t0.Add(time.Duration(i)*time.Second)); d != 0 {
			t.Fatalf("before failure %d: wait %v, want 0", i, d)
		}
		w.fail("k", t0.Add(time.Duration(i)*time.Second))
	}
	// The third failure fills the window: wait until the oldest (t0) leaves it.
	if d := w.wait("k", t0.Add(10*time.Second)); d != 50*time.Second {
		t.Errorf("wait = %v, want 50s", d)
	}
	if d := w.wait("other", t0.Add(10*time.Second)); d != 0 {
		t.Errorf("another key waits %v, want 0", d)
	}
	// Once the oldest failure is out of the window, one more attempt is allowed.
	if d := w.wait("k", t0.Add(time.Minute+time.Millisecond)); d != 0 {
		t.Errorf("after the window: wait %v, want 0", d)
	}
	at := t0.Add(60*time.Second + 500*time.Millisecond)
	w.fail("k", at)
	if d := w.wait("k", at); d != 500*time.Millisecond {
		t.Errorf("wait = %v, want 500ms (until the failure at t0+1s leaves)", d)
	}
	w.forget("k")
	if d := w.wait("k", at); d != 0 {
		t.Errorf("after forget: wait %v, want 0", d)
	}
}
