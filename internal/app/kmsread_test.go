package app_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/cofferhq/coffer/internal/crypto/awskms/kmstest"
	"github.com/cofferhq/coffer/internal/store/storetest"
)

// kmsDeployment is a server on a fresh database wrapping its data keys under a new key on its
// own test KMS, with project "web" and the same secrets written through it into each of the
// given environments, and a second replica on the same database whose key cache is still cold.
type kmsDeployment struct {
	deployment
	kms     *kmstest.Running
	key     string  // the platform KMS key ARN
	writer  *server // the replica that wrote the secrets: it holds their environments' keys
	cold    *server // a replica that has not unwrapped any data key yet
	secrets [][2]string
	values  map[string]string // secret name → value
}

func newKMSDeployment(t *testing.T, dialect string, secrets int, envs ...string) kmsDeployment {
	t.Helper()
	k := kmstest.Start(t)
	d := kmsDeployment{deployment: newDeployment(t, dialect), kms: k, key: k.CreateKey(), values: map[string]string{}}
	d.writer = d.start(t, kmsEnv(k, d.key))
	d.writer.withProject()
	var list []map[string]any
	for i := range secrets {
		name, value := "S_"+itoa(i), "value-"+itoa(i)+"-do-not-leak"
		d.secrets = append(d.secrets, [2]string{name, value})
		d.values[name] = value
		list = append(list, map[string]any{"name": name, "value": value})
	}
	for _, env := range envs {
		d.writer.must(http.StatusOK, "PATCH", envPath+env+"/secrets", d.writer.owner, map[string]any{"secrets": list})
	}
	d.cold = d.start(t, kmsEnv(k, d.key))
	// The first use of a token on a replica records last-used; keep it out of what follows.
	d.cold.must(http.StatusOK, "GET", "/api/v1/me", d.cold.owner, nil)
	return d
}

// readAll reveals an environment on s and fails unless every secret comes back with its value.
func (d kmsDeployment) readAll(s *server, env string) {
	s.t.Helper()
	res := s.must(http.StatusOK, "GET", envPath+env+"/secrets?include=values&limit=1000", s.owner, nil)
	if err := d.checkListing(res.raw); err != nil {
		s.t.Fatalf("%s: %v", env, err)
	}
}

// checkListing returns an error unless body lists every secret, each with its own value.
func (d kmsDeployment) checkListing(body []byte) error {
	var page struct {
		Items []struct{ Name, Value string }
	}
	if err := json.Unmarshal(body, &page); err != nil {
		return fmt.Errorf("listing is not JSON: %w: %.200s", err, body)
	}
	if len(page.Items) != len(d.values) {
		return fmt.Errorf("%d secrets listed, want %d", len(page.Items), len(d.values))
	}
	for _, it := range page.Items {
		if want, ok := d.values[it.Name]; !ok || it.Value != want {
			return fmt.Errorf("%s listed with value %q, want %q", it.Name, it.Value, want)
		}
	}
	return nil
}

// leaks reports the secret values that appear in raw.
func (d kmsDeployment) leaks(raw []byte) []string {
	var out []string
	for _, sv := range d.secrets {
		if strings.Contains(string(raw), sv[1]) {
			out = append(out, sv[1])
		}
	}
	return out
}

// unavailable checks a 503 key failure: the unavailable code, Retry-After, a message
// holding every part, and no secret value.
func (d kmsDeployment) unavailable(t *testing.T, what string, r response, parts ...string) {
	t.Helper()
	if r.status != http.StatusServiceUnavailable || r.errCode() != "unavailable" || r.header.Get("Retry-After") == "" {
		t.Errorf("%s: status %d code %q Retry-After %q, want 503 unavailable with Retry-After: %s",
			what, r.status, r.errCode(), r.header.Get("Retry-After"), r.raw)
	}
	e, _ := r.body["error"].(map[string]any)
	msg, _ := e["message"].(string)
	for _, p := range parts {
		if !strings.Contains(msg, p) {
			t.Errorf("%s: message %q does not say %q", what, msg, p)
		}
	}
	if l := d.leaks(r.raw); len(l) > 0 {
		t.Errorf("%s: the answer holds secret values %v", what, l)
	}
}

