package browsertest_test

import (
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/cofferhq/coffer/internal/browsertest"
)

// page is served under a CSP that forbids inline script and inline style: the inline script
// and style are violations, and the allowed script logs an error, throws, and later fills
// #live.
const page = `<!doctype html><html><head><meta name="viewport" content="width=device-width, initial-scale=1"><title>t</title>
<style>body{color:red}</style>
<script src="/app.js"></script>
<script>document.title = "inline ran"</script>
</head><body><p id="live">waiting</p></body></html>`

const script = `console.error("boom", 42);
setTimeout(() => { document.getElementById("live").textContent = "updated" }, 200);
setTimeout(() => { throw new Error("kaput") }, 0);`

func server(t *testing.T) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", "default-src 'self'")
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte(page))
	})
	mux.HandleFunc("/app.js", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/javascript")
		_, _ = w.Write([]byte(script))
	})
	mux.HandleFunc("/favicon.ico", func(w http.ResponseWriter, r *http.Request) {})
	s := httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return s
}

func has(problems []string, parts ...string) bool {
	for _, p := range problems {
		ok := true
		for _, part := range parts {
			ok = ok && strings.Contains(p, part)
		}
		if ok {
			return true
		}
	}
	return false
}

func TestProblemsAndHelpers(t *testing.T) {
	s := server(t)
	b := browsertest.Start(t)

	tab := b.Tab(t)
	tab.Run(t, chromedp.Navigate(s.URL+"/"))
	tab.WaitText(t, "#live", "updated", 5*time.Second)
	if got := tab.Text(t, "#live"); got != "updated" {
		t.Errorf("Text(#live) = %q", got)
	}
	problems := tab.Problems()
	for _, want := range [][]string{
		{"CSP violation", "script-src-elem", "inline"},
		{"CSP violation", "style-src-elem", "inline"},
		{"console.error: boom 42", "/app.js"},
		{"uncaught exception", "kaput"},
	} {
		if !has(problems, want...) {
			t.Errorf("problems lack %q:\n%s", want, strings.Join(problems, "\n"))
		}
	}

	tab.SetWidth(t, browsertest.Phone)
	tab.SetScheme(t, browsertest.Dark)
	if w, err := chromedp.Run(tab.Context(), chromedp.Evaluate[int]("innerWidth")); err != nil || w != browsertest.Phone {
		t.Errorf("innerWidth = %d, %v; want %d", w, err, browsertest.Phone)
	}
	if dark, err := chromedp.Run(tab.Context(), chromedp.Evaluate[bool](`matchMedia("(prefers-color-scheme: dark)").matches`)); err != nil || !dark {
		t.Errorf("prefers-color-scheme: dark = %v, %v", dark, err)
	}
	path := tab.Screenshot(t, "page")
	if !strings.HasSuffix(path, "/.screenshots/TestProblemsAndHelpers-page-390-dark.png") {
		t.Errorf("screenshot path %s", path)
	}
	png, err := os.ReadFile(path)
	if err != nil || !strings.HasPrefix(string(png), "\x89PNG") {
		t.Errorf("screenshot %s is not a PNG: %v", path, err)
	}
	_ = os.Remove(path)

	// Without JavaScript the script never runs, and the violations still show, from the log.
	nojs := b.TabNoJS(t)
	nojs.Run(t, chromedp.Navigate(s.URL+"/"))
	if got := nojs.Text(t, "#live"); got != "waiting" {
		t.Errorf("without JavaScript, #live = %q, want the server's text", got)
	}
	problems = nojs.Problems()
	if has(problems, "boom") || has(problems, "kaput") {
		t.Errorf("a script ran with JavaScript disabled:\n%s", strings.Join(problems, "\n"))
	}
	if !has(problems, "Content Security Policy", "style") {
		t.Errorf("without JavaScript, the style violation is not reported:\n%s", strings.Join(problems, "\n"))
	}
}
