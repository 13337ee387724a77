package console_test

import (
	"context"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/pgundo/pgundo/console"
	"github.com/pgundo/pgundo/internal/pgtest"
)

// ChromiumEnv names the variable that points the browser tests at a
// Chromium binary; by default they look for Debian's chromium on $PATH.
const ChromiumEnv = "PGUNDO_CHROMIUM"

// screenshotDir is where the browser tests write a PNG of each page, for a
// reviewer (ignored by git).
const screenshotDir = "screenshots"

// browser starts the system's headless Chromium (never a downloaded one)
// and returns a context that drives one tab of it. No Chromium is a test
// failure, not a skip.
func browser(t *testing.T) context.Context {
	t.Helper()
	path := os.Getenv(ChromiumEnv)
	if path == "" {
		for _, name := range []string{"chromium", "chromium-browser"} {
			if p, err := exec.LookPath(name); err == nil {
				path = p
				break
			}
		}
	}
	if path == "" {
		t.Fatalf("no Chromium for the browser tests: install Debian's chromium (apt-get install -y chromium) or set $%s", ChromiumEnv)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox,
		chromedp.WindowSize(1280, 900), chromedp.Flag("disable-dev-shm-usage", true))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	ctx, cancelTab := chromedp.NewContext(actx)
	t.Cleanup(cancelTab)
	// The first action starts the browser; it lives as long as ctx, so no
	// timeout on ctx itself (see chromedp.Run).
	require.NoError(t, chromedp.Do(ctx), "start %s", path)
	return ctx
}

// screenshot writes the whole page to screenshots/NAME.png.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	require.NoError(t, err)
	require.NoError(t, os.MkdirAll(screenshotDir, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(screenshotDir, name+".png"), png, 0o644))
}

// waitText waits (a minute at most) until the element sel has text want,
// across the reloads of a page that refreshes itself.
func waitText(t *testing.T, ctx context.Context, sel, want string) {
	t.Helper()
	waitFor(t, ctx, sel, want, func(got string) bool { return got == want })
}

// waitContains waits, like waitText, until sel's text contains want (a
// page that reloads itself may show one callback's progress before the
// next's).
func waitContains(t *testing.T, ctx context.Context, sel, want string) {
	t.Helper()
	waitFor(t, ctx, sel, want, func(got string) bool { return strings.Contains(got, want) })
}

func waitFor(t *testing.T, ctx context.Context, sel, want string, ok func(string) bool) {
	t.Helper()
	js := `(document.querySelector(` + strconv.Quote(sel) + `) || {}).textContent || ""`
	var got string
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		v, err := chromedp.Run(actx, chromedp.Evaluate[string](js))
		cancel()
		if err == nil {
			if got = v; ok(got) {
				return
			}
		}
	}
	t.Fatalf("%s: %q, want %q", sel, got, want)
}

// value runs an action that returns a value, failing the test on error.
func value[T any](t *testing.T, ctx context.Context, a chromedp.Action[T]) T {
	t.Helper()
	actx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	v, err := chromedp.Run(actx, a)
	require.NoError(t, err)
	return v
}

func css(s string) chromedp.CSS { return chromedp.CSS(s) }

// httpDo is do, for the browser test, whose do drives the browser.
var httpDo = do

