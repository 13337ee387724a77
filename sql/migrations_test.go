package sql_test

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/jackc/tern/v2/migrate"
	"github.com/stretchr/testify/require"

	"github.com/pgundo/pgundo/internal/pgtest"
	pgsql "github.com/pgundo/pgundo/sql"
)

var update = flag.Bool("update", false, "rewrite sql/testdata/rendered/*.golden from the migrations as they render now")

// TestMain gives the tests a server whose template database is empty
// (pgundo not installed): they install the schema themselves.
func TestMain(m *testing.M) {
	os.Exit(pgtest.Run(m, nil))
}

// rendered returns the migrations as tern renders them (text/template, with
// the shared templates), without a database.
func rendered(t *testing.T) []*migrate.Migration {
	t.Helper()
	m, err := migrate.NewMigratorEx(context.Background(), nil, pgsql.VersionTable, &migrate.MigratorOptions{})
	require.NoError(t, err)
	require.NoError(t, m.LoadMigrations(pgsql.Migrations))
	require.Len(t, m.Migrations, int(pgsql.Latest()))
	return m.Migrations
}

func goldenPath(name string) string {
	return filepath.Join("testdata", "rendered", name+".golden")
}

// golden returns each migration's SQL as it rendered when its golden file
// was written.
func golden(t *testing.T, ms []*migrate.Migration) []string {
	t.Helper()
	out := make([]string, len(ms))
	for i, m := range ms {
		b, err := os.ReadFile(goldenPath(m.Name))
		require.NoError(t, err, "no golden file for migration %s: once it is final, write it with go test ./sql -run TestMigrationsRenderAsReleased -update", m.Name)
		out[i] = string(b)
	}
	return out
}

var (
	commentLine = regexp.MustCompile(`(?m)^[ \t]*--.*$`)
	space       = regexp.MustCompile(`\s+`)
)

// normalize drops whole-line SQL comments and folds white space: what is
// left is what PostgreSQL executes, but for comments inside function bodies
// (TestSchemaSameOnEveryUpgradePath compares those, in the catalog).
func normalize(s string) string {
	return strings.TrimSpace(space.ReplaceAllString(commentLine.ReplaceAllString(s, ""), " "))
}

// TestMigrationsRenderAsReleased: every migration renders to the SQL it
// rendered to when it was released (testdata/rendered). A database is at
// some version and runs only the migrations after it, so a released
// migration must never change what it does: its templates may move (to
// shared/) but not what they render. Comments outside statements and white
// space may differ.
func TestMigrationsRenderAsReleased(t *testing.T) {
	ms := rendered(t)
	if *update {
		require.NoError(t, os.MkdirAll(filepath.Dir(goldenPath("x")), 0o755))
		for _, m := range ms {
			require.NoError(t, os.WriteFile(goldenPath(m.Name), []byte(m.UpSQL), 0o644))
		}
	}
	want := golden(t, ms)
	for i, m := range ms {
		if m.UpSQL == want[i] {
			continue
		}
		g, w := normalize(m.UpSQL), normalize(want[i])
		if g == w {
			t.Logf("%s: renders as released but for comments and white space", m.Name)
			continue
		}
		n := 0
		for n < len(g) && n < len(w) && g[n] == w[n] {
			n++
		}
		t.Errorf("%s renders differently from %s (comments dropped, white space folded), from byte %d:\nnow:      %.300s\nreleased: %.300s",
			m.Name, goldenPath(m.Name), n, g[max(0, n-100):], w[max(0, n-100):])
	}
	entries, err := os.ReadDir(filepath.Dir(goldenPath("x")))
	require.NoError(t, err)
	require.Len(t, entries, len(ms), "a golden file for every migration, and none for a migration that is gone")
}

// TestSchemaSameOnEveryUpgradePath installs the schema as released (the
// golden SQL) up to each version, then upgrades it with the migrations as
// they are now, and compares pgundo's catalog (every table, column,
// constraint, index, view, function with its body, sequence, comment and
// privilege) with a database installed from the golden SQL alone.
func TestSchemaSameOnEveryUpgradePath(t *testing.T) {
	ms := rendered(t)
	want := golden(t, ms)
	var released []string
	for from := len(ms); from >= 0; from-- {
		t.Run(fmt.Sprintf("released-to=%d", from), func(t *testing.T) {
			ctx := context.Background()
			conn := pgtest.Connect(t, pgtest.NewDB(t))
			pgtest.Exec(t, conn, "CREATE SCHEMA IF NOT EXISTS "+pgsql.Schema)
			m, err := migrate.NewMigratorEx(ctx, conn, pgsql.VersionTable, &migrate.MigratorOptions{})
			require.NoError(t, err)
			require.NoError(t, m.LoadMigrations(pgsql.Migrations))
			for i := 0; i < from; i++ {
				m.Migrations[i].UpSQL = want[i]
			}
			require.NoError(t, m.Migrate(ctx))
			got := catalog(t, conn)
			if released == nil {
				released = got // from = len(ms): all as released
				require.NotEmpty(t, released)
				return
			}
			for _, l := range missing(released, got) {
				t.Errorf("as released, not after upgrading from %d: %s", from, l)
			}
			for _, l := range missing(got, released) {
				t.Errorf("after upgrading from %d, not as released: %s", from, l)
			}
		})
	}
}

