package console_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/pgundo/pgundo/console"
	"github.com/pgundo/pgundo/history"
	"github.com/pgundo/pgundo/internal/humanize"
	"github.com/pgundo/pgundo/internal/pgtest"
	"github.com/pgundo/pgundo/internal/timefmt"
	pgsql "github.com/pgundo/pgundo/sql"
	"github.com/pgundo/pgundo/triggers"
)

// TestMain runs the tests against a throwaway PostgreSQL whose template
// database has pgundo installed.
func TestMain(m *testing.M) {
	os.Exit(pgtest.Run(m, func(ctx context.Context, conn *pgx.Conn) error {
		_, err := pgsql.Migrate(ctx, conn)
		return err
	}))
}

const token = "test-token-0123456789abcdef"

// shop is the test's database: two tracked tables, and a "patch" session
// (application patch.py, tag ticket-123) that updated, deleted (with a
// cascade) and inserted rows, one value holding a <script> tag.
type shop struct {
	url    string
	conn   *pgx.Conn
	patch  string              // the patch session's id
	before map[string][]string // full table contents before the patch
}

const shopSchema = `
CREATE TABLE orders (id int PRIMARY KEY, customer text NOT NULL, note text, total numeric(10,2) NOT NULL);
CREATE TABLE items (order_id int REFERENCES orders ON DELETE CASCADE, line int, sku text NOT NULL, PRIMARY KEY (order_id, line));
INSERT INTO orders VALUES (1, 'ann', 'first', 10.00), (2, 'bob', NULL, 25.50), (3, 'cy', 'gift', 7.25), (4, 'dee', 'rush', 99.99);
INSERT INTO items VALUES (1, 1, 'A-1'), (4, 1, 'D-1'), (4, 2, 'D-2');`

const patchSQL = `
SET pgundo.tag = 'ticket-123';
UPDATE orders SET total = total * 2 WHERE id IN (1, 3);
UPDATE orders SET note = '<script>alert(1)</script>' WHERE id = 2;
DELETE FROM orders WHERE id = 4;
INSERT INTO orders VALUES (5, 'eve', 'new', 1.00);`

func newShop(t *testing.T) *shop {
	t.Helper()
	ctx := context.Background()
	s := &shop{url: pgtest.NewDB(t)}
	s.conn = pgtest.Connect(t, s.url)
	pgtest.Exec(t, s.conn, shopSchema)
	_, err := triggers.Track(ctx, s.conn, []string{"orders", "items"})
	require.NoError(t, err)
	s.before = s.contents(t)
	s.patch = s.runAs(t, "patch.py", patchSQL)
	return s
}

// runAs runs sql on a new connection with application_name app and
// returns the id of the session it was recorded as.
func (s *shop) runAs(t *testing.T, app, sql string) string {
	t.Helper()
	ctx := context.Background()
	cfg, err := pgx.ParseConfig(s.url)
	require.NoError(t, err)
	cfg.RuntimeParams["application_name"] = app
	c, err := pgx.ConnectConfig(ctx, cfg)
	require.NoError(t, err)
	defer c.Close(ctx)
	_, err = c.Exec(ctx, sql)
	require.NoError(t, err)
	ss, err := history.Sessions(ctx, s.conn, history.SessionFilter{App: app})
	require.NoError(t, err)
	require.Len(t, ss, 1, "one session of %s recorded", app)
	return ss[0].ID
}

// contents returns every row of both tables as text, sorted.
func (s *shop) contents(t *testing.T) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, tbl := range []string{"orders", "items"} {
		rows, err := s.conn.Query(context.Background(), fmt.Sprintf("SELECT x::text FROM %s x ORDER BY 1", tbl))
		require.NoError(t, err)
		out[tbl], err = pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err)
	}
	return out
}

// server starts a console on the shop's database.
func (s *shop) server(t *testing.T, mod func(*console.Options)) *httptest.Server {
	t.Helper()
	cfg, err := pgx.ParseConfig(s.url)
	require.NoError(t, err)
	pool, err := console.Open(context.Background(), cfg, 0)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	// Plan pages wait for their dry run, however slow the machine.
	o := console.Options{Pool: pool, Token: token, PlanWait: time.Minute}
	if mod != nil {
		mod(&o)
	}
	srv, err := console.New(o)
	require.NoError(t, err)
	t.Cleanup(srv.Close)
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	return ts
}

// noRedirect is a client that shows redirects instead of following them.
var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

type response struct {
	status int
	header http.Header
	body   string
}

// get fetches path with the Bearer token.
func get(t *testing.T, ts *httptest.Server, path string) response {
	t.Helper()
	return do(t, ts, http.MethodGet, path, nil, "Bearer "+token)
}

func do(t *testing.T, ts *httptest.Server, method, path string, form url.Values, auth string) response {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, ts.URL+path, body)
	require.NoError(t, err)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	res, err := noRedirect.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return response{res.StatusCode, res.Header, string(b)}
}

func TestConsoleUnauthorized(t *testing.T) {
	t.Parallel()
	s := newShop(t)
	ts := s.server(t, func(o *console.Options) { o.AllowUndo = true })
	paths := []string{"/", "/session/" + s.patch, "/history?table=orders&key=1", "/asof?table=orders&at=1h", "/status",
		"/activity", "/plan/" + s.patch, "/plan/" + s.patch + "/undo.sql", "/plan?tag=ticket-123", "/plan/undo.sql?tag=ticket-123",
		"/plan?tx=1", "/undo-run/1", "/static/console.css", "/nope"}
	for _, auth := range []string{"", "Bearer wrong", "Basic " + token, "Bearer " + token + "x"} {
		for _, p := range paths {
			r := do(t, ts, http.MethodGet, p, nil, auth)
			require.Equal(t, http.StatusUnauthorized, r.status, "%s with %q", p, auth)
			for _, secret := range []string{s.patch, "patch.py", "ticket-123", "orders", "ann", "script"} {
				require.NotContains(t, r.body, secret, "%s with %q leaks %s", p, auth, secret)
			}
		}
		r := do(t, ts, http.MethodPost, "/undo/"+s.patch, url.Values{"confirm": {s.patch}}, auth)
		require.Equal(t, http.StatusUnauthorized, r.status)
		r = do(t, ts, http.MethodPost, "/undo?tag=ticket-123", url.Values{"confirm": {"ticket-123"}}, auth)
		require.Equal(t, http.StatusUnauthorized, r.status)
	}
	// A wrong ?token= sets no cookie.
	r := do(t, ts, http.MethodGet, "/?token=wrong", nil, "")
	require.Equal(t, http.StatusUnauthorized, r.status)
	require.Empty(t, r.header.Values("Set-Cookie"))
}

