package history_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/pgundo/pgundo/history"
	"github.com/pgundo/pgundo/internal/pgtest"
	pgsql "github.com/pgundo/pgundo/sql"
	"github.com/pgundo/pgundo/triggers"
	"github.com/pgundo/pgundo/undo"
)

// TestMain runs the tests against a throwaway PostgreSQL whose template
// database has pgundo installed.
func TestMain(m *testing.M) {
	os.Exit(pgtest.Run(m, func(ctx context.Context, conn *pgx.Conn) error {
		_, err := pgsql.Migrate(ctx, conn)
		return err
	}))
}

// fakeSessions writes n sessions straight into pgundo's log, each with 1 to
// 20 statements at random times over ten days, their statement ids in an
// order unrelated to their times (so the newest ids are not the newest
// statements), two sessions sharing their last change time, and a third of
// them with application_name "odd".
func fakeSessions(t *testing.T, conn *pgx.Conn, n int) {
	t.Helper()
	ctx := context.Background()
	rnd := rand.New(rand.NewPCG(7, 11))
	base := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	type st struct {
		session string
		at      time.Time
		app     string
	}
	var stmts []st
	for i := range n {
		id := fmt.Sprintf("f%x.%x", i+1, i+1)
		app := "even"
		if i%3 == 0 {
			app = "odd"
		}
		pgtest.Exec(t, conn, fmt.Sprintf(`INSERT INTO pgundo.session (id, pid, backend_start, session_role, application_name)
			VALUES ('%s', %d, '%s', current_user, '%s')`, id, i+1, base.Format(time.RFC3339), app))
		for range 1 + rnd.IntN(20) {
			stmts = append(stmts, st{id, base.Add(time.Duration(rnd.Int64N(int64(240 * time.Hour)))).Truncate(time.Second), app})
		}
	}
	// A tie: sessions 1 and 2 both last changed at the newest time of all.
	last := base.Add(241 * time.Hour)
	stmts = append(stmts, st{"f1.1", last, "odd"}, st{"f2.2", last, "even"})
	rnd.Shuffle(len(stmts), func(i, j int) { stmts[i], stmts[j] = stmts[j], stmts[i] })
	for i, s := range stmts {
		_, err := conn.Exec(ctx, `INSERT INTO pgundo.stmt_log (id, session_id, xid, at, op, relid, schema_name, table_name, rows, role, application_name)
			VALUES (nextval('pgundo.stmt_id_seq'), $1, ($2::bigint)::text::xid8, $3, 'U', 'pg_class'::regclass, 'public', 't', 1, current_user, $4)`,
			s.session, 1000+i, s.at, s.app)
		require.NoError(t, err)
	}
}

func ids(ss []history.Session) []string {
	out := []string{}
	for _, s := range ss {
		out = append(out, s.ID)
	}
	return out
}

