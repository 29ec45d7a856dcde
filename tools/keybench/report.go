package main

import (
	"fmt"
	"io"
)

func printReads(w io.Writer, o options, results []readResult) {
	fmt.Fprintf(w, "\nReads: GET one environment of %d secrets ?include=values; %d connections, %s measured after %s warm-up;\n",
		readSecrets, o.connections, o.duration, o.warmup)
	fmt.Fprintf(w, "key-encryption key in AWS KMS (the KMS test server over HTTP, %s added latency); load from a separate client process\n\n", o.kmsLatency)
	fmt.Fprintf(w, "%-9s %-15s %9s %9s %9s %8s %13s %10s\n", "dialect", "data-key cache", "req/s", "p50", "p99", "errors", "KMS Decrypt", "per read")
	for _, r := range results {
		if r.err != nil {
			fmt.Fprintf(w, "%-9s not measured: %v\n", r.dialect, r.err)
			continue
		}
		for _, run := range []struct {
			mode string
			r    readRun
		}{{"warm", r.warm}, {"disabled", r.cold}} {
			fmt.Fprintf(w, "%-9s %-15s %9.0f %9s %9s %8d %13d %10.3f\n", r.dialect, run.mode,
				run.r.res.RPS, ms(run.r.res.P50), ms(run.r.res.P99), run.r.res.Errors, run.r.decrypts, run.r.decryptsPerRead())
		}
		fmt.Fprintf(w, "%-9s %-15s %8.2fx   (KMS Decrypt calls in the whole disabled run, warm-up included: %d)\n",
			"", "warm/disabled", r.ratio(), r.cold.total)
	}
	for _, r := range results {
		if r.err == nil && r.cold.res.Requests > 0 && r.cold.decryptsPerRead() < 0.95 {
			fmt.Fprintf(w, "\nNote: with the cache disabled each read still misses, but concurrent misses for one data key share a\n"+
				"single unwrap (the cache's singleflight), so fewer Decrypt calls than reads reach KMS: see \"per read\".\n")
			break
		}
	}
}

func printReseals(w io.Writer, o options, results []resealResult) {
	total := o.resealSecrets * o.resealVersions
	fmt.Fprintf(w, "\nReseal (POST …/keys/rotate) of one environment: %d secrets × %d versions = %d versions;\n",
		o.resealSecrets, o.resealVersions, total)
	fmt.Fprintf(w, "time from the job's created_at to finished_at; reads of the environment's first page (?include=values,\n"+
		"%d secrets) on %d connections", min(readSecrets, o.resealSecrets), o.resealConnections)
	fmt.Fprintf(w, " from a separate client process throughout;\non Postgres the tables are vacuumed and analysed before each reseal\n\n")
	fmt.Fprintf(w, "%-9s %6s %-6s %9s %9s %11s %11s %9s %10s %12s\n",
		"dialect", "batch", "reads", "versions", "seconds", "versions/s", "server CPU", "reads/s", "read p99", "read errors")
	for _, r := range results {
		reads := "no"
		if r.withReads {
			reads = "yes"
		}
		if r.err != nil {
			fmt.Fprintf(w, "%-9s %6d %-6s not measured: %v\n", r.dialect, r.batch, reads, r.err)
			continue
		}
		readCols := fmt.Sprintf("%9s %10s %12s", "-", "-", "-")
		if r.withReads {
			readCols = fmt.Sprintf("%9.0f %10s %12d", r.reads.RPS, ms(r.reads.P99), r.reads.Errors)
		}
		fmt.Fprintf(w, "%-9s %6d %-6s %9d %9.2f %11.0f %10.1fs %s\n", r.dialect, r.batch, reads, r.versions,
			r.elapsed.Seconds(), r.rate(), r.cpu.Seconds(), readCols)
	}
	fmt.Fprintln(w)
	for _, r := range results {
		if r.err != nil || !r.withReads {
			continue
		}
		cmp := "<"
		if r.rate() >= targetResealRate {
			cmp = "≥"
		}
		word := "MISS"
		if cmp == "≥" && r.reads.Errors == 0 {
			word = "PASS"
		}
		note := ""
		if r.reads.Errors > 0 {
			note = fmt.Sprintf(", %d failed reads", r.reads.Errors)
		}
		if r.dialect != postgres {
			note += " [shown for comparison; the target is checked on postgres]"
		}
		fmt.Fprintf(w, "%-9s %s: batch %d: %.0f versions/s with reads continuing (%s %d)%s\n",
			r.dialect, word, r.batch, r.rate(), cmp, targetResealRate, note)
	}
	fmt.Fprintln(w)
}
