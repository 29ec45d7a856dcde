package main

import (
	"fmt"
	"io"
	"maps"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// stats are the percentiles of a set of latencies.
type stats struct {
	n                  int
	p50, p90, p99, max time.Duration
}

// percentiles sorts ds in place and reads the nearest-rank percentiles: pq is the smallest
// value with at least q of the samples at or below it. Every sample is kept (at most
// subscribers × writes, 200,000 by default), so nothing is approximated.
func percentiles(ds []time.Duration) stats {
	if len(ds) == 0 {
		return stats{}
	}
	slices.Sort(ds)
	at := func(q float64) time.Duration {
		// ceil(q·n) without floating-point surprises for the q used here.
		rank := (int(q*1000)*len(ds) + 999) / 1000
		return ds[max(rank, 1)-1]
	}
	return stats{n: len(ds), p50: at(0.50), p90: at(0.90), p99: at(0.99), max: ds[len(ds)-1]}
}

// verdict says whether r meets the target, and why not when it does not. Missing deliveries
// and streams the server ended fail the run however fast the rest was.
func (r result) verdict() (pass bool, why string) {
	var misses []string
	if r.fromCommit.p99 > targetP99 {
		misses = append(misses, fmt.Sprintf("p99 from commit %s (> %s)", ms(r.fromCommit.p99), targetP99))
	}
	if m := r.missing(); m > 0 {
		misses = append(misses, fmt.Sprintf("%d of %d deliveries missing", m, r.expected))
	}
	if n := sum(r.closed); n > 0 {
		misses = append(misses, fmt.Sprintf("%d streams ended early", n))
	}
	if r.duplicates > 0 || r.unexpected > 0 {
		misses = append(misses, fmt.Sprintf("%d duplicate and %d unexpected events", r.duplicates, r.unexpected))
	}
	if len(misses) > 0 {
		return false, strings.Join(misses, ", ")
	}
	return true, fmt.Sprintf("p99 from commit %s (≤ %s), all %d deliveries received", ms(r.fromCommit.p99), targetP99, r.expected)
}

func printTable(w io.Writer, o options, nofile uint64, results []result) {
	fmt.Fprintf(w, "\nEvent stream: %d WebSocket subscribers to %s/%s/%s; %d secret writes, one at a time, one every %s;\n",
		o.subscribers, tenantSlug, projectSlug, envSlug, o.writes, o.interval)
	fmt.Fprintf(w, "server in its own process (./cmd/server); subscribers and writer in this one (open-file limit %d)\n\n", nofile)
	fmt.Fprintf(w, "%-9s %-8s %11s %7s %9s %9s %8s %9s %9s %9s %9s\n",
		"dialect", "measure", "subscribers", "events", "expected", "received", "missing", "p50", "p90", "p99", "max")
	for _, r := range results {
		if r.err != nil {
			word := "not measured"
			if r.skipped {
				word = "skipped (Postgres unavailable)"
			}
			fmt.Fprintf(w, "%-9s %s: %v\n", r.dialect, word, r.err)
			continue
		}
		for _, m := range []struct {
			name string
			s    stats
		}{{"commit", r.fromCommit}, {"ack", r.fromAck}} {
			fmt.Fprintf(w, "%-9s %-8s %11d %7d %9d %9d %8d %9s %9s %9s %9s\n", r.dialect, m.name,
				r.subscribers, r.writes, r.expected, r.received, r.missing(), ms(m.s.p50), ms(m.s.p90), ms(m.s.p99), ms(m.s.max))
		}
	}
	fmt.Fprintf(w, "\ncommit: from the event's occurred_at (stamped by the server just before its transaction commits, same clock)\n"+
		"        to the subscriber reading the message.\n"+
		"ack:    from the PUT's response reaching the writer (the commit acknowledged) to the subscriber reading the\n"+
		"        message; negative when the event outran the HTTP response (the hub is told at commit, in parallel).\n"+
		"Both include this process's own scheduling of %d reader goroutines on the cores it shares with the server.\n\n", o.subscribers)
	for _, r := range results {
		if r.err != nil {
			continue
		}
		fmt.Fprintf(w, "%-9s subscribed in %s; %d writes in %.2fs (%.0f/s), PUT p50 %s p99 %s max %s",
			r.dialect, r.openTime.Round(time.Millisecond), r.writes, r.writeTime.Seconds(),
			float64(max(r.writes-1, 0))/max(r.writeTime.Seconds(), 1e-9), ms(r.put.p50), ms(r.put.p99), ms(r.put.max))
		if r.serverDropped >= 0 {
			fmt.Fprintf(w, "; server dropped %.0f slow subscribers", r.serverDropped)
		}
		fmt.Fprintln(w)
		fmt.Fprintf(w, "%-9s CPU over the %.2fs of writes and deliveries: this process %s", "",
			r.window.Seconds(), cores(r.cpuAfter.self-r.cpuBefore.self, r.window))
		if r.cpuBefore.serverOK && r.cpuAfter.serverOK {
			fmt.Fprintf(w, ", server %s", cores(r.cpuAfter.server-r.cpuBefore.server, r.window))
		}
		if r.load != "" {
			fmt.Fprintf(w, "; machine load average %s before the writes", r.load)
		}
		fmt.Fprintln(w)
		if r.worst.s.n > 0 {
			fmt.Fprintf(w, "%-9s slowest write: #%d, %.2fs in, PUT %s; its %d deliveries from commit p50 %s, max %s\n", "",
				r.worst.index, r.worst.at.Seconds(), ms(r.worst.put), r.worst.s.n, ms(r.worst.s.p50), ms(r.worst.s.max))
		}
		if r.duplicates > 0 || r.unexpected > 0 {
			fmt.Fprintf(w, "%-9s %d duplicate deliveries, %d events that were not this run's writes\n", "", r.duplicates, r.unexpected)
		}
		for _, why := range slices.Sorted(maps.Keys(r.closed)) {
			fmt.Fprintf(w, "%-9s %d streams ended before the end of the run: %s\n", "", r.closed[why], why)
		}
	}
	for _, r := range results {
		if l, err := strconv.ParseFloat(r.load, 64); err == nil && l > float64(runtime.NumCPU()) {
			fmt.Fprintf(w, "\nNote: the machine was busy before the writes (load average above its %d cores): other programs took\n"+
				"CPU from the server and the subscribers, so these latencies are pessimistic; rerun on a quiet machine.\n", runtime.NumCPU())
			break
		}
	}
	fmt.Fprintln(w)
	for _, r := range results {
		if r.err != nil {
			continue
		}
		pass, why := r.verdict()
		word := "MISS"
		if pass {
			word = "PASS"
		}
		fmt.Fprintf(w, "%-9s %s: %s\n", r.dialect, word, why)
	}
}

// cores is CPU time as seconds and as cores busy over the window.
func cores(cpu, window time.Duration) string {
	if window <= 0 {
		return fmt.Sprintf("%.2fs", cpu.Seconds())
	}
	return fmt.Sprintf("%.2fs (%.2f cores)", cpu.Seconds(), cpu.Seconds()/window.Seconds())
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// ms prints a duration in milliseconds, so every column shares one unit.
func ms(d time.Duration) string {
	return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
}