// TestSessionsOffset: every page (Offset, Limit) of Sessions is exactly
// that slice of the whole list, in the order of an independent query (last
// change time, then id, descending), with and without a filter, session
// fields and all.
func TestSessionsOffset(t *testing.T) {
	ctx := context.Background()
	conn := pgtest.Connect(t, pgtest.NewDB(t))
	fakeSessions(t, conn, 40)

	oracle := func(app string) []string {
		rows, err := conn.Query(ctx, `SELECT session_id FROM pgundo.stmt
			 WHERE $1 = '' OR session_id IN (SELECT session_id FROM pgundo.stmt WHERE application_name = $1)
			 GROUP BY 1 ORDER BY max(at) DESC, session_id DESC`, app)
		require.NoError(t, err)
		out, err := pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err)
		return out
	}
	for _, app := range []string{"", "odd"} {
		all, err := history.Sessions(ctx, conn, history.SessionFilter{App: app})
		require.NoError(t, err)
		want := oracle(app)
		require.Equal(t, want, ids(all), "app %q: the whole list", app)
		if app == "" {
			require.Len(t, all, 40)
			require.Equal(t, []string{"f2.2", "f1.1"}, ids(all[:2]), "a tie in last change time: higher id first")
		} else {
			require.Len(t, all, 14)
		}
		for _, limit := range []int{1, 3, 7, 50} {
			for offset := 0; offset <= len(all)+1; offset++ {
				page, err := history.Sessions(ctx, conn, history.SessionFilter{App: app, Offset: offset, Limit: limit})
				require.NoError(t, err)
				exp := all[min(offset, len(all)):min(offset+limit, len(all))]
				require.Equal(t, ids(exp), ids(page), "app %q, offset %d, limit %d", app, offset, limit)
				require.Equal(t, exp, page, "app %q, offset %d, limit %d: the same sessions, every field", app, offset, limit)
			}
		}
	}
	// Other filters, each only its condition.
	since := time.Date(2026, 11, 6, 0, 0, 0, 0, time.UTC)
	rows, err := conn.Query(ctx, `SELECT session_id FROM pgundo.stmt
		 WHERE session_id IN (SELECT session_id FROM pgundo.stmt WHERE at >= $1 AND application_name = 'even')
		 GROUP BY 1 ORDER BY max(at) DESC, session_id DESC`, since)
	require.NoError(t, err)
	want, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	got, err := history.Sessions(ctx, conn, history.SessionFilter{Since: &since, App: "even", Offset: 2, Limit: 4})
	require.NoError(t, err)
	require.Equal(t, want[2:6], ids(got))
	one, err := history.GetSession(ctx, conn, "f3.3")
	require.NoError(t, err)
	require.Equal(t, "f3.3", one.ID)
	_, err = history.GetSession(ctx, conn, "f99.99")
	require.ErrorIs(t, err, history.ErrNoSuchSession)

	_, err = history.Sessions(ctx, conn, history.SessionFilter{Offset: -1, Limit: 5})
	var re *history.RequestError
	require.ErrorAs(t, err, &re)

	// An empty log.
	empty := pgtest.Connect(t, pgtest.NewDB(t))
	ss, err := history.Sessions(ctx, empty, history.SessionFilter{Limit: 5, Offset: 5})
	require.NoError(t, err)
	require.Empty(t, ss)
}