// TestKMSReadsUnwrapOnce: ten thousand values of one environment read concurrently from a
// replica with a cold cache, through listings and single reads, cost exactly one KMS Decrypt
// and no other KMS call. Every request looks the data key up once, whatever number of values
// it opens, so the listings carry most of the values and the request count stays small enough
// for SQLite under -race.
func TestKMSReadsUnwrapOnce(t *testing.T) {
	isolateAWS(t)
	for _, dialect := range storetest.Dialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			// Each secret is read once on its own and 99 times in listings: 10,000 values.
			const secrets, listings, workers = 100, 99, 8
			d := newKMSDeployment(t, dialect, secrets, "development")
			r := d.cold
			d.kms.Reset()

			var (
				wg       sync.WaitGroup
				mu       sync.Mutex
				values   int
				failures []string
			)
			report := func(n int, failure string) {
				mu.Lock()
				defer mu.Unlock()
				values += n
				if failure != "" && len(failures) < 5 {
					failures = append(failures, failure)
				}
			}
			// Every worker waits at the gate so that the first reads all miss the cold cache
			// together.
			gate := make(chan struct{})
			for w := range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-gate
					for i := w; i < listings+secrets; i += workers {
						if i < listings {
							status, body, err := get(r, envPath+"development/secrets?include=values&limit=1000")
							if err == nil && status != http.StatusOK {
								err = fmt.Errorf("status %d: %.200s", status, body)
							}
							if err == nil {
								err = d.checkListing(body)
							}
							if err != nil {
								report(0, fmt.Sprintf("listing %d: %v", i, err))
								continue
							}
							report(secrets, "")
							continue
						}
						sv := d.secrets[i-listings]
						status, body, err := get(r, envPath+"development/secrets/"+sv[0])
						var got struct{ Name, Value string }
						if err == nil {
							err = json.Unmarshal(body, &got)
						}
						if err != nil || status != http.StatusOK || got.Name != sv[0] || got.Value != sv[1] {
							report(0, fmt.Sprintf("read of %s: status %d, err %v: %.200s", sv[0], status, err, body))
							continue
						}
						report(1, "")
					}
				}()
			}
			close(gate)
			wg.Wait()
			for _, f := range failures {
				t.Error(f)
			}
			if values != 10000 {
				t.Errorf("%d values read, want 10000", values)
			}
			if n := d.kms.Count("Decrypt"); n != 1 {
				t.Errorf("%d values read on a cold replica made %d KMS Decrypt calls, want 1", values, n)
			}
			for _, op := range []string{"GenerateDataKey", "Encrypt", "DescribeKey"} {
				if n := d.kms.Count(op); n != 0 {
					t.Errorf("reads made %d KMS %s calls, want none", n, op)
				}
			}
		})
	}
}

// TestKMSOutage: with KMS unreachable, an environment whose data key is cached keeps being
// read without a single KMS request; one whose key is not cached answers 503 saying the
// key-encryption key is unavailable, with no value; creating a project, which needs new data
// keys, answers 503 and stores nothing; /readyz reports the outage while it lasts. When KMS
// is back, everything works without a restart.
func TestKMSOutage(t *testing.T) {
	isolateAWS(t)
	for _, dialect := range storetest.Dialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			d := newKMSDeployment(t, dialect, 3, "development", "staging")
			r := d.cold
			d.readAll(r, "development")
			r.must(http.StatusOK, "GET", "/readyz", "", nil)

			d.kms.SetOutage(true)
			d.kms.Reset()
			d.readAll(r, "development")
			r.must(http.StatusOK, "GET", envPath+"development/secrets/S_1", r.owner, nil)
			if n := d.kms.Count("Decrypt"); n != 0 {
				t.Errorf("reads of a cached environment sent %d Decrypt requests to KMS", n)
			}
			d.unavailable(t, "uncached listing", r.call("GET", envPath+"staging/secrets?include=values", r.owner, nil),
				"key-encryption key is unavailable", "nothing was read or written")
			d.unavailable(t, "uncached secret", r.call("GET", envPath+"staging/secrets/S_0", r.owner, nil),
				"key-encryption key is unavailable", "nothing was read or written")
			if d.kms.Count("Decrypt") == 0 {
				t.Error("the uncached reads never asked KMS")
			}

			db := r.rawDB()
			before := dbSnapshot(t, dialect, db)
			d.unavailable(t, "project creation", r.call("POST", "/api/v1/tenants/default/projects", r.owner, map[string]string{"slug": "api", "name": "API"}),
				"key-encryption key is unavailable", "no data key was made")
			sameSnapshot(t, "a project creation during the outage", before, dbSnapshot(t, dialect, db))
			d.unavailable(t, "/readyz", r.call("GET", "/readyz", "", nil), "key-encryption key is unavailable")

			d.kms.SetOutage(false)
			r.must(http.StatusOK, "GET", "/readyz", "", nil)
			d.readAll(r, "staging")
			r.must(http.StatusCreated, "POST", "/api/v1/tenants/default/projects", r.owner, map[string]string{"slug": "api", "name": "API"})
		})
	}
}

