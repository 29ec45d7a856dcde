package main

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/loadgen"
)

// TestRunSQLite runs the whole benchmark briefly: server start, seeding, the checked first
// read, both loads and the report.
func TestRunSQLite(t *testing.T) {
	var out bytes.Buffer
	args := []string{"-dialects", "sqlite", "-duration", "300ms", "-warmup", "100ms", "-connections", "4"}
	if err := run(context.Background(), args, &out, io.Discard); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	for _, want := range []string{"sqlite    coffer-read", "sqlite    bare-gin", "ratio", "checked on postgres"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestVerdict(t *testing.T) {
	tests := []struct {
		name   string
		coffer loadgen.Result
		pass   bool
		why    string
	}{
		{"meets both", loadgen.Result{RPS: 100, P99: 50 * time.Millisecond}, true, "10.0% of bare gin"},
		{"too slow", loadgen.Result{RPS: 99, P99: time.Millisecond}, false, "9.9% of bare gin (< 10%)"},
		{"tail too long", loadgen.Result{RPS: 500, P99: 51 * time.Millisecond}, false, "p99 51.00ms (> 50ms)"},
		{"failed reads", loadgen.Result{RPS: 500, P99: time.Millisecond, Errors: 3}, false, "3 failed reads"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := result{coffer: tt.coffer, bare: loadgen.Result{RPS: 1000}}
			pass, why := r.verdict()
			if pass != tt.pass || !strings.Contains(why, tt.why) {
				t.Errorf("verdict() = %v, %q; want %v and a reason containing %q", pass, why, tt.pass, tt.why)
			}
		})
	}
}

func TestParseFlagsRejects(t *testing.T) {
	for _, args := range [][]string{
		{"-dialects", "mysql"},
		{"-duration", "0s"},
		{"-connections", "0"},
		{"extra"},
	} {
		if _, err := parseFlags(args, io.Discard); err == nil {
			t.Errorf("parseFlags(%q) accepted", args)
		}
	}
}