// TestShowWithOffset: the pages of ShowWith (Offset, Limit) put together
// are exactly the whole list, More counts what follows each page, and a
// table and key filter pages the same way.
func TestShowWithOffset(t *testing.T) {
	ctx := context.Background()
	conn := pgtest.Connect(t, pgtest.NewDB(t))
	pgtest.Exec(t, conn, `CREATE TABLE t (id int PRIMARY KEY, v text); CREATE TABLE u (id int PRIMARY KEY, w int)`)
	_, err := triggers.Track(ctx, conn, []string{"t", "u"})
	require.NoError(t, err)
	pgtest.Exec(t, conn, `SET application_name = 'paged';
		INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 23) g;
		UPDATE t SET v = 'w' WHERE id = 7;
		INSERT INTO u SELECT g, g FROM generate_series(1, 4) g;
		UPDATE t SET v = 'x' WHERE id IN (7, 8);
		DELETE FROM t WHERE id = 7;`)
	_, err = pgsql.Fold(ctx, conn)
	require.NoError(t, err)
	ss, err := history.Sessions(ctx, conn, history.SessionFilter{App: "paged"})
	require.NoError(t, err)
	require.Len(t, ss, 1)
	id := ss[0].ID

	tt, err := loadTable(ctx, conn, "t")
	require.NoError(t, err)
	key, err := tt.ParseKey([]string{"7"})
	require.NoError(t, err)
	for _, o := range []history.ShowOptions{{}, {Table: tt}, {Table: tt, Key: &key}} {
		all, err := history.ShowWith(ctx, conn, id, o)
		require.NoError(t, err)
		total := int64(len(all.Changes))
		require.Zero(t, all.More)
		for _, size := range []int{1, 2, 5, 50} {
			var got []history.Change
			for offset := 0; offset < len(all.Changes)+size; offset += size {
				o.Offset, o.Limit = offset, size
				page, err := history.ShowWith(ctx, conn, id, o)
				require.NoError(t, err)
				require.Equal(t, all.Tables, page.Tables, "counts cover the whole session")
				require.Equal(t, max(0, total-int64(offset)-int64(len(page.Changes))), page.More, "offset %d, size %d", offset, size)
				require.Equal(t, page.More > 0, page.Truncated)
				require.LessOrEqual(t, len(page.Changes), size)
				got = append(got, page.Changes...)
			}
			require.Equal(t, brief(all.Changes), brief(got), "pages of %d put together, options %+v", size, o)
			require.Equal(t, all.Changes, got, "pages of %d put together, options %+v", size, o)
		}
		o.Offset, o.Limit = 0, 0
	}
	all, err := history.ShowWith(ctx, conn, id, history.ShowOptions{})
	require.NoError(t, err)
	require.Len(t, all.Changes, 23+1+4+2+1)

	// One row: the statements the row-history index names, and those above
	// its watermark (ShowWith refreshes it; here it may not: a mark is
	// usable from the next refresh on), the same rows either way.
	keyed := func() []string {
		d, err := history.ShowWith(ctx, conn, id, history.ShowOptions{Table: tt, Key: &key})
		require.NoError(t, err)
		var out []string
		for _, c := range d.Changes {
			line := c.Op
			for _, col := range c.Columns {
				v := func(p *string) string {
					if p == nil {
						return "-"
					}
					return *p
				}
				line += fmt.Sprintf(" %s:%s>%s", col.Column, v(col.Old), v(col.New))
			}
			out = append(out, line)
		}
		return out
	}
	row7 := []string{"INSERT id:->7 v:->v7", "UPDATE id:7>7 v:v7>w", "UPDATE id:7>7 v:w>x", "DELETE id:7>- v:x>-"}
	for range 3 {
		_, err = history.Refresh(ctx, conn)
		require.NoError(t, err)
		require.Equal(t, row7, keyed())
	}
	var covered bool
	require.NoError(t, conn.QueryRow(ctx, `SELECT done_below >= (SELECT max(id) FROM pgundo.stmt) FROM pgundo.hist_state`).Scan(&covered))
	require.True(t, covered, "the index covers the whole log")
	pgtest.Exec(t, conn, `INSERT INTO t VALUES (7, 'again'), (70, 'other')`)
	row7 = append(row7, "INSERT id:->7 v:->again")
	require.Equal(t, row7, keyed(), "a statement not indexed yet")
	_, err = history.Refresh(ctx, conn)
	require.NoError(t, err)
	require.Equal(t, row7, keyed(), "indexed")

	_, err = history.ShowWith(ctx, conn, id, history.ShowOptions{Offset: -1})
	var re *history.RequestError
	require.ErrorAs(t, err, &re)
}

func loadTable(ctx context.Context, conn *pgx.Conn, name string) (*history.Table, error) {
	rt, err := triggers.Resolve(ctx, conn, name)
	if err != nil {
		return nil, err
	}
	return history.LoadTable(ctx, conn, rt.OID)
}

// brief is each change as statement id, operation and new image (old for a
// delete), for a readable failure.
func brief(cs []history.Change) []string {
	var out []string
	for _, c := range cs {
		img := c.New
		if img == nil {
			img = c.Old
		}
		out = append(out, fmt.Sprintf("%d %s %s", c.StmtID, c.Op, *img))
	}
	return out
}

// summaryOracle checks Sessions and Activity against independent queries of
// the log (pgundo.stmt, pgundo.sessions), whatever the state of the
// summaries: not built, built in part, split inside a transaction, after an
// undo and a prune.
type summaryOracle struct {
	t    *testing.T
	conn *pgx.Conn
	relT uint32
}

// brief is what the oracle compares of a session.
type briefSession struct {
	ID, App                 string
	Changes, Transactions   int64
	Tables, Tags, Roles     []string
	FirstChange, LastChange time.Time
	UndoState               *string
}

