package history_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/pgundo/pgundo/history"
	"github.com/pgundo/pgundo/internal/pgtest"
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
