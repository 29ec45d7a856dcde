package browsertest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// The viewport widths the dashboard is checked at.
const (
	Desktop = 1280
	Phone   = 390
)

// Scheme is a preferred colour scheme (the prefers-color-scheme media feature).
type Scheme string

// The colour schemes a page is checked in.
const (
	Light Scheme = "light"
	Dark  Scheme = "dark"
)

// ScreenshotDir is where Screenshot writes, under the repository root (git-ignored).
const ScreenshotDir = ".screenshots"

const (
	// world is the isolated JavaScript world the CSP listener runs in, out of the page's
	// reach; binding is the function it reports through, which exists only in that world.
	world   = "browsertest"
	binding = "browsertestReportCSP"

	// textTimeout bounds Text when the element is missing.
	textTimeout = 10 * time.Second
)

// cspListener runs before any script of every document the tab loads. The event bubbles to
// the window from the element (or document) that caused the violation.
const cspListener = `(() => {
	const report = globalThis.` + binding + `;
	addEventListener("securitypolicyviolation", e => report(JSON.stringify({
		directive: e.effectiveDirective || e.violatedDirective,
		blocked: e.blockedURI, source: e.sourceFile, line: e.lineNumber,
		sample: e.sample, disposition: e.disposition,
	})), true);
})();`

// Tab is one browser tab. It records the problems every page it shows reports (CSP
// violations, console errors, uncaught exceptions) and remembers its viewport width and
// colour scheme for screenshot names. Use a Tab from the test's goroutine only.
type Tab struct {
	// ctx is chromedp's handle on the tab, as on Browser; it ends TabTimeout after the tab
	// opens, or with the test.
	ctx    context.Context
	width  int
	scheme Scheme

	mu       sync.Mutex
	problems []string
}

// Tab opens a tab at the Desktop width in the Light scheme, with no cookies: each tab is a
// separate visitor (its own browser context). It closes when t ends.
func (b *Browser) Tab(t testing.TB) *Tab {
	t.Helper()
	return b.open(t, false)
}

// TabNoJS is Tab with JavaScript disabled in every page, for checking that the dashboard
// works without it. CSP violations are still recorded, from the browser's log.
func (b *Browser) TabNoJS(t testing.TB) *Tab {
	t.Helper()
	return b.open(t, true)
}

func (b *Browser) open(t testing.TB, noJS bool) *Tab {
	t.Helper()
	tab := &Tab{width: Desktop, scheme: Light}
	tctx, cancelTimeout := context.WithTimeout(b.ctx, TabTimeout)
	// Each tab has a browser context of its own, so tabs share no cookies or storage. The
	// listener sees every event of the tab from its creation, in order, before the answer to
	// any later command: Problems relies on that.
	ctx, cancel := chromedp.NewContext(tctx, chromedp.WithNewBrowserContext(), chromedp.WithListener(tab.record))
	t.Cleanup(func() {
		cancel()
		cancelTimeout()
	})
	tab.ctx = ctx
	steps := []chromedp.Action[chromedp.Void]{
		command(runtime.AddBinding, runtime.AddBindingParams{Name: binding, ExecutionContextName: world}),
		command(page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: cspListener, WorldName: world}),
		tab.viewport(tab.width),
		tab.media(tab.scheme),
	}
	if noJS {
		steps = append(steps, command(emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: true}))
	}
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("browsertest: open a tab: %v", err)
	}
	return tab
}

// Context is the tab's chromedp context, for actions that return a value:
// chromedp.Run(tab.Context(), chromedp.Location()).
func (tab *Tab) Context() context.Context { return tab.ctx }

// Run runs actions in order and fails t at the first error, naming the page it was on.
func (tab *Tab) Run(t testing.TB, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(tab.ctx, actions...); err != nil {
		t.Fatalf("browsertest: %v (on %s)", err, tab.location())
	}
}

// ClickAndWait clicks the element sel (CSS) and waits until the page it leads to has loaded,
// as a link or a form's submit button does.
func (tab *Tab) ClickAndWait(t testing.TB, sel string) {
	t.Helper()
	if _, err := chromedp.Run(tab.ctx, chromedp.WaitEvent(page.LoadEventFired, nil, chromedp.Click(chromedp.CSS(sel)))); err != nil {
		t.Fatalf("browsertest: click %s and wait for the next page: %v (on %s)", sel, err, tab.location())
	}
}

