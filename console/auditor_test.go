package console_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/pgundo/pgundo/console"
	"github.com/pgundo/pgundo/history"
	"github.com/pgundo/pgundo/internal/pgtest"
	"github.com/pgundo/pgundo/triggers"
	"github.com/pgundo/pgundo/undo"
)

// auditorSessions reads every session from pgundo.session_totals as the
// auditor console reads them.
func auditorSessions(t *testing.T, conn *pgx.Conn) []history.Session {
	t.Helper()
	rows, err := conn.Query(context.Background(), `SELECT v.id, v.application_name, v.login_user, v.roles::text[],
		v.backend_start, v.first_change_at, v.last_change_at, coalesce(host(v.client_addr), ''), v.pid,
		v.changes, v.transactions, v.tables, v.tags, v.undo_of, v.undone_by, v.undone_by_all, v.undo_state
		  FROM pgundo.session_totals v ORDER BY v.last_change_at DESC, v.id DESC`)
	require.NoError(t, err)
	ss, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (history.Session, error) {
		var s history.Session
		err := r.Scan(&s.ID, &s.ApplicationName, &s.User, &s.Roles, &s.StartedAt, &s.FirstChangeAt, &s.LastChangeAt,
			&s.ClientAddr, &s.PID, &s.Changes, &s.Transactions, &s.Tables, &s.Tags, &s.UndoOf, &s.UndoneBy, &s.UndoneByAll, &s.UndoState)
		return s, err
	})
	require.NoError(t, err)
	return ss
}

var (
	planLink = regexp.MustCompile(`<a href="/plan/[^"]+">plan undo</a>|<p><a class="button" href="/plan/[^"]+">Plan the undo of this session</a></p>`)
	// tagPlanLink is a tag linked to the plan of its undo (owner only): the
	// auditor's page shows the tag as text.
	tagPlanLink  = regexp.MustCompile(`<a class="plantag" href="/plan\?tag=[^"]*" title="[^"]*">([^<]*)</a>| \(<a class="plantag" href="/plan\?tag=[^"]*">plan the undo of the tag</a>\)`)
	sessionsTb   = regexp.MustCompile(`(?s)<tbody>.*</tbody>`)
	facts        = regexp.MustCompile(`(?s)<dl class="facts">.*?</dl>`)
	countsTb     = regexp.MustCompile(`(?s)<table class="list counts">.*?</table>`)
	unchangedRow = regexp.MustCompile(`<tr class=""><th>.*?</tr>`)
	changeDiv    = regexp.MustCompile(`(?s)· stmt (\d+)</span>.*?<tbody>(.*?)</tbody>`)
)