// TestKMSDisabledKey: with the platform KMS key disabled, an uncached read or write answers
// 503 giving the reason ("disabled") but not the key's ARN, which names the operator's cloud
// account; the ARN is in the server log for the operator. An environment whose data key is
// cached keeps working for reads and writes alike: values are sealed with the data key, and
// only loading that key needs KMS, so until the cache lets the key go (at most five minutes)
// disabling the KMS key does not stop that environment. Re-enabling the key is enough.
func TestKMSDisabledKey(t *testing.T) {
	isolateAWS(t)
	for _, dialect := range storetest.Dialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			d := newKMSDeployment(t, dialect, 3, "development", "staging")
			r := d.cold
			d.readAll(r, "development")
			if err := d.kms.DisableKey(d.key); err != nil {
				t.Fatal(err)
			}

			keyUUID := d.key[strings.LastIndex(d.key, "/")+1:]
			hidesKey := func(what string, res response) {
				t.Helper()
				if strings.Contains(string(res.raw), keyUUID) || strings.Contains(string(res.raw), "arn:") {
					t.Errorf("%s: the answer names the platform key: %s", what, res.raw)
				}
			}
			for _, c := range []struct {
				what, method, path string
				body               any
			}{
				{"uncached listing", "GET", envPath + "staging/secrets?include=values", nil},
				{"uncached secret", "GET", envPath + "staging/secrets/S_0", nil},
				{"write to an uncached environment", "PUT", envPath + "staging/secrets/NEW", map[string]string{"value": "refused"}},
				{"project creation", "POST", "/api/v1/tenants/default/projects", map[string]string{"slug": "api", "name": "API"}},
			} {
				res := r.call(c.method, c.path, r.owner, c.body)
				d.unavailable(t, c.what, res, "key-encryption key is unavailable (disabled)")
				hidesKey(c.what, res)
			}
			ready := r.call("GET", "/readyz", "", nil)
			d.unavailable(t, "/readyz", ready, "key-encryption key is unavailable")
			hidesKey("/readyz", ready)
			if !strings.Contains(r.logs.String(), d.key) {
				t.Error("the server log does not name the disabled key for the operator")
			}

			d.readAll(r, "development")
			r.must(http.StatusCreated, "PUT", envPath+"development/secrets/NEW", r.owner, map[string]string{"value": "sealed-with-the-cached-key"})
			if got := r.must(http.StatusOK, "GET", envPath+"development/secrets/NEW", r.owner, nil).body["value"]; got != "sealed-with-the-cached-key" {
				t.Errorf("a value written while the key was disabled reads %v", got)
			}
			if n := len(r.must(http.StatusOK, "GET", envPath+"staging/secrets?include=deleted", r.owner, nil).items()); n != len(d.secrets) {
				t.Errorf("staging lists %d secrets after a refused write, want %d", n, len(d.secrets))
			}

			if err := d.kms.EnableKey(d.key); err != nil {
				t.Fatal(err)
			}
			r.must(http.StatusOK, "GET", "/readyz", "", nil)
			d.readAll(r, "staging")
		})
	}
}

// get reads path with the owner's token; unlike server.call it is safe off the test goroutine.
func get(s *server, path string) (int, []byte, error) {
	req, err := http.NewRequest("GET", s.base+path, nil)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+s.owner)
	res, err := s.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err == nil && !json.Valid(body) {
		err = fmt.Errorf("status %d: body is not JSON: %q", res.StatusCode, body)
	}
	return res.StatusCode, body, err
}
