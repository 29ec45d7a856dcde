package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/cofferhq/coffer/internal/loadgen"
)

// generateMode is the hidden first argument that makes this binary the fallback load
// generator: it runs internal/loadgen against one URL, or a list of paths in turn, and
// prints the result as JSON.
const generateMode = "-generate"

// authEnv carries the Authorization header to the generator child, so the token is not on
// a command line other users could read (wrk has no other way, and gets it with -H).
const authEnv = "LOADBENCH_AUTHORIZATION"

// loadResult is one measured load, whichever generator produced it.
type loadResult struct {
	Requests int64 // completed requests in the measured window (wrk counts non-2xx too)
	Errors   int64 // non-2xx responses plus socket errors and timeouts
	RPS      float64
	P50      time.Duration
	P90      time.Duration
	P99      time.Duration
}

// roundRobin is a load over many paths read in turn, written once into files the generator
// processes read: a wrk script and, for this program's own generator, the list of paths
// (too long for a command line at 10,000 environments).
type roundRobin struct {
	script    string // wrk Lua script (wrk -s); it holds the Authorization header
	pathsFile string // one path per line
}

// writeRoundRobin writes the files of a round-robin load over paths into dir, readable by
// this user only since the script holds the token.
func writeRoundRobin(dir string, paths []string, authorization string) (*roundRobin, error) {
	rr := &roundRobin{script: filepath.Join(dir, "round-robin.lua"), pathsFile: filepath.Join(dir, "paths.txt")}
	if err := os.WriteFile(rr.script, wrkScript(paths, authorization), 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(rr.pathsFile, []byte(strings.Join(paths, "\n")+"\n"), 0o600); err != nil {
		return nil, err
	}
	return rr, nil
}

// wrkScript is a wrk Lua script that sends GET for each of paths in turn with the
// Authorization header. The requests are formatted once per thread in init, as wrk's
// documentation advises, and each thread starts at its own place in the list so that two
// threads do not read the same environment at the same moment.
func wrkScript(paths []string, authorization string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "-- Written by loadbench: GET each of %d paths in turn.\n", len(paths))
	b.WriteString("local paths = {\n")
	for _, p := range paths {
		fmt.Fprintf(&b, "  %s,\n", luaString(p))
	}
	b.WriteString("}\n")
	fmt.Fprintf(&b, "local headers = { [\"Authorization\"] = %s }\n", luaString(authorization))
	b.WriteString(`local requests = {}
local n = 0

-- setup runs in wrk's main state, once per thread before the thread's init; the thread's
-- starting point is set as a global there. The golden-ratio stride keeps any number of
-- threads well apart in the list without knowing how many there are.
local threads = 0
function setup(thread)
  thread:set("first", math.floor(threads * 0.6180339887 * #paths) % #paths)
  threads = threads + 1
end

function init(args)
  for i, p in ipairs(paths) do
    requests[i] = wrk.format("GET", p, headers)
  end
  n = first or 0
end

function request()
  n = n % #requests + 1
  return requests[n]
end
`)
	return []byte(b.String())
}

// luaString quotes s as a Lua string literal: printable ASCII as it is, everything else as
// a decimal escape, which every Lua (wrk uses LuaJIT) reads the same way.
func luaString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := range len(s) {
		c := s[i]
		if c >= 0x20 && c < 0x7f && c != '"' && c != '\\' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "\\%03d", c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// drive runs one warm-up and one measured load with the chosen generator, in a separate
// process, and returns the measured part. The load reads url, or with rr its paths in turn
// on url's scheme and host.
func drive(ctx context.Context, o options, self, url, authorization string, rr *roundRobin, stderr io.Writer) (loadResult, error) {
	if o.generator == genWrk {
		return driveWrk(ctx, o, url, authorization, rr, stderr)
	}
	args := []string{generateMode,
		"-url", url,
		"-connections", strconv.Itoa(o.connections),
		"-duration", o.duration.String(),
		"-warmup", o.warmup.String()}
	if rr != nil {
		args = append(args, "-paths-file", rr.pathsFile)
	}
	cmd := exec.CommandContext(ctx, self, args...)
	cmd.Env = append(childEnv(), authEnv+"="+authorization)
	cmd.Stderr = stderr
	out, err := cmd.Output()
	if err != nil {
		return loadResult{}, fmt.Errorf("load generator: %w", err)
	}
	var r loadResult
	if err := json.Unmarshal(out, &r); err != nil {
		return loadResult{}, fmt.Errorf("load generator output: %w", err)
	}
	return r, nil
}

// driveWrk runs wrk twice: once for the warm-up, whose output is discarded, then for the
// measured window with --latency for the percentiles. wrk counts in whole seconds. With rr,
// its script makes the requests, header included.
func driveWrk(ctx context.Context, o options, url, authorization string, rr *roundRobin, stderr io.Writer) (loadResult, error) {
	wrk := func(d time.Duration, latency bool) ([]byte, error) {
		args := []string{
			"-t", strconv.Itoa(o.threads),
			"-c", strconv.Itoa(o.connections),
			"-d", wrkSeconds(d),
			"--timeout", "10s",
		}
		if rr != nil {
			args = append(args, "-s", rr.script)
		} else {
			args = append(args, "-H", "Authorization: "+authorization)
		}
		if latency {
			args = append(args, "--latency")
		}
		cmd := exec.CommandContext(ctx, "wrk", append(args, url)...)
		cmd.Env = childEnv()
		cmd.Stderr = stderr
		out, err := cmd.Output()
		if err != nil {
			return out, fmt.Errorf("wrk: %w", err)
		}
		return out, nil
	}
	if o.warmup > 0 {
		if _, err := wrk(o.warmup, false); err != nil {
			return loadResult{}, err
		}
	}
	out, err := wrk(o.duration, true)
	if err != nil {
		return loadResult{}, err
	}
	r, err := parseWrk(out)
	if err != nil {
		return loadResult{}, fmt.Errorf("%w in wrk's output:\n%s", err, out)
	}
	return r, nil
}

// wrkSeconds is d rounded up to whole seconds, at least one, as wrk's -d wants it.
func wrkSeconds(d time.Duration) string {
	return strconv.Itoa(max(1, int(math.Ceil(d.Seconds())))) + "s"
}

// childEnv is this process's environment without GOMAXPROCS, so every child sizes its
// runtime to the machine as it would in production.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GOMAXPROCS=") {
			env = append(env, kv)
		}
	}
	return env
}