func TestConsoleCookieFlow(t *testing.T) {
	t.Parallel()
	s := newShop(t)
	ts := s.server(t, nil)
	r := do(t, ts, http.MethodGet, "/session/"+s.patch+"?token="+token+"&table=orders", nil, "")
	require.Equal(t, http.StatusSeeOther, r.status)
	require.Equal(t, "/session/"+s.patch+"?table=orders", r.header.Get("Location"), "the token leaves the address")
	cookies := (&http.Response{Header: r.header}).Cookies()
	require.Len(t, cookies, 1)
	c := cookies[0]
	require.Equal(t, console.CookieName, c.Name)
	require.Equal(t, token, c.Value)
	require.True(t, c.HttpOnly)
	require.Equal(t, http.SameSiteStrictMode, c.SameSite)
	require.Equal(t, "/", c.Path)

	req, err := http.NewRequest(http.MethodGet, ts.URL+r.header.Get("Location"), nil)
	require.NoError(t, err)
	req.AddCookie(&http.Cookie{Name: console.CookieName, Value: token})
	res, err := noRedirect.Do(req)
	require.NoError(t, err)
	body, err := io.ReadAll(res.Body)
	res.Body.Close()
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, res.StatusCode)
	require.Contains(t, string(body), "patch.py")

	req.Header.Del("Cookie")
	req.AddCookie(&http.Cookie{Name: console.CookieName, Value: "wrong"})
	res, err = noRedirect.Do(req)
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, http.StatusUnauthorized, res.StatusCode)
}

func TestConsoleBearerAndHeaders(t *testing.T) {
	t.Parallel()
	s := newShop(t)
	ts := s.server(t, nil)
	r := get(t, ts, "/")
	require.Equal(t, http.StatusOK, r.status)
	require.Equal(t, "text/html; charset=utf-8", r.header.Get("Content-Type"))
	csp := r.header.Get("Content-Security-Policy")
	require.Contains(t, csp, "default-src 'none'")
	require.Contains(t, csp, "style-src 'self'")
	require.NotContains(t, csp, "unsafe")
	require.Equal(t, "nosniff", r.header.Get("X-Content-Type-Options"))
	require.Equal(t, "no-store", r.header.Get("Cache-Control"))
	require.NotContains(t, r.body, "<script", "the console sends no script")
	css := get(t, ts, "/static/console.css")
	require.Equal(t, http.StatusOK, css.status)
	require.Contains(t, css.header.Get("Content-Type"), "text/css")
}

// sessionRows returns the session ids the sessions page lists, in order.
func sessionRows(body string) []string {
	var ids []string
	for _, m := range regexp.MustCompile(`<tr data-session="([^"]+)">`).FindAllStringSubmatch(body, -1) {
		ids = append(ids, m[1])
	}
	return ids
}

func TestConsoleSessions(t *testing.T) {
	t.Parallel()
	s := newShop(t)
	later := s.runAs(t, "clerk", "UPDATE items SET sku = 'A-9' WHERE order_id = 1")
	ts := s.server(t, func(o *console.Options) { o.PageSize = 1 })

	r := get(t, ts, "/")
	require.Equal(t, http.StatusOK, r.status)
	require.Equal(t, []string{later}, sessionRows(r.body), "newest first, one a page")
	require.Contains(t, r.body, `rel="next"`)
	r = get(t, ts, "/?page=2")
	require.Equal(t, []string{s.patch}, sessionRows(r.body))
	require.NotContains(t, r.body, `rel="next"`)
	require.Contains(t, r.body, `rel="prev"`)
	require.Contains(t, r.body, "ticket-123")
	require.Contains(t, r.body, `<td class="num">7</td>`, "the patch changed 7 rows (3 updates, 1 delete with 2 cascaded, 1 insert)")

	for q, want := range map[string][]string{
		"app=patch.py":      {s.patch},
		"app=clerk":         {later},
		"tag=ticket-123":    {s.patch},
		"table=items":       {later}, // page 1 of 2: the patch's cascade deleted items too
		"user=nobody":       nil,
		"since=1h&app=none": nil,
	} {
		r := get(t, ts, "/?"+q)
		require.Equal(t, http.StatusOK, r.status, q)
		require.Equal(t, want, sessionRows(r.body), q)
	}
	r = get(t, ts, "/?table=items&page=2")
	require.Equal(t, []string{s.patch}, sessionRows(r.body), "the cascade's session changed items too")
	r = get(t, ts, "/?since=yesterday-ish")
	require.Equal(t, http.StatusBadRequest, r.status)
	require.Contains(t, r.body, "since")
	r = get(t, ts, "/?table=no_such_table")
	require.Equal(t, http.StatusBadRequest, r.status)
}

func TestConsoleSessionDiff(t *testing.T) {
	t.Parallel()
	s := newShop(t)
	ts := s.server(t, nil)
	r := get(t, ts, "/session/"+s.patch)
	require.Equal(t, http.StatusOK, r.status)
	b := r.body
	// Counts per table.
	require.Contains(t, b, `<td><a href="/session/`+s.patch+`?table=public.orders">public.orders</a></td><td class="num">1</td><td class="num">3</td><td class="num">1</td><td class="num">0</td>`)
	require.Contains(t, b, `<td><a href="/session/`+s.patch+`?table=public.items">public.items</a></td><td class="num">0</td><td class="num">0</td><td class="num">2</td><td class="num">0</td>`)
	// The exact diff of order 1: key first, the changed column highlighted.
	require.Contains(t, b, `<span class="op">UPDATE</span> <span class="table">public.orders</span> <span class="key">id=1</span>`)
	require.Contains(t, b, `<tr class=" keycol"><th>id</th><td class="old">1</td><td class="new">1</td></tr><tr class="changed"><th>total</th><td class="old">10.00</td><td class="new">20.00</td></tr>`)
	require.Contains(t, b, `<tr class="changed"><th>total</th><td class="old">7.25</td><td class="new">14.50</td></tr>`)
	// The <script> value is shown, escaped, never as markup.
	require.Contains(t, b, `<tr class="changed"><th>note</th><td class="old"><span class="null">NULL</span></td><td class="new">&lt;script&gt;alert(1)&lt;/script&gt;</td></tr>`)
	require.NotContains(t, b, "<script>")
	// The delete (every column), its cascade, and the insert.
	require.Contains(t, b, `<span class="op">DELETE</span> <span class="table">public.orders</span> <span class="key">id=4</span>`)
	require.Contains(t, b, `<th>customer</th><td class="old">dee</td>`)
	require.Contains(t, b, `<span class="op">DELETE</span> <span class="table">public.items</span> <span class="key">order_id=4 line=2</span>`)
	require.Contains(t, b, `<th>customer</th><td class="new">eve</td>`)
	// Links to each row's history.
	require.Contains(t, b, `href="/history?key=order_id%3D4&amp;key=line%3D2&amp;table=public.items"`)
	require.Contains(t, b, `href="/history?key=id%3D2&amp;table=public.orders"`)

	// Filtered by table and key.
	r = get(t, ts, "/session/"+s.patch+"?table=orders&key=2")
	require.Equal(t, http.StatusOK, r.status)
	require.Equal(t, 1, strings.Count(r.body, `<div class="change `))
	require.Contains(t, r.body, `<span class="key">id=2</span>`)
	r = get(t, ts, "/session/"+s.patch+"?table=items")
	require.Equal(t, 2, strings.Count(r.body, `<div class="change `))

	// Paginated.
	ts2 := s.server(t, func(o *console.Options) { o.PageSize = 4 })
	r = get(t, ts2, "/session/"+s.patch)
	require.Equal(t, 4, strings.Count(r.body, `<div class="change `))
	require.Contains(t, r.body, `rel="next"`)
	r = get(t, ts2, "/session/"+s.patch+"?page=2")
	require.Equal(t, 3, strings.Count(r.body, `<div class="change `))
	require.NotContains(t, r.body, `rel="next"`)
	// Pages of any size list every change once, in statement order.
	whole := changeHeads(get(t, ts, "/session/"+s.patch).body)
	require.Len(t, whole, 7)
	for _, size := range []int{1, 2, 3} {
		ts := s.server(t, func(o *console.Options) { o.PageSize = size })
		var got []string
		for p := 1; ; p++ {
			r := get(t, ts, fmt.Sprintf("/session/%s?page=%d", s.patch, p))
			require.Equal(t, http.StatusOK, r.status)
			heads := changeHeads(r.body)
			require.LessOrEqual(t, len(heads), size)
			got = append(got, heads...)
			if !strings.Contains(r.body, `rel="next"`) {
				break
			}
		}
		require.Equal(t, whole, got, "pages of %d put together", size)
	}

	r = get(t, ts, "/session/ffff.1")
	require.Equal(t, http.StatusNotFound, r.status)
	r = get(t, ts, "/session/"+s.patch+"?table=orders&key=x")
	require.Equal(t, http.StatusBadRequest, r.status)
}