func briefOf(ss []history.Session) []briefSession {
	out := []briefSession{}
	for _, s := range ss {
		out = append(out, briefSession{s.ID, s.ApplicationName, s.Changes, s.Transactions, s.Tables, s.Tags, s.Roles,
			s.FirstChangeAt.UTC(), s.LastChangeAt.UTC(), s.UndoState})
	}
	return out
}

// sessions is the oracle's list: the sessions with a statement matching
// cond (SQL over st, the statement, and s, its session; $1.. args), newest
// last change first.
func (o *summaryOracle) sessions(cond string, args ...any) []briefSession {
	o.t.Helper()
	rows, err := o.conn.Query(context.Background(), `
		SELECT v.id, coalesce((SELECT st.application_name FROM pgundo.stmt st WHERE st.session_id = v.id ORDER BY st.id DESC LIMIT 1), ''),
		       v.changes, v.transactions, v.tables, coalesce(v.tags, '{}'),
		       coalesce(ARRAY(SELECT r FROM unnest(v.roles) r WHERE r <> v.login_user ORDER BY 1), '{}'),
		       v.first_change_at, v.last_change_at, v.undo_state
		  FROM pgundo.sessions v
		 WHERE v.id IN (SELECT st.session_id FROM pgundo.stmt st JOIN pgundo.session s ON s.id = st.session_id WHERE `+cond+`)
		 ORDER BY v.last_change_at DESC, v.id DESC`, args...)
	require.NoError(o.t, err)
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (briefSession, error) {
		var b briefSession
		err := r.Scan(&b.ID, &b.App, &b.Changes, &b.Transactions, &b.Tables, &b.Tags, &b.Roles, &b.FirstChange, &b.LastChange, &b.UndoState)
		b.FirstChange, b.LastChange = b.FirstChange.UTC(), b.LastChange.UTC()
		return b, err
	})
	require.NoError(o.t, err)
	return out
}

func (o *summaryOracle) activity(since, until time.Time, unit, by string) []history.ActivityPoint {
	o.t.Helper()
	series := map[string]string{"table": "quote_ident(schema_name) || '.' || quote_ident(table_name)", "app": "coalesce(application_name, '')"}[by]
	rows, err := o.conn.Query(context.Background(), `SELECT date_trunc('`+unit+`', at, 'UTC'), `+series+`, sum(rows)::bigint
		FROM pgundo.stmt WHERE at >= $1 AND at < $2 GROUP BY 1, 2 ORDER BY 1, 2`, since, until)
	require.NoError(o.t, err)
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (history.ActivityPoint, error) {
		var p history.ActivityPoint
		return p, r.Scan(&p.Bucket, &p.Series, &p.Count)
	})
	require.NoError(o.t, err)
	return out
}

