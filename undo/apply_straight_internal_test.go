package undo

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pgundo/pgundo/internal/pgtest"
)

// TestPinnedPutsSettingsBack: pinned sets each setting for what it runs
// only and puts back the transaction's own values after (not the server's
// defaults); a failing statement's error comes back as is; lookupPlan is
// the nested-loop plan at 4MB.
func TestPinnedPutsSettingsBack(t *testing.T) {
	ctx := t.Context()
	conn := pgtest.Connect(t, pgtest.NewDB(t))
	tx, err := conn.Begin(ctx)
	require.NoError(t, err)
	defer tx.Rollback(ctx) //nolint:errcheck // the test's transaction is never committed
	pgtest.Exec(t, tx, `SET LOCAL work_mem = '256MB'; SET LOCAL enable_hashjoin = off`)
	r := &runner{tx: tx}
	settings := func() (s [2]string) {
		require.NoError(t, tx.QueryRow(ctx, `SELECT current_setting('work_mem'), current_setting('enable_hashjoin')`).Scan(&s[0], &s[1]))
		return s
	}
	var inside [2]string
	require.NoError(t, r.pinned(ctx, [][2]string{{"work_mem", streamWorkMem}, {"enable_hashjoin", "on"}}, func() error {
		inside = settings()
		return nil
	}))
	require.Equal(t, [2]string{"4MB", "on"}, inside)
	require.Equal(t, [2]string{"256MB", "off"}, settings())

	boom := errors.New("boom")
	require.ErrorIs(t, r.pinned(ctx, [][2]string{{"work_mem", streamWorkMem}}, func() error { return boom }), boom)

	var got [5]string
	require.NoError(t, r.pinned(ctx, lookupPlan[:], func() error {
		return tx.QueryRow(ctx, `SELECT current_setting('enable_hashjoin'), current_setting('enable_mergejoin'),
		current_setting('enable_nestloop'), current_setting('enable_indexscan'), current_setting('work_mem')`).Scan(&got[0], &got[1], &got[2], &got[3], &got[4])
	}))
	require.Equal(t, [5]string{"off", "off", "on", "on", "4MB"}, got)
}