// catalogSQL describes every object in schema pgundo, one line each, by
// name and definition (no OIDs).
const catalogSQL = `
WITH rel AS (SELECT c.* FROM pg_class c WHERE c.relnamespace = 'pgundo'::regnamespace)
SELECT line FROM (
  SELECT 'relation ' || c.relname || ': ' || concat_ws(' | ', c.relkind, c.relpersistence, c.reloptions::text, c.relacl::text,
         obj_description(c.oid, 'pg_class'), CASE WHEN c.relkind = 'p' THEN pg_get_partkeydef(c.oid) END,
         pg_get_expr(c.relpartbound, c.oid), CASE WHEN c.relkind = 'v' THEN pg_get_viewdef(c.oid) END,
         CASE WHEN c.relkind = 'r' THEN (xpath('/row/n/text()', query_to_xml(format('SELECT count(*) AS n FROM pgundo.%I', c.relname), false, true, '')))[1]::text || ' rows' END) AS line
    FROM rel c
  UNION ALL
  SELECT 'column ' || c.relname || '.' || a.attname || ': ' || concat_ws(' | ', a.attnum, format_type(a.atttypid, a.atttypmod), a.attnotnull,
         pg_get_expr(d.adbin, d.adrelid), col_description(c.oid, a.attnum), a.attacl::text)
    FROM rel c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
    LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
  UNION ALL
  SELECT 'constraint ' || c.relname || '.' || k.conname || ': ' || pg_get_constraintdef(k.oid)
    FROM rel c JOIN pg_constraint k ON k.conrelid = c.oid
  UNION ALL
  SELECT 'index ' || c.relname || ': ' || pg_get_indexdef(c.oid) FROM rel c WHERE c.relkind IN ('i', 'I')
  UNION ALL
  SELECT 'sequence ' || c.relname || ': ' || concat_ws(' | ', format_type(s.seqtypid, NULL), s.seqstart, s.seqincrement, s.seqmax, s.seqmin, s.seqcache, s.seqcycle)
    FROM rel c JOIN pg_sequence s ON s.seqrelid = c.oid
  UNION ALL
  SELECT 'trigger ' || c.relname || '.' || tg.tgname || ': ' || pg_get_triggerdef(tg.oid)
    FROM rel c JOIN pg_trigger tg ON tg.tgrelid = c.oid
  UNION ALL
  SELECT 'function ' || p.oid::regprocedure::text || ': ' || concat_ws(' | ', pg_get_functiondef(p.oid), p.proacl::text, obj_description(p.oid, 'pg_proc'))
    FROM pg_proc p WHERE p.pronamespace = 'pgundo'::regnamespace
  UNION ALL
  SELECT 'type ' || t.typname || ': ' || concat_ws(' | ', t.typtype, t.typacl::text)
    FROM pg_type t WHERE t.typnamespace = 'pgundo'::regnamespace
  UNION ALL
  SELECT 'event trigger ' || e.evtname || ': ' || concat_ws(' | ', e.evtevent, e.evtfoid::regprocedure::text, e.evttags::text, e.evtenabled)
    FROM pg_event_trigger e
  UNION ALL
  SELECT 'schema pgundo: ' || concat_ws(' | ', n.nspacl::text, obj_description(n.oid, 'pg_namespace'))
    FROM pg_namespace n WHERE n.nspname = 'pgundo'
) x ORDER BY line COLLATE "C"`

// missing returns the lines of a that b lacks.
func missing(a, b []string) []string {
	in := make(map[string]int, len(b))
	for _, l := range b {
		in[l]++
	}
	var out []string
	for _, l := range a {
		if in[l] > 0 {
			in[l]--
			continue
		}
		out = append(out, l)
	}
	return out
}

func catalog(t *testing.T, conn pgtest.Execer) []string {
	t.Helper()
	rows, err := conn.Query(context.Background(), catalogSQL)
	require.NoError(t, err)
	var out []string
	for rows.Next() {
		var line string
		require.NoError(t, rows.Scan(&line))
		out = append(out, line)
	}
	require.NoError(t, rows.Err())
	return out
}
