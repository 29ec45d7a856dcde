package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/store/storetest"
	"github.com/cofferhq/coffer/tools/internal/benchdb"
)

// TestMain lets the test binary play the client process: the benchmark re-executes its own
// binary, which under `go test` is this one.
func TestMain(m *testing.M) {
	if os.Getenv(clientEnv) == "1" {
		args := os.Args[1:]
		if len(args) > 0 && args[0] == clientFlag {
			args = args[1:]
		}
		os.Exit(clientMain(args))
	}
	os.Exit(m.Run())
}

// tiny is a whole run at the smallest size that still exercises every step.
var tiny = []string{
	"-duration", "300ms", "-warmup", "100ms", "-connections", "4",
	"-reseal-secrets", "20", "-reseal-versions", "4", "-reseal-connections", "2",
}

// TestRunSQLite runs the whole benchmark briefly on SQLite: KMS test server, server starts
// with and without the key cache, seeding, checked reads, client processes, a reseal with and
// without reads, the checks after it, and the report.
func TestRunSQLite(t *testing.T) {
	out := runTiny(t, "-dialects", "sqlite", "-reseal-dialects", "sqlite", "-reseal-baseline", "-reseal-batches", "7,1000")
	for _, row := range [][]string{
		{"sqlite", "warm"}, {"sqlite", "disabled"}, {"warm/disabled"},
		{"sqlite", "7", "no", "80"}, {"sqlite", "7", "yes", "80"}, {"sqlite", "1000", "yes", "80"},
	} {
		if !hasRow(out, row...) {
			t.Errorf("output lacks a row starting %q:\n%s", row, out)
		}
	}
	if !strings.Contains(out, "the target is checked on postgres") {
		t.Errorf("output does not say where the target is checked:\n%s", out)
	}
	if strings.Contains(out, "not measured") {
		t.Errorf("something was not measured:\n%s", out)
	}
}

// TestResealPostgres covers what only Postgres does: the direct seeding and the vacuum.
func TestResealPostgres(t *testing.T) {
	db, err := benchdb.Create(t.Context(), storetest.AdminURL(), "coffer_keybench_")
	if err != nil {
		storetest.Skip(t, "postgres is not usable: %v", err)
	}
	if err := db.Drop(); err != nil {
		t.Fatal(err)
	}
	out := runTiny(t, "-dialects", "", "-reseal-dialects", "postgres", "-postgres-url", storetest.AdminURL())
	if !hasRow(out, "postgres", "1000", "yes", "80") {
		t.Errorf("output lacks the reseal of 80 versions:\n%s", out)
	}
}

func runTiny(t *testing.T, args ...string) string {
	t.Helper()
	var out bytes.Buffer
	if err := run(context.Background(), append(append([]string{}, tiny...), args...), &out, io.Discard); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	return out.String()
}

// hasRow reports whether a line of out begins with these fields.
func hasRow(out string, fields ...string) bool {
	for line := range strings.SplitSeq(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= len(fields) && slices.Equal(f[:len(fields)], fields) {
			return true
		}
	}
	return false
}

func TestParseFlagsRejects(t *testing.T) {
	for _, args := range [][]string{
		{"-dialects", "mysql"},
		{"-reseal-dialects", "sqlite,oracle"},
		{"-duration", "0s"},
		{"-connections", "0"},
		{"-reseal-batches", "0"},
		{"-reseal-batches", "10001"},
		{"-reseal-secrets", "1001"},
		{"-seed", "magic"},
		{"extra"},
	} {
		if _, err := parseFlags(args, io.Discard); err == nil {
			t.Errorf("parseFlags(%q) accepted", args)
		}
	}
}