// TestConsoleAuditorSameAsOwner: an auditor's console lists the same
// sessions with the same totals, and the same counts per table on a
// session's page, as the installing role's, exactly, however far the
// summaries are refreshed (none, to the middle of a transaction, all), with
// sessions over two log chunks, roles, tags, and full and partial undos.
func TestConsoleAuditorSameAsOwner(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newShop(t)
	b := make([]byte, 4)
	_, err := rand.Read(b)
	require.NoError(t, err)
	aud, writer := "caud_"+hex.EncodeToString(b), "cwriter_"+hex.EncodeToString(b)
	pgtest.Exec(t, s.conn, fmt.Sprintf(`CREATE ROLE %s LOGIN; CREATE ROLE %s; GRANT ALL ON orders, items TO %s;
		CREATE TABLE "Odd ""Name""" (id int PRIMARY KEY, v text)`, aud, writer, writer))
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), pgtest.AdminConnString())
		if err == nil {
			_, _ = c.Exec(context.Background(), "DROP ROLE IF EXISTS "+aud)
			c.Close(context.Background())
		}
	})
	_, err = history.GrantAuditor(ctx, s.conn, aud, false)
	require.NoError(t, err)
	_, err = triggers.Track(ctx, s.conn, []string{`"Odd ""Name"""`})
	require.NoError(t, err)

	// Sessions: several transactions, SET ROLE, tags, two tables, a
	// multi-row statement.
	clerk := s.runAs(t, "clerk", fmt.Sprintf(`
		BEGIN; UPDATE orders SET note = 'a' WHERE id = 1; UPDATE orders SET note = 'b' WHERE id = 2; COMMIT;
		BEGIN; SET LOCAL pgundo.tag = 't-1'; INSERT INTO "Odd ""Name""" SELECT g, 'x' FROM generate_series(1, 30) g; COMMIT;
		SET ROLE %s; UPDATE items SET sku = sku || '!'; RESET ROLE;
		UPDATE "Odd ""Name""" SET v = 'y' WHERE id <= 10`, writer))
	other := s.runAs(t, "other", `INSERT INTO orders VALUES (10, 'zed', NULL, 3.00); INSERT INTO orders VALUES (11, 'zoe', NULL, 4.00)`)

	owner := s.server(t, func(o *console.Options) { o.NoSummaryRefresh = true })
	audTS := s.serverAs(t, aud, func(o *console.Options) { o.Auditor, o.NoSummaryRefresh = true, true })
	cfg, err := pgx.ParseConfig(s.url)
	require.NoError(t, err)
	cfg.User = aud
	audConn, err := pgx.ConnectConfig(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { audConn.Close(context.Background()) })

	same := func(state string) {
		t.Helper()
		want, err := history.Sessions(ctx, s.conn, history.SessionFilter{})
		require.NoError(t, err)
		require.NotEmpty(t, want)
		got := auditorSessions(t, audConn)
		require.Equal(t, want, got, state)

		ro, ra := get(t, owner, "/"), get(t, audTS, "/")
		require.Equal(t, http.StatusOK, ra.status, ra.body)
		require.Equal(t, tagPlanLink.ReplaceAllString(planLink.ReplaceAllString(sessionsTb.FindString(ro.body), ""), "$1"), sessionsTb.FindString(ra.body), state)
		for _, ss := range want {
			ro, ra := get(t, owner, "/session/"+ss.ID), get(t, audTS, "/session/"+ss.ID)
			require.Equal(t, http.StatusOK, ra.status, ra.body)
			require.Equal(t, tagPlanLink.ReplaceAllString(facts.FindString(ro.body), "$1"), facts.FindString(ra.body), state+" "+ss.ID)
			require.Equal(t, countsTb.FindString(ro.body), countsTb.FindString(ra.body), state+" "+ss.ID)
			require.Equal(t, len(regexp.MustCompile(`<div class="change`).FindAllString(ro.body, -1)),
				len(regexp.MustCompile(`<div class="change`).FindAllString(ra.body, -1)), state+" "+ss.ID)
		}
	}
	same("no summaries")
	// The watermark inside the clerk's first transaction: after its first
	// statement, before its second.
	var first, second, n, mark int64
	require.NoError(t, s.conn.QueryRow(ctx, `SELECT min(id), (SELECT id FROM pgundo.stmt WHERE session_id = $1 ORDER BY id OFFSET 1 LIMIT 1),
		(SELECT count(*) FROM pgundo.stmt WHERE id <= (SELECT min(id) FROM pgundo.stmt WHERE session_id = $1))
		  FROM pgundo.stmt WHERE session_id = $1`, clerk).Scan(&first, &second, &n))
	require.NoError(t, s.conn.QueryRow(ctx, `SELECT pgundo.refresh_summaries($1)`, n).Scan(&n))
	require.NoError(t, s.conn.QueryRow(ctx, `SELECT done_below FROM pgundo.sum_state`).Scan(&mark))
	require.Equal(t, first, mark)
	require.Less(t, mark, second)
	same("summaries up to the middle of a transaction")
	// The installing role's own session, before and after the rotation.
	pgtest.Exec(t, s.conn, `UPDATE orders SET note = 'pre' WHERE id = 3`)

	// The next statements in the next chunk: the clerk's session spans two.
	var rotated *int64
	require.NoError(t, s.conn.QueryRow(ctx, `SELECT pgundo.rotate()`).Scan(&rotated))
	require.NotNil(t, rotated)
	_, err = undo.Apply(ctx, s.conn, undo.Selection{Sessions: []string{other}}, undo.Options{}, nil)
	require.NoError(t, err)
	var xid uint64
	require.NoError(t, s.conn.QueryRow(ctx, `SELECT xid::text::bigint FROM pgundo.stmt WHERE session_id = $1 ORDER BY id LIMIT 1`, clerk).Scan(&xid))
	_, err = undo.Apply(ctx, s.conn, undo.Selection{TxIDs: []uint64{xid}}, undo.Options{}, nil)
	require.NoError(t, err)
	var chunks int64
	require.NoError(t, s.conn.QueryRow(ctx, `SELECT count(DISTINCT id / pgundo._chunk_size()) FROM pgundo.stmt WHERE session_id = (SELECT undo_session FROM pgundo.undo WHERE undone_session = $1)`, other).Scan(&chunks))
	require.Equal(t, int64(2), chunks, "the undoing session spans two chunks")
	same("undos in the next chunk, summaries behind")
	for {
		require.NoError(t, s.conn.QueryRow(ctx, `SELECT pgundo.refresh_summaries(5)`).Scan(&n))
		same(fmt.Sprintf("refreshed %d more", n))
		if n == 0 {
			break
		}
	}
	// A session's changes page by page: the same pages, holding the same
	// changes (within a page the owner's are ordered by key).
	ownerP := s.server(t, func(o *console.Options) { o.NoSummaryRefresh, o.PageSize = true, 7 })
	audP := s.serverAs(t, aud, func(o *console.Options) { o.Auditor, o.NoSummaryRefresh, o.PageSize = true, true, 7 })
	for _, ts := range []string{clerk, s.patch} {
		var pages [2][]string
		for i, srv := range []*httptest.Server{ownerP, audP} {
			for p := 1; ; p++ {
				r := get(t, srv, fmt.Sprintf("/session/%s?page=%d", ts, p))
				require.Equal(t, http.StatusOK, r.status, r.body)
				var page []string
				for _, m := range changeDiv.FindAllStringSubmatch(r.body, -1) {
					// The owner's page shows an update's key columns
					// unchanged too; the auditor's, without the key, only
					// what changed.
					cells := strings.ReplaceAll(m[2], " keycol", "")
					if strings.Contains(cells, `class="changed"`) {
						cells = unchangedRow.ReplaceAllString(cells, "")
					}
					page = append(page, m[1]+" "+cells)
				}
				slices.Sort(page)
				pages[i] = append(pages[i], strings.Join(page, "\n"))
				if !strings.Contains(r.body, `rel="next"`) {
					break
				}
			}
		}
		require.Equal(t, pages[0], pages[1], ts)
		if ts == clerk {
			require.Equal(t, 7, len(pages[0]), "the clerk's 43 changes on 7 pages")
		}
	}

	// An auditor's console keeps the summaries current itself.
	pgtest.Exec(t, s.conn, `UPDATE orders SET note = 'later' WHERE id = 5`)
	s.serverAs(t, aud, func(o *console.Options) { o.Auditor = true })
	require.Eventually(t, func() bool {
		var behind bool
		require.NoError(t, s.conn.QueryRow(ctx, `SELECT (SELECT done_below FROM pgundo.sum_state) < (SELECT max(id) FROM pgundo.stmt)`).Scan(&behind))
		return !behind
	}, 30*time.Second, 50*time.Millisecond)
	same("refreshed by the auditor's console")

	states := map[string]int{}
	for _, ss := range auditorSessions(t, audConn) {
		if ss.UndoState != nil {
			states[*ss.UndoState]++
		}
	}
	require.Equal(t, map[string]int{"undone": 1, "partly undone": 1}, states)
}

// serverAs starts a console on the shop's database as role.
func (s *shop) serverAs(t *testing.T, role string, mod func(*console.Options)) *httptest.Server {
	t.Helper()
	cfg, err := pgx.ParseConfig(s.url)
	require.NoError(t, err)
	cfg.User = role
	pool, err := console.Open(context.Background(), cfg, 0)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	o := console.Options{Pool: pool, Token: token}
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
