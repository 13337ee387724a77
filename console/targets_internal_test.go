package console

import (
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgundo/pgundo/undo"
)

func TestTargets(t *testing.T) {
	for q, want := range map[string]target{
		"tag=ticket-123":   {Kind: byTag, Value: "ticket-123"},
		"tag=a%20b%2Fc%27": {Kind: byTag, Value: "a b/c'"},
		"tx=00042":         {Kind: byTx, Value: "42", xid: 42},
	} {
		got, err := queryTarget(httptest.NewRequest("GET", "/plan?"+q, nil))
		require.NoError(t, err, q)
		require.Equal(t, want, got, q)
	}
	for _, q := range []string{"", "tag=", "tx=", "tx=-1", "tx=1.5", "tx=18446744073709551616", "tag=a&tx=1"} {
		_, err := queryTarget(httptest.NewRequest("GET", "/plan?"+q, nil))
		require.ErrorAs(t, err, &badRequest{}, q)
	}

	s := sessionTarget("6740a1b2.3f1c")
	require.Equal(t, "pgundo undo 6740a1b2.3f1c", s.Command())
	require.Equal(t, "/plan/6740a1b2.3f1c", s.PlanURL())
	require.Equal(t, "/plan/6740a1b2.3f1c/undo.sql", s.SQLURL())
	require.Equal(t, "/undo/6740a1b2.3f1c", s.UndoURL())
	require.Equal(t, undo.Selection{Sessions: []string{"6740a1b2.3f1c"}}, s.selection())
	require.Equal(t, "pgundo-undo-6740a1b2.3f1c.sql", s.filename())

	tag := target{Kind: byTag, Value: "a b/c'"}
	require.Equal(t, `pgundo undo --tag 'a b/c'\'''`, tag.Command())
	require.Equal(t, "pgundo undo --tag=-x", target{Kind: byTag, Value: "-x"}.Command())
	require.Equal(t, "/plan?tag=a+b%2Fc%27", tag.PlanURL())
	require.Equal(t, "/plan/undo.sql?tag=a+b%2Fc%27", tag.SQLURL())
	require.Equal(t, "/undo?tag=a+b%2Fc%27", tag.UndoURL())
	require.Equal(t, "/?tag=a+b%2Fc%27", tag.BackURL())
	require.Equal(t, undo.Selection{Tag: "a b/c'"}, tag.selection())
	require.Equal(t, "pgundo-undo-tag-a_b_c_.sql", tag.filename())
	require.True(t, tag.typedMatches(" a b/c' "))
	require.False(t, tag.typedMatches("a b/c"))

	tx := target{Kind: byTx, Value: "42", xid: 42}
	require.Equal(t, "pgundo undo --tx 42", tx.Command())
	require.Equal(t, undo.Selection{TxIDs: []uint64{42}}, tx.selection())
	require.Equal(t, "", tx.BackURL())
	require.NotEqual(t, tx.key(), target{Kind: byTag, Value: "42"}.key())
}

// The run page's numbers, from the undo's Step reports and the dry run's
// counts.
func TestUndoRunView(t *testing.T) {
	start := time.Date(2026, 12, 4, 9, 0, 0, 0, time.UTC)
	u := &undoRun{n: 3, target: sessionTarget("s"), started: start, done: make(chan struct{}),
		tables: map[string]undo.TableProgress{}, expected: map[string]int64{"public.b": 300, "public.a": 100}}
	d := u.view(start.Add(500 * time.Millisecond))
	require.True(t, d.Running)
	require.Equal(t, "/undo-run/3", d.URL)
	require.Contains(t, d.Phase, "selecting the changes")
	require.Equal(t, []string{"public.a", "public.b"}, []string{d.Tables[0].Table, d.Tables[1].Table})
	require.Equal(t, [3]int64{0, 400, 0}, [3]int64{d.Done, d.Total, int64(d.Percent)})
	require.True(t, d.Known)
	require.Empty(t, d.Left)

	u.step(undo.TableProgress{Table: "public.b", Planned: 300})
	u.step(undo.TableProgress{Table: "public.b", Planned: 300, Done: 300})
	u.step(undo.TableProgress{Table: "public.a", Planned: 100})
	d = u.view(start.Add(30 * time.Second))
	require.Equal(t, "undoing public.a (1 of 2 tables written)", d.Phase)
	require.Equal(t, [3]int64{300, 400, 75}, [3]int64{d.Done, d.Total, int64(d.Percent)})
	require.Equal(t, "about 10 s", d.Left)
	require.Equal(t, "30 s", d.Elapsed)

	u.step(undo.TableProgress{Table: "public.a", Planned: 100, Done: 100})
	d = u.view(start.Add(40 * time.Second))
	require.Equal(t, "checking the rows written and the foreign keys, then committing", d.Phase)
	require.Equal(t, 100, d.Percent)
	require.Empty(t, d.Left)

	// Without a dry run to go by, the total grows as tables are counted.
	v := &undoRun{target: sessionTarget("s"), started: start, tables: map[string]undo.TableProgress{}}
	v.step(undo.TableProgress{Table: "public.a", Planned: 10, Done: 0})
	d = v.view(start.Add(time.Second))
	require.False(t, d.Known)
	require.Equal(t, [2]int64{0, 10}, [2]int64{d.Done, d.Total})

	require.Equal(t, 99, percent(999, 1000, false))
	require.Equal(t, "less than a second", roughDuration(300*time.Millisecond))
	require.Equal(t, "2 min 5 s", roughDuration(125*time.Second))
	require.Equal(t, "2h5m", roughDuration(2*time.Hour+5*time.Minute+10*time.Second))
}