func TestConsoleBrowser(t *testing.T) {
	t.Parallel()
	s := newShop(t)
	ts := s.server(t, func(o *console.Options) { o.AllowUndo = true })
	ctx := browser(t)
	var dialogs atomic.Int32
	go func() {
		for _, err := range chromedp.Events(ctx, page.JavascriptDialogOpening) {
			if err != nil {
				return
			}
			dialogs.Add(1)
			_, _ = chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: false})
		}
	}()
	do := func(steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		value(t, ctx, chromedp.Steps(steps...))
	}
	text := func(sel string) string { t.Helper(); return value(t, ctx, chromedp.Text(css(sel))) }
	count := func(sel string) int {
		t.Helper()
		return value(t, ctx, chromedp.Evaluate[int](`document.querySelectorAll(`+strconv.Quote(sel)+`).length`))
	}

	// Without the token: 401 and no data.
	do(chromedp.Navigate(ts.URL + "/session/" + s.patch))
	body := text("body")
	require.Contains(t, body, "401 unauthorized")
	for _, secret := range []string{"patch.py", "ticket-123", "alert", "ann"} {
		require.NotContains(t, body, secret)
	}

	// The address pgundo serve prints: the cookie is set, the token leaves the address.
	do(chromedp.Navigate(ts.URL+"/?token="+token), chromedp.WaitVisible(css("table.sessions")))
	require.Equal(t, ts.URL+"/", value(t, ctx, chromedp.Location()))
	require.Equal(t, 1, count("tr[data-session]"))
	body = text("table.sessions")
	require.Contains(t, body, s.patch)
	require.Contains(t, body, "patch.py")
	screenshot(t, ctx, "sessions")

	// Following the patch session shows its diffs; the <script> value is text.
	do(chromedp.Click(css(`a[href="/session/`+s.patch+`"]`)), chromedp.WaitVisible(css("div.change")))
	require.Equal(t, 7, count("div.change"))
	note := value(t, ctx, chromedp.Evaluate[string](`[...document.querySelectorAll("tr.changed")].find(r => r.querySelector("th").textContent === "note").querySelector("td.new").textContent`))
	require.Equal(t, "<script>alert(1)</script>", note)
	require.Zero(t, count("script"), "no script element on the page")
	screenshot(t, ctx, "session")

	// A row's history, from its link.
	do(chromedp.Click(css(`a.hist[href*="table=public.orders"][href*="id%3D1&"]`)), chromedp.WaitVisible(css("h2")))
	require.Equal(t, "Row history", value(t, ctx, chromedp.Title())[:len("Row history")])
	require.Equal(t, 1, count("div.change"))
	screenshot(t, ctx, "history")

	// The activity chart: one rect per data point, the patch's among them.
	do(chromedp.Navigate(ts.URL+"/activity?since=1h"), chromedp.WaitVisible(css("svg.chart")))
	points := value(t, ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll("svg.chart rect.point")].map(r => r.dataset.series + "=" + r.dataset.count)`))
	sum := map[string]int{}
	for _, c := range points {
		name, v, _ := strings.Cut(c, "=")
		k, err := strconv.Atoi(v)
		require.NoError(t, err)
		sum[name] += k
	}
	require.Equal(t, map[string]int{"public.orders": 5, "public.items": 2}, sum)
	screenshot(t, ctx, "activity")

	// The status page's chart of the log's size: one circle per sample (the
	// install's and one taken now), each the value recorded.
	pgtest.Exec(t, s.conn, `SELECT pgundo.sample_size(interval '0')`)
	do(chromedp.Navigate(ts.URL+"/status"), chromedp.WaitVisible(css("svg.chart.size")))
	require.Equal(t, dbSamples(t, s.conn), value(t, ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll("svg.chart.size circle.point")].map(c => c.dataset.at + "=" + c.dataset.bytes)`)))
	screenshot(t, ctx, "status")

	// The plan: counts per table.
	do(chromedp.Navigate(ts.URL+"/plan/"+s.patch), chromedp.WaitVisible(css("table.plan")))
	require.Equal(t, strings.Join([]string{"public.orders", "3", "1", "1", "0", "0"}, "\t"), text(`tr[data-table="public.orders"]`))
	screenshot(t, ctx, "plan")

	// Undo without typing the id: nothing changes.
	after := s.contents(t)
	do(chromedp.Click(css(`form.undo button`)), chromedp.WaitVisible(css("p.warn")))
	require.Equal(t, "Type the session id "+s.patch+" exactly to confirm the undo. Nothing was changed.", text("p.warn"))
	require.Equal(t, after, s.contents(t))
	// Typed, while another transaction holds a lock on orders: the undo
	// runs in the background and its page shows how far it is, reloading
	// itself (no script), until the lock is released and it is done.
	csrf := csrfOf(t, get(t, ts, "/plan/"+s.patch).body)
	release := s.lockOrders(t)
	do(chromedp.SendKeys(css(`input[name="confirm"]`), s.patch), chromedp.Click(css(`form.undo button`)), chromedp.WaitVisible(css("div.progress")))
	run := value(t, ctx, chromedp.Location())
	require.Regexp(t, `/undo-run/\d+$`, run)
	require.Contains(t, text("p.phase"), "Running pgundo undo "+s.patch)
	waitText(t, ctx, "dd.rows", "2 of 7")
	waitContains(t, ctx, "p.phase", "undoing public.orders (1 of 2 tables written)")
	require.Equal(t, "28%", text("dd.percent"))
	require.Regexp(t, `^about `, text("dd.left"))
	require.Equal(t, after, s.contents(t), "nothing committed while it runs")
	screenshot(t, ctx, "undo-progress")
	// A second undo of the session meanwhile is refused and starts nothing.
	r := httpDo(t, ts, http.MethodPost, "/undo/"+s.patch, url.Values{"csrf": {csrf}, "confirm": {s.patch}}, "Bearer "+token)
	require.Equal(t, http.StatusConflict, r.status, r.body)
	require.Contains(t, r.body, "is already running")
	release()
	do(chromedp.WaitVisible(css("p.ok")))
	require.Equal(t, run, value(t, ctx, chromedp.Location()), "the same page, reloaded")
	require.Contains(t, text("p.ok"), "Undone: 7 rows written in one transaction")
	require.Contains(t, text("p.redo"), "To redo, undo the undo")
	require.Equal(t, s.before, s.contents(t))
	screenshot(t, ctx, "undone")

	// By tag: the patch and a second session under its tag, planned from
	// the tag's link on the sessions page and undone from its plan page.
	s3 := newShop(t)
	fix, _, _ := s3.fix(t)
	ts3 := s3.server(t, func(o *console.Options) { o.AllowUndo = true })
	do(chromedp.Navigate(ts3.URL+"/session/"+fix+"?token="+token), chromedp.WaitVisible(css("table.txs")))
	require.Equal(t, 2, count("a.plantx"))
	screenshot(t, ctx, "session-transactions")
	do(chromedp.Navigate(ts3.URL+"/"), chromedp.WaitVisible(css("table.sessions")))
	do(chromedp.Click(css(`tr[data-session="`+s3.patch+`"] a.plantag`)), chromedp.WaitVisible(css("table.plan")))
	require.Equal(t, "Undo plan of tag \"ticket-123\"", text("h1"))
	require.Equal(t, strings.Join([]string{"public.items", "1", "2", "1", "0", "0"}, "\t"), text(`tr[data-table="public.items"]`))
	require.Equal(t, strings.Join([]string{"public.orders", "3", "1", "1", "0", "0"}, "\t"), text(`tr[data-table="public.orders"]`))
	screenshot(t, ctx, "plan-tag")
	after3 := s3.contents(t)
	do(chromedp.Click(css(`form.undo button`)), chromedp.WaitVisible(css("p.warn")))
	require.Equal(t, "Type the tag ticket-123 exactly to confirm the undo. Nothing was changed.", text("p.warn"))
	require.Equal(t, after3, s3.contents(t))
	do(chromedp.SendKeys(css(`input[name="confirm"]`), "ticket-123"), chromedp.Click(css(`form.undo button`)), chromedp.WaitVisible(css("p.ok")))
	require.Contains(t, text("p.ok"), "Undone: 9 rows written in one transaction")
	require.Equal(t, s3.before, s3.contents(t))
	screenshot(t, ctx, "undone-tag")

	// A plan with a conflict, on another database, without --allow-undo:
	// of the session, and of its tag.
	s2 := newShop(t)
	s2.runAs(t, "clerk", "UPDATE orders SET note = 'called' WHERE id = 3")
	ts2 := s2.server(t, nil)
	do(chromedp.Navigate(ts2.URL+"/plan/"+s2.patch+"?token="+token), chromedp.WaitVisible(css("tr.conflict")))
	require.Contains(t, text("tr.conflict"), "public.orders\tid=3")
	require.Zero(t, count("form.undo"), "no undo form without --allow-undo")
	screenshot(t, ctx, "plan-conflict")
	do(chromedp.Navigate(ts2.URL+"/"), chromedp.WaitVisible(css("table.sessions")))
	do(chromedp.Click(css(`tr[data-session="`+s2.patch+`"] a.plantag`)), chromedp.WaitVisible(css("tr.conflict")))
	require.Equal(t, "Undo plan of tag \"ticket-123\"", text("h1"))
	require.Contains(t, text("tr.conflict"), "public.orders\tid=3")
	require.Contains(t, text("p.refusal"), "1 rows were changed since by someone else")
	require.Zero(t, count("form.undo"), "no undo form without --allow-undo")
	screenshot(t, ctx, "plan-tag-conflict")

	require.Zero(t, dialogs.Load(), "no script ran")
}