// Location is the URL of the page the tab shows.
func (tab *Tab) Location(t testing.TB) string {
	t.Helper()
	u, err := chromedp.Run(tab.ctx, chromedp.Location())
	if err != nil {
		t.Fatalf("browsertest: read the location: %v", err)
	}
	return u
}

// location is Location for a failure message: it never fails, and gives up quickly.
func (tab *Tab) location() string {
	ctx, cancel := context.WithTimeout(tab.ctx, 2*time.Second)
	defer cancel()
	u, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		return "an unknown page"
	}
	return u
}

// Text is the rendered text (innerText) of the first element matching sel (CSS), waiting
// up to 10 s for it to appear.
func (tab *Tab) Text(t testing.TB, sel string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab.ctx, textTimeout)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		t.Fatalf("browsertest: text of %s: %v (on %s)", sel, err, tab.location())
	}
	return s
}

// WaitText waits until the first element matching sel (CSS) contains want in its text, as a
// live update brings it, and fails t if it does not within timeout.
func (tab *Tab) WaitText(t testing.TB, sel, want string, timeout time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab.ctx, timeout)
	defer cancel()
	last, lastErr := "", error(nil)
	for {
		// TextContent, not Text: innerText is empty while the element is hidden, and a
		// hidden element can still be the one being updated.
		s, err := chromedp.Run(ctx, chromedp.TextContent(chromedp.CSS(sel)))
		if err == nil && strings.Contains(s, want) {
			return
		}
		if err == nil {
			last = s
		} else if ctx.Err() == nil {
			lastErr = err
		}
		select {
		case <-ctx.Done():
			if lastErr != nil && last == "" {
				t.Fatalf("browsertest: %s did not contain %q within %s: %v (on %s)", sel, want, timeout, lastErr, tab.location())
			}
			t.Fatalf("browsertest: %s did not contain %q within %s; its text was %q (on %s)", sel, want, timeout, last, tab.location())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// SetWidth sets the viewport's width in CSS pixels (Desktop, Phone); below 768 it also
// emulates a phone (meta viewport, overlay scrollbars). The page lays itself out again.
func (tab *Tab) SetWidth(t testing.TB, width int) {
	t.Helper()
	tab.Run(t, tab.viewport(width))
	tab.width = width
}

func (tab *Tab) viewport(width int) chromedp.Action[chromedp.Void] {
	mobile := width < 768
	height := int64(800)
	if mobile {
		height = 844
	}
	return command(emulation.SetDeviceMetricsOverride, emulation.SetDeviceMetricsOverrideParams{
		Width: int64(width), Height: height, DeviceScaleFactor: 1, Mobile: mobile,
	})
}

// SetScheme sets the preferred colour scheme the page sees; it applies at once.
func (tab *Tab) SetScheme(t testing.TB, s Scheme) {
	t.Helper()
	tab.Run(t, tab.media(s))
	tab.scheme = s
}

func (tab *Tab) media(s Scheme) chromedp.Action[chromedp.Void] {
	return command(emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
		Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: string(s)}},
	})
}

// Screenshot writes a PNG of the whole page to .screenshots/ at the repository root, named
// <test name>-<name>-<width>-<light|dark>.png, and returns its path.
func (tab *Tab) Screenshot(t testing.TB, name string) string {
	t.Helper()
	buf, err := chromedp.Run(tab.ctx, chromedp.FullScreenshot(100)) // quality 100 is PNG
	if err != nil {
		t.Fatalf("browsertest: screenshot %s: %v (on %s)", name, err, tab.location())
	}
	root, err := repoRoot()
	if err != nil {
		t.Fatalf("browsertest: screenshot %s: %v", name, err)
	}
	dir := filepath.Join(root, ScreenshotDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("browsertest: screenshot %s: %v", name, err)
	}
	path := filepath.Join(dir, fmt.Sprintf("%s-%s-%d-%s.png", fileName(t.Name()), fileName(name), tab.width, tab.scheme))
	if err := os.WriteFile(path, buf, 0o644); err != nil {
		t.Fatalf("browsertest: screenshot %s: %v", name, err)
	}
	return path
}