// check compares every list the summaries serve with the oracle.
func (o *summaryOracle) check(stage string) {
	t := o.t
	t.Helper()
	ctx := context.Background()
	at := func(h, m int) *time.Time {
		v := time.Date(2026, 11, 1, h, m, 0, 0, time.UTC)
		return &v
	}
	now := time.Now()
	soon, ago := now.Add(time.Hour), now.Add(-3*time.Hour)
	cases := []struct {
		f    history.SessionFilter
		cond string
		args []any
	}{
		{history.SessionFilter{}, "true", nil},
		{history.SessionFilter{App: "odd"}, "st.application_name = $1", []any{"odd"}},
		{history.SessionFilter{App: "a"}, "st.application_name = $1", []any{"a"}},
		{history.SessionFilter{Tag: "x"}, "st.tag = $1", []any{"x"}},
		{history.SessionFilter{User: "summary_r1"}, "(st.role = $1 OR s.session_role = $1)", []any{"summary_r1"}},
		{history.SessionFilter{TableOID: o.relT}, "st.relid = $1", []any{o.relT}},
		{history.SessionFilter{Since: at(37, 13), Until: at(100, 5)}, "st.at >= $1 AND st.at < $2", []any{*at(37, 13), *at(100, 5)}},
		{history.SessionFilter{Since: at(37, 0), Until: at(100, 0), App: "even"}, "st.at >= $1 AND st.at < $2 AND st.application_name = $3", []any{*at(37, 0), *at(100, 0), "even"}},
		{history.SessionFilter{Since: at(50, 10), Until: at(50, 40)}, "st.at >= $1 AND st.at < $2", []any{*at(50, 10), *at(50, 40)}},
		{history.SessionFilter{Since: at(200, 30)}, "st.at >= $1", []any{*at(200, 30)}},
		{history.SessionFilter{Until: at(20, 30)}, "st.at < $1", []any{*at(20, 30)}},
		{history.SessionFilter{Since: &ago, Until: &soon, App: "b"}, "st.at >= $1 AND st.at < $2 AND st.application_name = $3", []any{ago, soon, "b"}},
	}
	for i, c := range cases {
		want := o.sessions(c.cond, c.args...)
		got, err := history.Sessions(ctx, o.conn, c.f)
		require.NoError(t, err)
		require.Equal(t, want, briefOf(got), "%s: filter %+v", stage, c.f)
		if i > 1 {
			continue
		}
		const limit = 4
		for offset := 0; offset <= len(want); offset += 7 {
			f := c.f
			f.Offset, f.Limit = offset, limit
			page, err := history.Sessions(ctx, o.conn, f)
			require.NoError(t, err)
			require.Equal(t, want[offset:min(offset+limit, len(want))], briefOf(page), "%s: filter %+v", stage, f)
		}
	}
	for _, w := range o.sessions("true")[:min(3, len(o.sessions("true")))] {
		one, err := history.GetSession(ctx, o.conn, w.ID)
		require.NoError(t, err)
		require.Equal(t, []briefSession{w}, briefOf([]history.Session{one}), stage)
	}
	for _, r := range [][2]time.Time{{*at(0, 0), *at(250, 0)}, {*at(3, 17), *at(77, 59)}, {*at(5, 5), *at(5, 55)}, {ago, soon}} {
		for _, unit := range []string{"minute", "hour", "day"} {
			if unit == "minute" && r[1].Sub(r[0]) > 24*time.Hour {
				continue
			}
			for _, by := range []string{"table", "app"} {
				got, err := history.Activity(ctx, o.conn, r[0], r[1], unit, by)
				require.NoError(t, err)
				want := o.activity(r[0], r[1], unit, by)
				for i := range got {
					got[i].Bucket = got[i].Bucket.UTC()
				}
				for i := range want {
					want[i].Bucket = want[i].Bucket.UTC()
				}
				require.Equal(t, want, got, "%s: activity %v per %s by %s", stage, r, unit, by)
			}
		}
	}
}

func (o *summaryOracle) refresh(batch int64) int64 {
	o.t.Helper()
	n, err := history.RefreshSummaries(context.Background(), o.conn, batch)
	require.NoError(o.t, err)
	return n
}

