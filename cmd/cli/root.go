// Package cli implements the pgundo command line: one file per command, each
// a constructor returning a *cobra.Command. Only this package talks to the
// terminal; the library packages return typed results and errors.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"
)

// Exit codes, as documented in --help and README.md.
const (
	ExitOK      = 0 // done
	ExitError   = 1 // error: the server, the connection, or pgundo itself
	ExitUsage   = 2 // bad usage: unknown flag, table or session; missing --yes
	ExitRefused = 3 // ran fine but refused on purpose (conflicts, already undone, verification failed)
	ExitBroken  = 4 // status: capture is broken (a capture trigger missing or not firing ALWAYS, a tracked table dropped)
)

// exitError carries an exit code with an error.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// usageErr marks err as bad usage (exit 2).
func usageErr(err error) error { return &exitError{code: ExitUsage, err: err} }

// refusedErr marks err as a refusal on purpose (exit 3).
func refusedErr(err error) error { return &exitError{code: ExitRefused, err: err} }

// globals are the flags every command shares.
type globals struct {
	mu          sync.Mutex
	conns       []*pgx.Conn // opened by connect, cleaned up before Run returns
	databaseURL string
	json        bool
	color       colorMode
	stdin       io.Reader
	stdout      io.Writer
	stderr      io.Writer
}

const rootLong = `pgundo: an audit trail for PostgreSQL that you can rewind.

Triggers on tracked tables record every row change (INSERT, UPDATE, DELETE,
TRUNCATE) with the session, transaction, user, application and tag that made
it, in the same transaction, in schema "pgundo" of the same database.

Connection: --database-url, else DATABASE_URL, else the libpq PG* variables
(PGHOST, PGPORT, PGUSER, PGDATABASE, PGPASSWORD, ...).

Times: pgundo prints every time in UTC, with the zone shown
(2026-12-04 03:17:43.123456 UTC), whatever TZ says. Every flag that takes a
time (--since, --until, --at, --before) reads that form, RFC 3339, psql's
timestamptz output (2026-12-03 22:17:43.123456-05), a date, or an age back
from now (90s, 15m, 2h, 3d, 1w, 1mo, 1y; m is minutes, mo months). A time
without a zone is read as UTC, the zone pgundo prints in, so a time pasted
from one command into another means the same instant.

Exit codes:
  0  done
  1  error (connection, server, pgundo not installed, ...)
  2  bad usage (unknown flag, table or session; a missing --yes)
  3  refused on purpose (conflicts, already undone, verification failed)
  4  status only: capture is broken (a trigger missing, disabled or not
     firing ALWAYS; a tracked table dropped); the report is still printed`

// NewRootCommand builds the pgundo command tree with its own flag state.
func NewRootCommand(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:           "pgundo",
		Short:         "An audit trail for PostgreSQL that you can rewind",
		Long:          rootLong,
		SilenceUsage:  true,
		SilenceErrors: true,
		Example: `  pgundo install
  pgundo track public.orders public.order_items
  pgundo sessions --since 2h --table public.orders
  pgundo status --json`,
	}
	root.PersistentFlags().StringVar(&g.databaseURL, "database-url", "", "PostgreSQL connection URL or keyword/value string (default: $DATABASE_URL, then the libpq PG* variables)")
	root.PersistentFlags().BoolVar(&g.json, "json", false, "print a typed JSON result on stdout instead of text")
	root.PersistentFlags().Var(&g.color, "color", colorHelp)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageErr(err) })
	root.AddCommand(
		newInstallCommand(g),
		newUninstallCommand(g),
		newTrackCommand(g),
		newUntrackCommand(g),
		newStatusCommand(g),
		newSessionsCommand(g),
		newShowCommand(g),
		newUndoCommand(g),
		newPruneCommand(g),
		newVerifyCommand(g),
		newTryCommand(g),
		newRunCommand(g),
		newDemoCommand(g),
		newBenchCommand(g),
		newHistoryCommand(g),
		newLogCommand(g),
		newAsofCommand(g),
		newGrantCommand(g),
	)
	return root
}

// Run executes pgundo with args and returns the process exit code.
func Run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	g := &globals{stdin: stdin, stdout: stdout, stderr: stderr}
	root := NewRootCommand(g)
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	g.waitCleanup()
	if err == nil {
		return ExitOK
	}
	code := ExitError
	var ee *exitError
	switch {
	case errors.As(err, &ee):
		code = ee.code
	case isCobraUsage(err):
		code = ExitUsage
	}
	if errors.Is(err, context.Canceled) {
		fmt.Fprintln(stderr, "pgundo: interrupted; the open transaction was rolled back, nothing was changed")
		return ExitError
	}
	fmt.Fprintf(stderr, "pgundo: %s\n", g.errorText(code, err))
	return code
}

// isCobraUsage recognises cobra's argument and unknown-command errors, which
// it returns as plain errors.
func isCobraUsage(err error) bool {
	msg := err.Error()
	for _, p := range []string{"unknown command", "accepts ", "requires at least", "requires exactly", "received ", "unknown flag", "unknown shorthand", "invalid argument"} {
		if strings.Contains(msg, p) {
			return true
		}
	}
	return false
}

// SignalContext returns a context cancelled by the first SIGINT or SIGTERM
// (so an open transaction rolls back); a second signal exits at once.
func SignalContext() (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	go func() {
		n := 0
		for range ch {
			n++
			if n == 1 {
				cancel()
				continue
			}
			os.Exit(130)
		}
	}()
	return ctx, func() { signal.Stop(ch); cancel() }
}

// output writes v as JSON when --json is set, else calls human.
func (g *globals) output(v any, human func(w io.Writer) error) error {
	if g.json {
		enc := json.NewEncoder(g.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	return human(g.stdout)
}

// noteCut says on stderr that output stopped at --limit: more things match
// than were listed.
func (g *globals) noteCut(limit int64, things string) {
	fmt.Fprintf(g.stderr, "pgundo: output cut at --limit %d: more %s match; --limit 0 lists them all\n", limit, things)
}

// noteMoreChanges says on stderr that more row changes than --limit were
// left out of show's or try's output.
func (g *globals) noteMoreChanges(limit int, more int64) {
	if more <= 0 {
		return
	}
	what := "row changes"
	if more == 1 {
		what = "row change"
	}
	fmt.Fprintf(g.stderr, "pgundo: output cut at --limit %d: %d more %s not shown; --limit 0 shows them all\n", limit, more, what)
}
