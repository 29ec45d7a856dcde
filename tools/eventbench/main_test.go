package main

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
	"time"
)

// TestRunSQLite runs the whole benchmark briefly: build, child server, subscribers, writes
// and the report.
func TestRunSQLite(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts the server")
	}
	var out bytes.Buffer
	args := []string{"-dialects", "sqlite", "-subscribers", "5", "-writes", "5", "-interval", "10ms", "-drain", "5s"}
	if err := run(context.Background(), args, &out, io.Discard); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	for _, want := range []string{"sqlite    commit", "sqlite    ack", "sqlite    PASS"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestParseFlags(t *testing.T) {
	o, err := parseFlags(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.subscribers != 1000 || o.writes != 200 || o.interval != 20*time.Millisecond || o.dialConcurrency != 50 ||
		strings.Join(o.dialects, ",") != "sqlite,postgres" {
		t.Errorf("defaults = %+v", o)
	}
	o, err = parseFlags([]string{"-rate", "100", "-dialects", " postgres ", "-subscribers", "3"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.interval != 10*time.Millisecond || len(o.dialects) != 1 || o.dialects[0] != postgres || o.subscribers != 3 {
		t.Errorf("-rate 100 -dialects postgres -subscribers 3 = %+v", o)
	}
}

func TestParseFlagsRejects(t *testing.T) {
	for _, args := range [][]string{
		{"-dialects", "mysql"},
		{"-dialects", ""},
		{"-subscribers", "0"},
		{"-writes", "0"},
		{"-writes", "100000"},
		{"-interval", "-1ms"},
		{"-rate", "-5"},
		{"-drain", "0s"},
		{"-dial-concurrency", "0"},
		{"extra"},
	} {
		if _, err := parseFlags(args, io.Discard); err == nil {
			t.Errorf("parseFlags(%q) accepted", args)
		}
	}
}

func TestPercentiles(t *testing.T) {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	// 1..100 ms shuffled, with a negative one: nearest rank picks the value itself.
	var ds []time.Duration
	for i := 100; i >= 1; i-- {
		ds = append(ds, ms(i))
	}
	tests := []struct {
		name string
		in   []time.Duration
		want stats
	}{
		{"empty", nil, stats{}},
		{"one", []time.Duration{ms(7)}, stats{n: 1, p50: ms(7), p90: ms(7), p99: ms(7), max: ms(7)}},
		{"1 to 100", ds, stats{n: 100, p50: ms(50), p90: ms(90), p99: ms(99), max: ms(100)}},
		{"negative", []time.Duration{ms(3), -ms(2), ms(1), ms(2)}, stats{n: 4, p50: ms(1), p90: ms(3), p99: ms(3), max: ms(3)}},
		{"tail of 1,000", tail(1000, 11), stats{n: 1000, p50: ms(1), p90: ms(1), p99: ms(500), max: ms(500)}},
		{"tail of 1,000, 10 slow", tail(1000, 10), stats{n: 1000, p50: ms(1), p90: ms(1), p99: ms(1), max: ms(500)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := percentiles(tt.in); got != tt.want {
				t.Errorf("percentiles() = %+v, want %+v", got, tt.want)
			}
		})
	}
}

// tail is n samples of 1 ms of which the last slow are 500 ms.
func tail(n, slow int) []time.Duration {
	ds := make([]time.Duration, n)
	for i := range ds {
		ds[i] = time.Millisecond
		if i >= n-slow {
			ds[i] = 500 * time.Millisecond
		}
	}
	return ds
}

func TestVerdict(t *testing.T) {
	fast := stats{n: 10, p99: 40 * time.Millisecond}
	tests := []struct {
		name string
		r    result
		pass bool
		why  string
	}{
		{"meets", result{expected: 10, received: 10, fromCommit: fast}, true, "all 10 deliveries"},
		{"at the target", result{expected: 10, received: 10, fromCommit: stats{p99: targetP99}}, true, "p99 from commit 100.00ms"},
		{"tail too long", result{expected: 10, received: 10, fromCommit: stats{p99: targetP99 + time.Millisecond}}, false, "(> 100ms)"},
		{"missing", result{expected: 10, received: 7, fromCommit: fast}, false, "3 of 10 deliveries missing"},
		{"dropped", result{expected: 10, received: 10, fromCommit: fast, closed: map[string]int{"1013": 2}}, false, "2 streams ended early"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pass, why := tt.r.verdict()
			if pass != tt.pass || !strings.Contains(why, tt.why) {
				t.Errorf("verdict() = %v, %q; want %v and a reason containing %q", pass, why, tt.pass, tt.why)
			}
		})
	}
}

func TestWriteIndex(t *testing.T) {
	for i, want := range map[string]int{secretName(0): 0, secretName(199): 199, secretName(200): -1, "OTHER_00001": -1, namePrefix + "x0001": -1} {
		if got := writeIndex(i, 200); got != want {
			t.Errorf("writeIndex(%q) = %d, want %d", i, got, want)
		}
	}
}