var changeHead = regexp.MustCompile(`<span class="op">([A-Z]+)</span> <span class="table">([^<]+)</span>(?: <span class="key">([^<]*)</span>)?`)

// changeHeads lists the row changes of a session page as "OP table key".
func changeHeads(body string) []string {
	var out []string
	for _, m := range changeHead.FindAllStringSubmatch(body, -1) {
		out = append(out, m[1]+" "+m[2]+" "+m[3])
	}
	return out
}

func TestConsoleHistoryAndAsof(t *testing.T) {
	t.Parallel()
	s := newShop(t)
	s.runAs(t, "clerk", "UPDATE orders SET note = 'called' WHERE id = 1")
	ts := s.server(t, nil)
	r := get(t, ts, "/history?table=orders&key=1")
	require.Equal(t, http.StatusOK, r.status)
	require.Equal(t, 2, strings.Count(r.body, `<div class="change `), r.body)
	require.Contains(t, r.body, `<a href="/session/`+s.patch+`">`+s.patch+`</a> · user`)
	require.Contains(t, r.body, `app patch.py`)
	require.Contains(t, r.body, `<tr class="changed"><th>note</th><td class="old">first</td><td class="new">called</td></tr>`)
	require.Contains(t, r.body, `<tr><th>total</th><td>20.00</td></tr>`, "the row now")

	// Order 4 as it was before the patch: every row, then one key.
	var before string
	require.NoError(t, s.conn.QueryRow(context.Background(), "SELECT to_char((min(at) - interval '1 microsecond') AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') FROM pgundo.stmt").Scan(&before))
	r = get(t, ts, "/asof?table=orders&at="+url.QueryEscape(before))
	require.Equal(t, http.StatusOK, r.status, r.body)
	require.Contains(t, r.body, ": 4 rows")
	require.Contains(t, r.body, `<tr><td>4</td><td>dee</td><td>rush</td><td>99.99</td></tr>`)
	r = get(t, ts, "/asof?table=orders&key=2&at="+url.QueryEscape(before))
	require.Equal(t, http.StatusOK, r.status, r.body)
	require.Contains(t, r.body, `<tr><td>2</td><td>bob</td><td><span class="null">NULL</span></td><td>25.50</td></tr>`)
	require.Contains(t, r.body, ": 1 rows")
}

func TestConsoleLongAndOddValues(t *testing.T) {
	t.Parallel()
	s := newShop(t)
	long := strings.Repeat("x", 500) + "<b>END</b>"
	s.runAs(t, "odd", fmt.Sprintf("UPDATE orders SET note = %s WHERE id = 3; UPDATE orders SET note = E'a\\nb\\x01c\\u202Ed' WHERE id = 5", "'"+long+"'"))
	ts := s.server(t, nil)
	r := get(t, ts, "/?app=odd")
	id := sessionRows(r.body)[0]
	r = get(t, ts, "/session/"+id)
	require.Equal(t, http.StatusOK, r.status)
	require.Contains(t, r.body, `<details class="long"><summary>`+strings.Repeat("x", console.ShortLen)+`…</summary><span class="full">`+strings.Repeat("x", 500)+`&lt;b&gt;END&lt;/b&gt;</span></details>`)
	require.Contains(t, r.body, `<td class="new">a\nb\u0001c\u202ed</td>`)
}

// planCounts returns the plan page's counts per table: restore, re-insert,
// delete.
func planCounts(body string) map[string][3]string {
	out := map[string][3]string{}
	re := regexp.MustCompile(`<tr data-table="([^"]+)"><td>[^<]*</td><td class="num restore">(\d+)</td><td class="num reinsert">(\d+)</td><td class="num delete">(\d+)</td>`)
	for _, m := range re.FindAllStringSubmatch(body, -1) {
		out[m[1]] = [3]string{m[2], m[3], m[4]}
	}
	return out
}

func TestConsolePlan(t *testing.T) {
	t.Parallel()
	s := newShop(t)
	ts := s.server(t, nil)
	r := get(t, ts, "/plan/"+s.patch)
	require.Equal(t, http.StatusOK, r.status, r.body)
	require.Equal(t, map[string][3]string{"public.orders": {"3", "1", "1"}, "public.items": {"0", "2", "0"}}, planCounts(r.body))
	require.Contains(t, r.body, `href="/plan/`+s.patch+`/undo.sql"`)
	require.NotContains(t, r.body, `name="confirm"`, "no undo form without AllowUndo")
	require.NotContains(t, r.body, `action="/undo/`)
	after := s.contents(t)

	sql := get(t, ts, "/plan/"+s.patch+"/undo.sql")
	require.Equal(t, http.StatusOK, sql.status, sql.body)
	require.Equal(t, `attachment; filename="pgundo-undo-`+s.patch+`.sql"`, sql.header.Get("Content-Disposition"))
	require.Contains(t, sql.body, "BEGIN")
	require.Contains(t, sql.body, "COMMIT")
	require.Equal(t, after, s.contents(t), "plan and script change nothing")

	// Someone changes order 1 since: a conflict, named with who did it.
	clerk := s.runAs(t, "clerk", "UPDATE orders SET note = 'called' WHERE id = 1")
	r = get(t, ts, "/plan/"+s.patch)
	require.Equal(t, http.StatusConflict, r.status)
	require.Contains(t, r.body, `<p class="refusal">1 rows were changed since by someone else`)
	require.Regexp(t, `<tr class="conflict"><td>public.orders</td><td>id=1</td><td>[^<]+</td><td>note</td><td><a href="/session/`+regexp.QuoteMeta(clerk)+`">`, r.body)
	require.NotContains(t, r.body, `/undo.sql"`, "no script for a refused undo")
	sql = get(t, ts, "/plan/"+s.patch+"/undo.sql")
	require.Equal(t, http.StatusConflict, sql.status)
	require.NotContains(t, sql.body, "BEGIN")

	// A foreign-key refusal: a new item now references order 5, which the
	// undo would delete.
	s2 := newShop(t)
	s2.runAs(t, "clerk2", "INSERT INTO items VALUES (5, 1, 'E-1')")
	ts2 := s2.server(t, nil)
	r = get(t, ts2, "/plan/"+s2.patch)
	require.Equal(t, http.StatusConflict, r.status)
	require.Contains(t, r.body, `<p class="refusal">`)
	require.Contains(t, r.body, "foreign key")
}