func TestSummaries(t *testing.T) {
	ctx := context.Background()
	url := pgtest.NewDB(t)
	conn := pgtest.Connect(t, url)
	pgtest.Exec(t, conn, `CREATE TABLE t (id int PRIMARY KEY, v text); CREATE TABLE u (id int PRIMARY KEY, w int);
		INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 20) g;
		DO $$ BEGIN CREATE ROLE summary_r1; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
		GRANT ALL ON t, u TO summary_r1`)
	_, err := triggers.Track(ctx, conn, []string{"t", "u"})
	require.NoError(t, err)
	rt, err := triggers.Resolve(ctx, conn, "t")
	require.NoError(t, err)
	o := &summaryOracle{t: t, conn: conn, relT: rt.OID}
	fakeSessions(t, conn, 30)
	o.check("nothing summarized")

	session := func(app string) *pgx.Conn {
		cfg, err := pgx.ParseConfig(url)
		require.NoError(t, err)
		cfg.RuntimeParams["application_name"] = app
		c, err := pgx.ConnectConfig(ctx, cfg)
		require.NoError(t, err)
		t.Cleanup(func() { c.Close(context.Background()) })
		return c
	}
	a, b := session("a"), session("b")
	pgtest.Exec(t, a, `SET pgundo.tag = 'x'; UPDATE t SET v = 'a1' WHERE id = 1; UPDATE t SET v = 'a2' WHERE id IN (2, 3);
		BEGIN; INSERT INTO u VALUES (1, 1); UPDATE t SET v = 'a4' WHERE id = 4; COMMIT`)
	pgtest.Exec(t, b, `SET ROLE summary_r1; UPDATE t SET v = 'b5' WHERE id = 5`)
	o.check("captured, nothing summarized")
	for o.refresh(60) > 0 {
		o.check("in batches")
	}
	o.check("caught up")
	// A refresh between reading the watermark and reading the summaries:
	// the statements it added are not counted twice.
	other := pgtest.Connect(t, url)
	pgtest.Exec(t, a, `UPDATE t SET v = 'a10' WHERE id = 10; UPDATE t SET v = 'a11' WHERE id IN (11, 12)`)
	history.SetAfterSummaryMark(func() {
		_, err := history.RefreshSummaries(ctx, other, 1000)
		require.NoError(t, err)
	})
	o.check("refreshed while read")
	history.SetAfterSummaryMark(nil)
	// The same from the log alone (the summaries too far behind).
	old := history.SetSummaryTailLimit(0)
	o.check("the log alone")
	history.SetSummaryTailLimit(old)

	// A transaction that a refresh splits: its first statement is
	// summarized (the mark made while it ran is usable once it ended), the
	// rest is read from the log.
	tx, err := a.Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, `UPDATE t SET v = 'a6' WHERE id = 6`)
	require.NoError(t, err)
	require.Zero(t, o.refresh(1000), "a transaction writes the log: a mark, nothing summarized")
	o.check("a transaction running")
	_, err = tx.Exec(ctx, `UPDATE t SET v = 'a7' WHERE id IN (7, 8)`)
	require.NoError(t, err)
	require.NoError(t, tx.Commit(ctx))
	_, err = a.Exec(ctx, `UPDATE u SET w = 2 WHERE id = 1`)
	require.NoError(t, err)
	require.NotZero(t, o.refresh(1000))
	o.check("a transaction split between the summaries and the log")
	o.refresh(1000)
	o.check("caught up again")

	// An undo: undone, and the undo's own session.
	var bID string
	require.NoError(t, conn.QueryRow(ctx, `SELECT session_id FROM pgundo.stmt WHERE application_name = 'b' LIMIT 1`).Scan(&bID))
	_, err = undo.Apply(ctx, conn, undo.Selection{Sessions: []string{bID}}, undo.Options{}, nil)
	require.NoError(t, err)
	o.check("undone, not summarized")
	o.refresh(1000)
	o.check("undone, summarized")
	bs := o.sessions("st.session_id = $1", bID)
	require.Equal(t, "undone", *bs[0].UndoState)

	// A prune drops the chunk: its summaries are left out at once, and
	// deleted by the next refresh.
	pgtest.Exec(t, conn, `SELECT count(*) FROM pgundo.prune(now())`)
	pgtest.Exec(t, a, `UPDATE t SET v = 'a9' WHERE id = 9`)
	o.check("pruned, not refreshed")
	o.refresh(1000)
	o.check("pruned, refreshed")
	var left int64
	require.NoError(t, conn.QueryRow(ctx, `SELECT count(*) FROM pgundo.sum_session x JOIN pgundo.pruned p ON p.chunk = x.chunk`).Scan(&left))
	require.Zero(t, left)
	got, err := history.Sessions(ctx, conn, history.SessionFilter{})
	require.NoError(t, err)
	require.True(t, slices.ContainsFunc(got, func(s history.Session) bool { return s.ApplicationName == "a" }))
	require.Equal(t, fmt.Sprint(len(o.sessions("true"))), fmt.Sprint(len(got)))
}
