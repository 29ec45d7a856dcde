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
// own test KMS, with project "web" and a few secrets in development and staging written
// through it, and a second replica on the same database whose key cache is still cold.
type kmsDeployment struct {
	deployment
	kms     *kmstest.Running
	key     string  // the platform KMS key ARN
	writer  *server // the replica that wrote the secrets: its cache holds both keys
	cold    *server // a replica that has not unwrapped any data key yet
	secrets [][2]string
}

func newKMSDeployment(t *testing.T, dialect string) kmsDeployment {
	t.Helper()
	k := kmstest.Start(t)
	d := kmsDeployment{deployment: newDeployment(t, dialect), kms: k, key: k.CreateKey()}
	d.writer = d.start(t, kmsEnv(k, d.key))
	d.writer.withProject()
	var list []map[string]any
	for i := range 5 {
		name, value := "S_"+itoa(i), "value-"+itoa(i)+"-do-not-leak"
		d.secrets = append(d.secrets, [2]string{name, value})
		list = append(list, map[string]any{"name": name, "value": value})
	}
	for _, env := range []string{"development", "staging"} {
		d.writer.must(http.StatusOK, "PATCH", envPath+env+"/secrets", d.writer.owner, map[string]any{"secrets": list})
	}
	d.cold = d.start(t, kmsEnv(k, d.key))
	// The first use of a token on a replica records last-used; keep it out of what follows.
	d.cold.must(http.StatusOK, "GET", "/api/v1/me", d.cold.owner, nil)
	return d
}

// readAll reveals an environment on s and fails unless every secret comes back with its value.
func (d kmsDeployment) readAll(s *server, env string) {
	d.writer.t.Helper()
	items := s.must(http.StatusOK, "GET", envPath+env+"/secrets?include=values", s.owner, nil).items()
	if len(items) != len(d.secrets) {
		s.t.Fatalf("%s: %d secrets, want %d", env, len(items), len(d.secrets))
	}
	for i, it := range items {
		if it["name"] != d.secrets[i][0] || it["value"] != d.secrets[i][1] {
			s.t.Fatalf("%s: item %d is %v=%v, want %s", env, i, it["name"], it["value"], d.secrets[i][0])
		}
	}
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

// TestKMSReadsUnwrapOnce: ten thousand concurrent reads of one environment on a replica with a
// cold cache cost exactly one KMS Decrypt, and no other KMS call.
func TestKMSReadsUnwrapOnce(t *testing.T) {
	isolateAWS(t)
	for _, dialect := range storetest.Dialects {
		t.Run(dialect, func(t *testing.T) {
			d := newKMSDeployment(t, dialect)
			r := d.cold
			d.kms.Reset()

			const reads, workers = 10000, 4
			var (
				wg       sync.WaitGroup
				mu       sync.Mutex
				failures []string
			)
			fail := func(format string, args ...any) {
				mu.Lock()
				defer mu.Unlock()
				if len(failures) < 5 {
					failures = append(failures, fmt.Sprintf(format, args...))
				}
			}
			for w := range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := w; i < reads; i += workers {
						sv := d.secrets[i%len(d.secrets)]
						path := envPath + "development/secrets/" + sv[0]
						if i%2 == 0 {
							path = envPath + "development/secrets?include=values"
						}
						status, body, err := get(r, path)
						switch {
						case err != nil:
							fail("read %d: %v", i, err)
						case status != http.StatusOK:
							fail("read %d: status %d: %s", i, status, body)
						case i%2 == 1 && !strings.Contains(string(body), `"value":"`+sv[1]+`"`):
							fail("read %d: %s does not hold %s", i, body, sv[1])
						case i%2 == 0 && strings.Count(string(body), `"value":"value-`) != len(d.secrets):
							fail("read %d: listing does not hold %d values: %s", i, len(d.secrets), body)
						}
					}
				}()
			}
			wg.Wait()
			for _, f := range failures {
				t.Error(f)
			}
			if n := d.kms.Count("Decrypt"); n != 1 {
				t.Errorf("%d reads on a cold replica made %d KMS Decrypt calls, want 1", reads, n)
			}
			for _, op := range []string{"GenerateDataKey", "Encrypt", "DescribeKey"} {
				if n := d.kms.Count(op); n != 0 {
					t.Errorf("reads made %d KMS %s calls, want none", n, op)
				}
			}
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