// Problems returns what the pages of this tab reported so far, one line each: CSP
// violations, console errors and uncaught exceptions, and errors in the browser's log
// (failed loads among them). A test of a healthy page expects none.
func (tab *Tab) Problems() []string {
	// A round trip to the tab: its answer comes after every event the tab sent before it,
	// and the listener has recorded those by then.
	ctx, cancel := context.WithTimeout(tab.ctx, 2*time.Second)
	defer cancel()
	_, _ = chromedp.Call(ctx, page.GetFrameTree, cdp.Empty{})
	tab.mu.Lock()
	defer tab.mu.Unlock()
	return append([]string(nil), tab.problems...)
}

// record is the tab's event listener. It runs on chromedp's reading goroutine, so it only
// formats and appends.
func (tab *Tab) record(ev any) {
	var p string
	switch ev := ev.(type) {
	case *runtime.EventBindingCalled:
		if ev.Name != binding {
			return
		}
		var v struct {
			Directive, Blocked, Source, Sample, Disposition string
			Line                                            int64
		}
		if err := json.Unmarshal([]byte(ev.Payload), &v); err != nil {
			p = "CSP violation (unreadable report: " + err.Error() + ")"
			break
		}
		p = fmt.Sprintf("CSP violation (%s): %s blocked %q", v.Disposition, v.Directive, v.Blocked)
		if v.Source != "" {
			p += fmt.Sprintf(" at %s:%d", v.Source, v.Line)
		}
		if v.Sample != "" {
			p += fmt.Sprintf(" sample %q", v.Sample)
		}
	case *runtime.EventConsoleAPICalled:
		if ev.Type != runtime.ConsoleAPICalledTypeError && ev.Type != runtime.ConsoleAPICalledTypeAssert {
			return
		}
		p = "console." + string(ev.Type) + ": " + args(ev.Args)
		if st := ev.StackTrace; st != nil && len(st.CallFrames) > 0 {
			f := st.CallFrames[0]
			p += fmt.Sprintf(" at %s:%d", f.URL, f.LineNumber+1)
		}
	case *runtime.EventExceptionThrown:
		d := ev.ExceptionDetails
		if d == nil {
			return
		}
		p = "uncaught exception: " + d.Text
		if d.Exception != nil && d.Exception.Description != "" {
			desc, _, _ := strings.Cut(d.Exception.Description, "\n")
			p += " " + desc
		}
		if d.URL != "" {
			p += fmt.Sprintf(" at %s:%d", d.URL, d.LineNumber+1)
		}
	case *log.EventEntryAdded:
		e := ev.Entry
		if e == nil || e.Level != log.EntryLevelError {
			return
		}
		p = "browser log (" + string(e.Source) + "): " + e.Text
		if e.URL != "" && !strings.Contains(e.Text, e.URL) {
			p += " at " + e.URL
		}
	default:
		return
	}
	tab.mu.Lock()
	tab.problems = append(tab.problems, p)
	tab.mu.Unlock()
}

// args renders console arguments as the DevTools console does, roughly.
func args(list []*runtime.RemoteObject) string {
	parts := make([]string, 0, len(list))
	for _, a := range list {
		switch {
		case a.Type == runtime.RemoteObjectTypeString:
			var s string
			if err := json.Unmarshal(a.Value, &s); err == nil {
				parts = append(parts, s)
				continue
			}
			parts = append(parts, string(a.Value))
		case len(a.Value) > 0:
			parts = append(parts, string(a.Value))
		case a.UnserializableValue != "":
			parts = append(parts, string(a.UnserializableValue))
		default:
			parts = append(parts, a.Description)
		}
	}
	return strings.Join(parts, " ")
}

// command makes a protocol command an action.
func command[P, R any](cmd cdp.Command[P, R], params P) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := cdp.Call(ctx, t, cmd, params)
		return err
	})
}