// parseWrk reads wrk's report (wrk 4.x with --latency): the Latency Distribution block,
// the "N requests in" line, socket errors, non-2xx responses and Requests/sec.
func parseWrk(out []byte) (loadResult, error) {
	var r loadResult
	var haveRPS, haveP50, haveP99, haveRequests bool
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		f := strings.Fields(line)
		switch {
		case len(f) == 2 && strings.HasSuffix(f[0], "%"):
			d, err := parseWrkDuration(f[1])
			if err != nil {
				return r, fmt.Errorf("latency %s: %w", f[0], err)
			}
			switch f[0] {
			case "50%", "50.000%":
				r.P50, haveP50 = d, true
			case "90%", "90.000%":
				r.P90 = d
			case "99%", "99.000%":
				r.P99, haveP99 = d, true
			}
		case len(f) >= 3 && f[1] == "requests" && f[2] == "in":
			n, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return r, fmt.Errorf("request count: %w", err)
			}
			r.Requests, haveRequests = n, true
		case strings.HasPrefix(line, "Socket errors:"):
			// Socket errors: connect 0, read 0, write 0, timeout 12
			for _, part := range strings.Split(strings.TrimPrefix(line, "Socket errors:"), ",") {
				kv := strings.Fields(part)
				if len(kv) != 2 {
					return r, fmt.Errorf("socket errors: cannot read %q", part)
				}
				n, err := strconv.ParseInt(kv[1], 10, 64)
				if err != nil {
					return r, fmt.Errorf("socket errors: %w", err)
				}
				r.Errors += n
			}
		case strings.HasPrefix(line, "Non-2xx or 3xx responses:"):
			n, err := strconv.ParseInt(strings.TrimSpace(strings.TrimPrefix(line, "Non-2xx or 3xx responses:")), 10, 64)
			if err != nil {
				return r, fmt.Errorf("non-2xx responses: %w", err)
			}
			r.Errors += n
		case strings.HasPrefix(line, "Requests/sec:"):
			v, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimPrefix(line, "Requests/sec:")), 64)
			if err != nil {
				return r, fmt.Errorf("requests/sec: %w", err)
			}
			r.RPS, haveRPS = v, true
		}
	}
	if !haveRPS || !haveP50 || !haveP99 || !haveRequests {
		return r, errors.New("no Requests/sec, request count or 50%/99% latency (was --latency given?)")
	}
	return r, nil
}

// parseWrkDuration reads wrk's latency format: a number followed by us, ms, s, m or h.
func parseWrkDuration(s string) (time.Duration, error) {
	units := []struct {
		suffix string
		unit   time.Duration
	}{{"us", time.Microsecond}, {"ms", time.Millisecond}, {"s", time.Second}, {"m", time.Minute}, {"h", time.Hour}}
	for _, u := range units {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			v, err := strconv.ParseFloat(num, 64)
			if err != nil {
				return 0, fmt.Errorf("duration %q: %w", s, err)
			}
			return time.Duration(v * float64(u.unit)), nil
		}
	}
	return 0, fmt.Errorf("duration %q: unknown unit", s)
}

// generate is the hidden generator mode: internal/loadgen against -url (or the paths of
// -paths-file in turn on its host), the result as JSON on stdout.
func generate(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("loadbench "+generateMode, flag.ContinueOnError)
	url := fs.String("url", "", "URL to load")
	pathsFile := fs.String("paths-file", "", "file of paths, one a line, to read in turn on -url's scheme and host")
	conns := fs.Int("connections", 64, "concurrent connections")
	duration := fs.Duration("duration", 10*time.Second, "measured time")
	warmup := fs.Duration("warmup", 2*time.Second, "unmeasured time before")
	if err := fs.Parse(args); err != nil {
		return err
	}
	header := http.Header{}
	if a := os.Getenv(authEnv); a != "" {
		header.Set("Authorization", a)
	}
	var paths []string
	if *pathsFile != "" {
		b, err := os.ReadFile(*pathsFile)
		if err != nil {
			return err
		}
		paths = strings.Fields(string(b))
	}
	res, err := loadgen.Run(ctx, loadgen.Options{
		URL:         *url,
		Paths:       paths,
		Header:      header,
		Connections: *conns,
		Duration:    *duration,
		Warmup:      *warmup,
	})
	if err != nil {
		return err
	}
	return json.NewEncoder(stdout).Encode(loadResult{
		Requests: res.Requests,
		Errors:   res.Errors,
		RPS:      res.RPS,
		P50:      res.P50,
		P90:      res.P90,
		P99:      res.P99,
	})
}