// A dry run that takes longer than PlanWait goes on in the background: the
// page answers 202 and reloads itself until the result is there, which is
// then kept for as long as the log does not move.
func TestConsolePlanInBackground(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newShop(t)
	ts := s.server(t, func(o *console.Options) { o.PlanWait = time.Millisecond })
	// The dry run waits for this lock.
	tx, err := s.conn.Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, "LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
	require.NoError(t, err)
	r := get(t, ts, "/plan/"+s.patch)
	require.Equal(t, http.StatusAccepted, r.status, r.body)
	require.Equal(t, "2", r.header.Get("Refresh"))
	require.Contains(t, r.body, `<p class="running">The dry run of <code>pgundo undo `+s.patch+`</code> is running`)
	require.Empty(t, planCounts(r.body))
	require.NoError(t, tx.Rollback(ctx))

	done := func() response {
		for {
			r := get(t, ts, "/plan/"+s.patch)
			if r.status != http.StatusAccepted {
				return r
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	r = done()
	require.Equal(t, http.StatusOK, r.status, r.body)
	require.Equal(t, map[string][3]string{"public.orders": {"3", "1", "1"}, "public.items": {"0", "2", "0"}}, planCounts(r.body))
	ranAt := regexp.MustCompile(`<span class="planned">Run at [^<]+</span>`)
	first := ranAt.FindString(r.body)
	require.NotEmpty(t, first)
	// The same log position: the same run, shown at once.
	r = get(t, ts, "/plan/"+s.patch)
	require.Equal(t, http.StatusOK, r.status)
	require.Equal(t, first, ranAt.FindString(r.body))

	// A change logged since: run again, and now a conflict.
	s.runAs(t, "clerk", "UPDATE orders SET note = 'called' WHERE id = 1")
	r = done()
	require.Equal(t, http.StatusConflict, r.status, r.body)
	require.Contains(t, r.body, `<p class="refusal">1 rows were changed since by someone else`)
	require.NotEqual(t, first, ranAt.FindString(r.body))
}

// csrfOf reads the CSRF token from a plan page.
func csrfOf(t *testing.T, body string) string {
	t.Helper()
	m := regexp.MustCompile(`<input type="hidden" name="csrf" value="([0-9a-f]+)">`).FindStringSubmatch(body)
	require.NotNil(t, m, "plan page has an undo form")
	return m[1]
}

func TestConsoleUndo(t *testing.T) {
	t.Parallel()
	s := newShop(t)
	after := s.contents(t)
	require.NotEqual(t, s.before, after)
	ts := s.server(t, func(o *console.Options) { o.AllowUndo = true })
	r := get(t, ts, "/plan/"+s.patch)
	require.Equal(t, http.StatusOK, r.status)
	csrf := csrfOf(t, r.body)

	post := func(form url.Values) response {
		return do(t, ts, http.MethodPost, "/undo/"+s.patch, form, "Bearer "+token)
	}
	// Not typed, mistyped, no CSRF token, a wrong one, another site: nothing changes.
	r = post(url.Values{"csrf": {csrf}})
	require.Equal(t, http.StatusBadRequest, r.status)
	require.Contains(t, r.body, "Type the session id "+s.patch+" exactly")
	require.Equal(t, after, s.contents(t))
	r = post(url.Values{"csrf": {csrf}, "confirm": {s.patch + "0"}})
	require.Equal(t, http.StatusBadRequest, r.status)
	require.Equal(t, after, s.contents(t))
	r = post(url.Values{"confirm": {s.patch}})
	require.Equal(t, http.StatusForbidden, r.status)
	require.Equal(t, after, s.contents(t))
	r = post(url.Values{"csrf": {strings.Repeat("0", len(csrf))}, "confirm": {s.patch}})
	require.Equal(t, http.StatusForbidden, r.status)
	require.Equal(t, after, s.contents(t))
	req, err := http.NewRequest(http.MethodPost, ts.URL+"/undo/"+s.patch, strings.NewReader(url.Values{"csrf": {csrf}, "confirm": {s.patch}}.Encode()))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Origin", "https://evil.example")
	res, err := noRedirect.Do(req)
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, http.StatusForbidden, res.StatusCode)
	require.Equal(t, after, s.contents(t))

	// Typed: the undo starts and the POST redirects to its run page, which
	// shows the result once done: the tables exactly as before the patch.
	r = post(url.Values{"csrf": {csrf}, "confirm": {s.patch}})
	require.Equal(t, http.StatusSeeOther, r.status, r.body)
	require.Regexp(t, `^/undo-run/\d+$`, r.header.Get("Location"))
	r = finished(t, ts, r.header.Get("Location"))
	require.Equal(t, http.StatusOK, r.status, r.body)
	require.Contains(t, r.body, "Undone: 7 rows written in one transaction")
	require.Equal(t, s.before, s.contents(t))
	undoSession := regexp.MustCompile(`recorded as session <a href="/session/([^"]+)">`).FindStringSubmatch(r.body)
	require.NotNil(t, undoSession)
	require.Contains(t, r.body, `<a href="/plan/`+undoSession[1]+`">`, "the redo link")

	// Twice: refused, nothing changes.
	r = post(url.Values{"csrf": {csrf}, "confirm": {s.patch}})
	require.Equal(t, http.StatusSeeOther, r.status, r.body)
	r = finished(t, ts, r.header.Get("Location"))
	require.Equal(t, http.StatusConflict, r.status)
	require.Contains(t, r.body, "already undone")
	require.Contains(t, r.body, "was refused; nothing was changed")
	require.Equal(t, s.before, s.contents(t))
	r = get(t, ts, "/")
	require.Contains(t, r.body, `<span class="undone">undone</span> by <a href="/session/`+undoSession[1]+`">`)
}

// finished reads an undo's run page until the undo is no longer running
// (202) and returns that page.
func finished(t *testing.T, ts *httptest.Server, path string) response {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		r := get(t, ts, path)
		if r.status != http.StatusAccepted || time.Now().After(deadline) {
			return r
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// lockOrders holds a SHARE lock on orders on a connection of its own, so
// that an undo started meanwhile waits when it writes orders (reads go on);
// release ends it.
func (s *shop) lockOrders(t *testing.T) (release func()) {
	t.Helper()
	ctx := context.Background()
	c := pgtest.Connect(t, s.url)
	tx, err := c.Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, "LOCK TABLE orders IN SHARE MODE")
	require.NoError(t, err)
	return func() { require.NoError(t, tx.Rollback(ctx)) }
}

// An undo runs in the background: its page shows the progress (202,
// reloading itself) while it waits for a lock; a second undo of the same
// session meanwhile is refused and starts nothing; the plan page links the
// running undo instead of offering another.
func TestConsoleUndoProgress(t *testing.T) {
	t.Parallel()
	s := newShop(t)
	after := s.contents(t)
	ts := s.server(t, func(o *console.Options) { o.AllowUndo = true })
	csrf := csrfOf(t, get(t, ts, "/plan/"+s.patch).body)
	form := url.Values{"csrf": {csrf}, "confirm": {s.patch}}

	release := s.lockOrders(t)
	r := do(t, ts, http.MethodPost, "/undo/"+s.patch, form, "Bearer "+token)
	require.Equal(t, http.StatusSeeOther, r.status, r.body)
	run := r.header.Get("Location")
	r = get(t, ts, run)
	require.Equal(t, http.StatusAccepted, r.status, r.body)
	require.Equal(t, "1", r.header.Get("Refresh"))
	require.Contains(t, r.body, `<p class="phase">Running <code>pgundo undo `+s.patch+`</code> since`)
	// The total comes from the dry run the plan page showed.
	require.Regexp(t, `<dd class="rows">\d of 7</dd>`, r.body)
	require.Contains(t, r.body, "if pgundo serve stops before the end, the transaction rolls back and nothing is changed")
	// It writes items, then waits for the lock on orders: 2 of 7 rows.
	for deadline := time.Now().Add(time.Minute); !strings.Contains(r.body, "undoing public.orders") && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		r = get(t, ts, run)
	}
	require.Equal(t, http.StatusAccepted, r.status, r.body)
	require.Contains(t, r.body, ": undoing public.orders (1 of 2 tables written).</p>")
	require.Contains(t, r.body, `<dd class="rows">2 of 7</dd>`)
	require.Contains(t, r.body, `<dd class="percent">28%</dd>`)
	require.Contains(t, r.body, `<progress max="100" value="28">`)
	require.Regexp(t, `<dd class="left">about [^<]+</dd>`, r.body)
	require.Contains(t, r.body, `<tr data-table="public.items"><td>public.items</td><td class="num">2</td><td class="num">2</td><td class="num">100</td></tr>`)
	require.Equal(t, after, s.contents(t), "nothing committed while it waits")

	r = do(t, ts, http.MethodPost, "/undo/"+s.patch, form, "Bearer "+token)
	require.Equal(t, http.StatusConflict, r.status, r.body)
	require.Contains(t, r.body, "an undo of session "+s.patch+" is already running")
	require.Contains(t, r.body, run)
	r = get(t, ts, "/plan/"+s.patch)
	require.Contains(t, r.body, `<a href="`+run+`">see its progress</a>`)
	require.NotContains(t, r.body, `name="confirm"`, "no second Undo form while one runs")

	release()
	r = finished(t, ts, run)
	require.Equal(t, http.StatusOK, r.status, r.body)
	require.Contains(t, r.body, "Undone: 7 rows written in one transaction")
	require.Equal(t, s.before, s.contents(t))
	require.Contains(t, r.body, `<p class="redo">`)
	// Done: the page stays (no reload), and another undo may be started
	// (and is refused by the undo itself: already undone).
	require.Empty(t, get(t, ts, run).header.Get("Refresh"))
	r = do(t, ts, http.MethodPost, "/undo/"+s.patch, form, "Bearer "+token)
	require.Equal(t, http.StatusSeeOther, r.status, r.body)
	require.Contains(t, finished(t, ts, r.header.Get("Location")).body, "already undone")
	require.Equal(t, http.StatusNotFound, get(t, ts, "/undo-run/999").status)
}

// A server closed while its undo runs rolls the undo back and says so.
func TestConsoleUndoStopped(t *testing.T) {
	t.Parallel()
	s := newShop(t)
	after := s.contents(t)
	cfg, err := pgx.ParseConfig(s.url)
	require.NoError(t, err)
	pool, err := console.Open(context.Background(), cfg, 0)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	srv, err := console.New(console.Options{Pool: pool, Token: token, PlanWait: time.Minute, AllowUndo: true})
	require.NoError(t, err)
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	csrf := csrfOf(t, get(t, ts, "/plan/"+s.patch).body)
	release := s.lockOrders(t)
	r := do(t, ts, http.MethodPost, "/undo/"+s.patch, url.Values{"csrf": {csrf}, "confirm": {s.patch}}, "Bearer "+token)
	require.Equal(t, http.StatusSeeOther, r.status, r.body)
	run := r.header.Get("Location")
	require.Equal(t, http.StatusAccepted, get(t, ts, run).status)
	srv.Close()
	r = get(t, ts, run)
	require.Equal(t, http.StatusInternalServerError, r.status, r.body)
	require.Contains(t, r.body, "pgundo serve stopped before the undo committed, so its transaction rolled back: nothing was changed")
	require.Contains(t, r.body, `<a href="/plan/`+s.patch+`">the plan again</a>`)
	release()
	require.Equal(t, after, s.contents(t))
}

// fix runs a second session under the patch's tag, in two transactions:
// one updates item (1, 1), the other inserts item (2, 1). It returns the
// session id and the two transaction ids (xid8, as text).
func (s *shop) fix(t *testing.T) (id, tx1, tx2 string) {
	t.Helper()
	id = s.runAs(t, "fix.py", `SET pgundo.tag = 'ticket-123';
		BEGIN; UPDATE items SET sku = 'A-2' WHERE order_id = 1; COMMIT;
		BEGIN; INSERT INTO items VALUES (2, 1, 'B-1'); COMMIT;`)
	rows, err := s.conn.Query(context.Background(), `SELECT xid::text FROM pgundo.stmt WHERE session_id = $1 ORDER BY id`, id)
	require.NoError(t, err)
	xids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.Len(t, xids, 2)
	return id, xids[0], xids[1]
}

// Plans by tag and by transaction: the counts of what the tag (over two
// sessions) or one transaction changed, the script, a conflict, and the
// links from the sessions and session pages.
func TestConsolePlanByTagAndTx(t *testing.T) {
	t.Parallel()
	s := newShop(t)
	fix, tx1, tx2 := s.fix(t)
	ts := s.server(t, nil)

	r := get(t, ts, "/")
	require.Contains(t, r.body, `<a class="plantag" href="/plan?tag=ticket-123"`)
	r = get(t, ts, "/session/"+fix)
	require.Contains(t, r.body, `<a class="plantag" href="/plan?tag=ticket-123">`)
	require.Contains(t, r.body, `<tr data-xid="`+tx1+`"><td>`+tx1+`</td><td class="num">1</td><td class="num">1</td>`)
	require.Contains(t, r.body, `<a class="plantx" href="/plan?tx=`+tx1+`">`)
	require.Contains(t, r.body, `<a class="plantx" href="/plan?tx=`+tx2+`">`)
	require.Equal(t, 2, strings.Count(r.body, `<a class="plantx"`))

	r = get(t, ts, "/plan?tag=ticket-123")
	require.Equal(t, http.StatusOK, r.status, r.body)
	require.Contains(t, r.body, "<title>Undo plan of tag &#34;ticket-123&#34; · pgundo</title>")
	require.Contains(t, r.body, "<code>pgundo undo --tag ticket-123</code>")
	require.Equal(t, map[string][3]string{"public.orders": {"3", "1", "1"}, "public.items": {"1", "2", "1"}}, planCounts(r.body))
	require.Contains(t, r.body, `<a href="/session/`+s.patch+`">`)
	require.Contains(t, r.body, `<a href="/session/`+fix+`">`)
	require.Contains(t, r.body, `href="/plan/undo.sql?tag=ticket-123"`)
	require.NotContains(t, r.body, `name="confirm"`, "no undo form without AllowUndo")
	sql := get(t, ts, "/plan/undo.sql?tag=ticket-123")
	require.Equal(t, http.StatusOK, sql.status, sql.body)
	require.Equal(t, `attachment; filename="pgundo-undo-tag-ticket-123.sql"`, sql.header.Get("Content-Disposition"))
	require.Contains(t, sql.body, "BEGIN")
	require.Contains(t, sql.body, "COMMIT")

	r = get(t, ts, "/plan?tx="+tx2)
	require.Equal(t, http.StatusOK, r.status, r.body)
	require.Contains(t, r.body, "<code>pgundo undo --tx "+tx2+"</code>")
	require.Equal(t, map[string][3]string{"public.items": {"0", "0", "1"}}, planCounts(r.body))
	sql = get(t, ts, "/plan/undo.sql?tx="+tx2)
	require.Equal(t, http.StatusOK, sql.status, sql.body)
	require.Equal(t, `attachment; filename="pgundo-undo-tx-`+tx2+`.sql"`, sql.header.Get("Content-Disposition"))

	for q, want := range map[string]int{"": 400, "?tag=": 400, "?tx=abc": 400, "?tag=a&tx=1": 400, "?tag=nope": 404, "?tx=1": 404} {
		r := get(t, ts, "/plan"+q)
		require.Equal(t, want, r.status, q)
	}

	// Someone changes a row the tag's sessions changed: a conflict, with who.
	clerk := s.runAs(t, "clerk", "UPDATE orders SET note = 'called' WHERE id = 3")
	r = get(t, ts, "/plan?tag=ticket-123")
	require.Equal(t, http.StatusConflict, r.status, r.body)
	require.Contains(t, r.body, `<p class="refusal">1 rows were changed since by someone else`)
	require.Regexp(t, `<tr class="conflict"><td>public.orders</td><td>id=3</td><td>[^<]+</td><td>note</td><td><a href="/session/`+regexp.QuoteMeta(clerk)+`">`, r.body)
	require.NotContains(t, r.body, `/undo.sql`, "no script for a refused undo")
	// The transactions of fix.py did not touch order 3.
	require.Equal(t, http.StatusOK, get(t, ts, "/plan?tx="+tx2).status)
}

// Undo by transaction and by tag: not typed, nothing; typed, exactly as
// before.
func TestConsoleUndoByTagAndTx(t *testing.T) {
	t.Parallel()
	s := newShop(t)
	_, _, tx2 := s.fix(t)
	after := s.contents(t)
	ts := s.server(t, func(o *console.Options) { o.AllowUndo = true })
	r := get(t, ts, "/plan?tx="+tx2)
	require.Contains(t, r.body, `<form class="undo" method="post" action="/undo?tx=`+tx2+`">`)
	require.Contains(t, r.body, "Type the transaction id <code>"+tx2+"</code> to undo it")
	csrf := csrfOf(t, r.body)

	// The second transaction of fix.py: item (2, 1) goes away.
	r = do(t, ts, http.MethodPost, "/undo?tx="+tx2, url.Values{"csrf": {csrf}, "confirm": {"2"}}, "Bearer "+token)
	require.Equal(t, http.StatusBadRequest, r.status)
	require.Contains(t, r.body, "Type the transaction id "+tx2+" exactly to confirm the undo. Nothing was changed.")
	require.Equal(t, after, s.contents(t))
	r = do(t, ts, http.MethodPost, "/undo?tx="+tx2, url.Values{"csrf": {csrf}, "confirm": {tx2}}, "Bearer "+token)
	require.Equal(t, http.StatusSeeOther, r.status, r.body)
	r = finished(t, ts, r.header.Get("Location"))
	require.Equal(t, http.StatusOK, r.status, r.body)
	require.Contains(t, r.body, "Undone: 1 rows written in one transaction")
	want := s.contents(t)
	want["items"] = slices.DeleteFunc(slices.Clone(after["items"]), func(row string) bool { return row == "(2,1,B-1)" })
	require.Len(t, want["items"], len(after["items"])-1)
	require.Equal(t, want, s.contents(t))

	// The tag: what is left of both sessions (the other transaction and
	// the whole patch), so the tables are exactly as before the patch.
	r = do(t, ts, http.MethodPost, "/undo?tag=ticket-123", url.Values{"csrf": {csrf}, "confirm": {"ticket-12"}}, "Bearer "+token)
	require.Equal(t, http.StatusBadRequest, r.status)
	require.Contains(t, r.body, "Type the tag ticket-123 exactly")
	r = do(t, ts, http.MethodPost, "/undo?tag=ticket-123", url.Values{"csrf": {csrf}, "confirm": {"ticket-123"}}, "Bearer "+token)
	require.Equal(t, http.StatusSeeOther, r.status, r.body)
	r = finished(t, ts, r.header.Get("Location"))
	require.Equal(t, http.StatusOK, r.status, r.body)
	require.Contains(t, r.body, "Undone: 8 rows written in one transaction")
	require.Equal(t, s.before, s.contents(t))
	// Bad targets start nothing.
	r = do(t, ts, http.MethodPost, "/undo?tx=x", url.Values{"csrf": {csrf}, "confirm": {"x"}}, "Bearer "+token)
	require.Equal(t, http.StatusBadRequest, r.status)
}

func TestConsoleUndoOff(t *testing.T) {
	t.Parallel()
	s := newShop(t)
	after := s.contents(t)
	off := s.server(t, nil)
	on := s.server(t, func(o *console.Options) { o.AllowUndo = true })
	// A CSRF token from a console that allows undo is no key to one that does not.
	csrf := csrfOf(t, get(t, on, "/plan/"+s.patch).body)
	r := do(t, off, http.MethodPost, "/undo/"+s.patch, url.Values{"csrf": {csrf}, "confirm": {s.patch}}, "Bearer "+token)
	require.Equal(t, http.StatusForbidden, r.status)
	require.Contains(t, r.body, "started without --allow-undo; nothing was changed")
	require.Equal(t, after, s.contents(t))
	_, tx1, _ := s.fix(t)
	after = s.contents(t)
	for _, p := range []string{"/undo?tag=ticket-123", "/undo?tx=" + tx1} {
		r := do(t, off, http.MethodPost, p, url.Values{"csrf": {csrf}, "confirm": {"ticket-123"}}, "Bearer "+token)
		require.Equal(t, http.StatusForbidden, r.status, p)
		require.Contains(t, r.body, "started without --allow-undo; nothing was changed")
		// A GET of the endpoint: only POST is served.
		require.Equal(t, http.StatusMethodNotAllowed, get(t, off, p).status, p)
	}
	require.Equal(t, http.StatusForbidden, get(t, off, "/undo-run/1").status)
	require.Equal(t, after, s.contents(t))
	for _, p := range []string{"/", "/session/" + s.patch, "/plan/" + s.patch, "/plan?tag=ticket-123", "/plan?tx=" + tx1} {
		r := get(t, off, p)
		require.Equal(t, http.StatusOK, r.status, p)
		require.NotContains(t, r.body, `action="/undo`, p)
		require.NotContains(t, r.body, `name="confirm"`, p)
	}
}

func TestConsoleStatus(t *testing.T) {
	t.Parallel()
	s := newShop(t)
	ts := s.server(t, nil)
	r := get(t, ts, "/status")
	require.Equal(t, http.StatusOK, r.status)
	require.Contains(t, r.body, "Capture is whole on every tracked table.")
	require.Contains(t, r.body, `<tr class="healthy"><td>public.items</td>`)
	require.Contains(t, r.body, `<dt>sessions</dt><dd>1</dd>`)
	// The patch's 5 statements (one updated two rows), exact on a small log.
	require.Contains(t, r.body, `<dt>statements</dt><dd>5</dd>`)
	require.Contains(t, r.body, "The log was never sealed: run <code>pgundo verify</code>")

	// Sealed (as pgundo verify does: the first call marks a cut, the next
	// seals up to it): the newest seal's time, last statement, head hash
	// and the number of seals, as in pgundo.seal.
	pgtest.Exec(t, s.conn, `SELECT pgundo.seal()`)
	pgtest.Exec(t, s.conn, `SELECT pgundo.seal()`)
	var hash, at string
	var upto int64
	require.NoError(t, s.conn.QueryRow(context.Background(), `SELECT hash, to_stmt, to_char(sealed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') FROM pgundo.seal ORDER BY id DESC LIMIT 1`).Scan(&hash, &upto, &at))
	r = get(t, ts, "/status")
	require.NotContains(t, r.body, "never sealed")
	require.Contains(t, r.body, fmt.Sprintf(`<dt>up to statement</dt><dd>%d</dd><dt>head hash</dt><dd><code>%s</code></dd><dt>seals</dt><dd>1</dd>`, upto, hash))
	require.Contains(t, r.body, "<dt>last sealed</dt><dd>"+at)

	// A big log (by the planner's estimate) is not counted row by row: the
	// estimate of the log tables plus the journal's rows (none, folded).
	pgtest.Exec(t, s.conn, `SELECT pgundo.fold(); UPDATE pg_class SET reltuples = 2000000 WHERE oid = 'pgundo.stmt_c0'::regclass`)
	r = get(t, ts, "/status")
	require.Contains(t, r.body, `<dt>statements</dt><dd>about 2000000</dd>`)
	pgtest.Exec(t, s.conn, `ANALYZE pgundo.stmt_c0`)

	pgtest.Exec(t, s.conn, "ALTER TABLE orders DISABLE TRIGGER pgundo_capture_update")
	r = get(t, ts, "/status")
	require.Equal(t, http.StatusOK, r.status)
	require.Contains(t, r.body, `<p class="refusal">Capture is broken`)
	require.Contains(t, r.body, `<tr class="broken"><td>public.orders</td><td>-</td>`)
	require.Contains(t, r.body, "trigger pgundo_capture_update is disabled")
	require.Contains(t, r.body, `<code>pgundo track public.orders</code>`)
	require.NotContains(t, r.body, "Event trigger")

	// Without pgundo's event triggers: what each one's absence costs, and
	// what restores it.
	pgtest.Exec(t, s.conn, `DROP EVENT TRIGGER pgundo_reclass; DROP EVENT TRIGGER pgundo_ddl; ALTER EVENT TRIGGER pgundo_drop DISABLE`)
	r = get(t, ts, "/status")
	require.Contains(t, r.body, `<p class="warn">event triggers absent (pgundo_ddl): partitions created from now on are not captured until pgundo track runs again on their parent; pgundo install run as a superuser creates them.</p>`)
	require.Contains(t, r.body, `<p class="warn">event triggers disabled (pgundo_drop): a dropped tracked table stays in the tracked list until pgundo untrack; as a superuser, ALTER EVENT TRIGGER ... ENABLE re-enables each.</p>`)
	require.Contains(t, r.body, `<p class="warn">event trigger pgundo_reclass absent: capture checks every output setting on every table (about 60% more CPU per captured statement); pgundo install run as a superuser creates it.</p>`)
}

func TestConsoleActivity(t *testing.T) {
	t.Parallel()
	s := newShop(t)
	s.runAs(t, "clerk", "UPDATE items SET sku = 'A-9' WHERE order_id = 1")
	ts := s.server(t, nil)
	r := get(t, ts, "/activity?since=1h")
	require.Equal(t, http.StatusOK, r.status, r.body)
	require.Contains(t, r.body, "8 row changes from")
	// One rect per data point (series, minute), summing to each table's changes.
	points := regexp.MustCompile(`<rect class="point" [^>]*data-series="([^"]+)" data-bucket="([^"]+)" data-count="(\d+)">`).FindAllStringSubmatch(r.body, -1)
	require.NotEmpty(t, points)
	sum := map[string]int{}
	for _, p := range points {
		var n int
		fmt.Sscan(p[3], &n)
		sum[p[1]] += n
	}
	require.Equal(t, map[string]int{"public.orders": 5, "public.items": 3}, sum)

	r = get(t, ts, "/activity?since=1h&by=app")
	sum = map[string]int{}
	for _, p := range regexp.MustCompile(`data-series="([^"]+)" data-bucket="[^"]+" data-count="(\d+)"`).FindAllStringSubmatch(r.body, -1) {
		var n int
		fmt.Sscan(p[2], &n)
		sum[p[1]] += n
	}
	require.Equal(t, map[string]int{"patch.py": 7, "clerk": 1}, sum)

	r = get(t, ts, "/activity?since=30d&bucket=minute")
	require.Equal(t, http.StatusBadRequest, r.status)
	require.Contains(t, r.body, "too many bars")
}

func TestConsoleStatementTimeout(t *testing.T) {
	t.Parallel()
	s := newShop(t)
	cfg, err := pgx.ParseConfig(s.url)
	require.NoError(t, err)
	pool, err := console.Open(context.Background(), cfg, 1234*time.Millisecond)
	require.NoError(t, err)
	defer pool.Close()
	var v string
	require.NoError(t, pool.QueryRow(context.Background(), "SHOW statement_timeout").Scan(&v))
	require.Equal(t, "1234ms", v)

	// After a plan (run under the undo timeout), pages are back under the
	// page timeout.
	srv, err := console.New(console.Options{Pool: pool, Token: token, UndoTimeout: time.Minute, PlanWait: time.Minute})
	require.NoError(t, err)
	defer srv.Close()
	ts := httptest.NewServer(srv)
	defer ts.Close()
	require.Equal(t, http.StatusOK, get(t, ts, "/plan/"+s.patch).status)
	for range 4 { // every connection of the pool
		c, err := pool.Acquire(context.Background())
		require.NoError(t, err)
		defer c.Release()
		require.NoError(t, c.QueryRow(context.Background(), "SHOW statement_timeout").Scan(&v))
		require.Equal(t, "1234ms", v)
	}
}

// sizeDots returns the samples the status page's size chart draws, as
// "at=bytes".
func sizeDots(body string) []string {
	var out []string
	for _, m := range regexp.MustCompile(`<circle class="point" [^>]*data-at="([^"]+)" data-bytes="(\d+)">`).FindAllStringSubmatch(body, -1) {
		out = append(out, m[1]+"="+m[2])
	}
	return out
}

// dbSamples returns pgundo.size_sample as sizeDots shows it, oldest first.
func dbSamples(t *testing.T, conn *pgx.Conn) []string {
	t.Helper()
	rows, err := conn.Query(context.Background(), `SELECT at, log_bytes FROM pgundo.size_sample ORDER BY at`)
	require.NoError(t, err)
	var out []string
	var at time.Time
	var b int64
	_, err = pgx.ForEachRow(rows, []any{&at, &b}, func() error {
		out = append(out, fmt.Sprintf("%s=%d", timefmt.Format(at), b))
		return nil
	})
	require.NoError(t, err)
	return out
}

func TestConsoleSizeChart(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newShop(t)
	ts := s.server(t, func(o *console.Options) { o.NoSummaryRefresh = true })
	one := func(sql string, args ...any) (v int64) {
		t.Helper()
		require.NoError(t, s.conn.QueryRow(ctx, sql, args...).Scan(&v))
		return v
	}
	ok := func(sql string) (v bool) {
		t.Helper()
		require.NoError(t, s.conn.QueryRow(ctx, sql).Scan(&v))
		return v
	}

	// A fresh install has the one sample taken by the migration: the page
	// says so, with its value, and draws no chart.
	var at time.Time
	var b0 int64
	require.NoError(t, s.conn.QueryRow(ctx, `SELECT at, log_bytes FROM pgundo.size_sample`).Scan(&at, &b0))
	r := get(t, ts, "/status")
	require.Equal(t, http.StatusOK, r.status, r.body)
	require.Contains(t, r.body, fmt.Sprintf("Only one measurement of the log's size in this range so far: %s at %s.", humanize.Bytes(b0), timefmt.Format(at)))
	require.NotContains(t, r.body, `<svg class="chart size"`)

	// At most one sample every 10 minutes, unless forced; what is recorded
	// is the status page's size of the log at that moment.
	require.False(t, ok(`SELECT pgundo.sample_size()`))
	require.True(t, ok(`SELECT pgundo.sample_size(interval '0')`))
	require.Equal(t, int64(2), one(`SELECT count(*) FROM pgundo.size_sample`))
	require.Equal(t, one(`SELECT pgundo._log_bytes() + pg_total_relation_size('pgundo.session')`),
		one(`SELECT log_bytes FROM pgundo.size_sample ORDER BY at DESC LIMIT 1`))
	// refresh_summaries and seal sample when the newest sample is older than
	// 10 minutes, and not otherwise.
	pgtest.Exec(t, s.conn, `UPDATE pgundo.size_sample SET at = at - interval '11 minutes'`)
	one(`SELECT pgundo.refresh_summaries()`)
	require.Equal(t, int64(3), one(`SELECT count(*) FROM pgundo.size_sample`))
	one(`SELECT pgundo.refresh_summaries()`)
	one(`SELECT pgundo.seal()`)
	require.Equal(t, int64(3), one(`SELECT count(*) FROM pgundo.size_sample`))
	pgtest.Exec(t, s.conn, `UPDATE pgundo.size_sample SET at = at - interval '11 minutes'`)
	one(`SELECT pgundo.seal()`)
	require.Equal(t, int64(4), one(`SELECT count(*) FROM pgundo.size_sample`))

	// The chart draws every sample, exactly as recorded.
	r = get(t, ts, "/status")
	require.Contains(t, r.body, `<svg class="chart size"`)
	require.Contains(t, r.body, "4 measurements of the log's size from")
	require.Equal(t, dbSamples(t, s.conn), sizeDots(r.body))

	// A prune drops the patch's chunk: it records the size after the drop
	// at once, a fall from the sample before it, and forgets the samples
	// older than its cut.
	// The cut: the newest sample's time, after the patch.
	require.Equal(t, int64(1), one(`SELECT count(*) FROM pgundo.prune((SELECT max(at) FROM pgundo.size_sample))`))
	samples := dbSamples(t, s.conn)
	require.Len(t, samples, 2, "the sample after the cut and the one the prune took")
	before := one(`SELECT log_bytes FROM pgundo.size_sample ORDER BY at LIMIT 1`)
	after := one(`SELECT log_bytes FROM pgundo.size_sample ORDER BY at DESC LIMIT 1`)
	require.Less(t, after, before, "the drop shows as a fall")
	require.Equal(t, after, one(`SELECT pgundo._log_bytes() + pg_total_relation_size('pgundo.session')`))
	r = get(t, ts, "/status")
	require.Equal(t, samples, sizeDots(r.body))

	// A range with more samples than the chart draws: the newest sample of
	// each equal span, each as recorded.
	base := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	pgtest.Exec(t, s.conn, `INSERT INTO pgundo.size_sample SELECT $1::timestamptz + i * interval '1 hour', 1000 + i, i FROM generate_series(0, 9) i`, base)
	got, n, err := history.SizeSamples(ctx, s.conn, base, base.Add(10*time.Hour), 2)
	require.NoError(t, err)
	require.Equal(t, int64(10), n)
	require.Len(t, got, 2)
	require.Equal(t, []history.SizeSample{{At: base.Add(4 * time.Hour), Bytes: 1004, ChangesEstimate: 4}, {At: base.Add(9 * time.Hour), Bytes: 1009, ChangesEstimate: 9}},
		[]history.SizeSample{{At: got[0].At.UTC(), Bytes: got[0].Bytes, ChangesEstimate: got[0].ChangesEstimate}, {At: got[1].At.UTC(), Bytes: got[1].Bytes, ChangesEstimate: got[1].ChangesEstimate}})

	r = get(t, ts, "/status?size_since=tomorrow")
	require.Equal(t, http.StatusBadRequest, r.status)
}
