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
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"

	pgsql "github.com/pgundo/pgundo/sql"
)

// Exit codes, as documented in --help and README.md.
const (
	ExitOK      = 0 // done
	ExitError   = 1 // error: the server, the connection, or pgundo itself
	ExitUsage   = 2 // bad usage: unknown flag, table or session; missing --yes
	ExitRefused = 3 // ran fine but refused on purpose (conflicts, already undone, verification failed)
	ExitBroken  = 4 // status: capture is broken (a capture trigger missing or not firing ALWAYS, a tracked table dropped)
)

// exitError carries an exit code with an error, and optionally the next
// step to take (the "hint" of a JSON error).
type exitError struct {
	code int
	err  error
	hint string
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// usageErr marks err as bad usage (exit 2).
func usageErr(err error) error { return &exitError{code: ExitUsage, err: err} }

// refusedErr marks err as a refusal on purpose (exit 3).
func refusedErr(err error) error { return &exitError{code: ExitRefused, err: err} }

// globals are the flags every command shares.
type globals struct {
	command     string // the command that runs, e.g. "pgundo log" (set before it runs)
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
  4  status only: capture is broken (a trigger missing, disabled, not
     firing ALWAYS or stale; a tracked table dropped); the report is still printed

Errors go to stderr. Under --json an error is also one object on stdout,
{"error": {"code": EXIT_CODE, "message": "...", "hint": "next step" or null},
unless the command's own result (status's report, undo's conflicts) is
already there.`

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
  pgundo status --json
  pgundo --version`,
	}
	root.PersistentPreRun = func(cmd *cobra.Command, _ []string) { g.command = cmd.CommandPath() }
	var showVersion bool
	root.Flags().BoolVar(&showVersion, "version", false, "print pgundo's version, commit and schema version, and the connected database's pgundo schema version when a connection is given (none given: said so, exit 0)")
	root.RunE = func(cmd *cobra.Command, _ []string) error {
		if showVersion {
			return g.runVersion(cmd.Context())
		}
		return cmd.Help()
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
		newServeCommand(g),
	)
	return root
}

// Run executes pgundo with args and returns the process exit code.
//
// An error is written to stderr as "pgundo: MESSAGE". Under --json it is
// also written to stdout as one JSON object,
//
//	{"error": {"code": 2, "message": "...", "hint": "see pgundo log --help"}}
//
// whose code is the exit code and whose hint (null when there is none) is
// the next step; nothing else is then on stdout. A command that already
// wrote its result, which tells of the failure (status's report with exit
// 4, undo's plan with its conflicts, verify's problems), leaves that result
// as the only thing on stdout; so does a streamed result (log, asof) cut
// short by an error, whose error object then goes to stderr instead.
func Run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	out := &countingWriter{w: stdout}
	g := &globals{stdin: stdin, stdout: out, stderr: stderr}
	root := NewRootCommand(g)
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(out)
	root.SetErr(stderr)
	cmd, err := root.ExecuteContextC(ctx)
	g.waitCleanup()
	if err == nil {
		return ExitOK
	}
	code, msg, hint := describeError(err, cmd)
	fmt.Fprintf(stderr, "pgundo: %s\n", g.errorText(code, msg))
	if g.json || jsonRequested(args) {
		switch {
		case out.n == 0:
			writeJSONError(stdout, code, msg, hint)
		case !out.result: // a streamed result cut short: stdout is not ours to add to
			writeJSONError(stderr, code, msg, hint)
		}
	}
	return code
}

// countingWriter counts what a command wrote to stdout, so that Run never
// adds an error object after a result.
type countingWriter struct {
	w      io.Writer
	n      int64
	result bool // the output is a whole result (g.output), not a cut stream
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// rawStdout is stdout as Run was given it, for a child process to
// inherit: an *os.File stays a file, so a terminal stays a terminal.
func (g *globals) rawStdout() io.Writer {
	if c, ok := g.stdout.(*countingWriter); ok {
		return c.w
	}
	return g.stdout
}

// fileOf returns the file w writes to, looking through the counting
// writer Run wraps stdout in, for terminal checks.
func fileOf(w io.Writer) (*os.File, bool) {
	if c, ok := w.(*countingWriter); ok {
		w = c.w
	}
	f, ok := w.(*os.File)
	return f, ok
}

// jsonError is the JSON form of an error on stdout.
type jsonError struct {
	Error jsonErrorBody `json:"error"`
}

type jsonErrorBody struct {
	Code    int     `json:"code"`
	Message string  `json:"message"`
	Hint    *string `json:"hint"`
}

func writeJSONError(w io.Writer, code int, msg, hint string) {
	body := jsonErrorBody{Code: code, Message: msg}
	if hint != "" {
		body.Hint = &hint
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(jsonError{Error: body})
}

// describeError gives an error's exit code, message and hint (the next
// step, "" when there is none to add). cmd is the command that ran (the
// root one when none was found).
func describeError(err error, cmd *cobra.Command) (code int, msg, hint string) {
	code, msg = ExitError, err.Error()
	var ee *exitError
	switch {
	case errors.As(err, &ee):
		code, hint = ee.code, ee.hint
	case isCobraUsage(err):
		code = ExitUsage
	}
	var outdated *pgsql.OutdatedError
	switch {
	case errors.Is(err, context.Canceled):
		return ExitError, "interrupted; the open transaction was rolled back, nothing was changed", ""
	case hint != "":
	case errors.Is(err, pgsql.ErrNotInstalled):
		hint = "run pgundo install"
	case errors.As(err, &outdated):
		hint = "run pgundo install to upgrade"
	case code == ExitUsage:
		path := "pgundo"
		if cmd != nil {
			path = cmd.CommandPath()
		}
		hint = "see " + path + " --help"
	}
	return code, msg, hint
}

// jsonRequested reports whether args ask for --json (before any "--"),
// for errors raised before the flag was parsed (an unknown flag before it).
func jsonRequested(args []string) bool {
	for _, a := range args {
		switch {
		case a == "--":
			return false
		case a == "--json":
			return true
		case strings.HasPrefix(a, "--json="):
			if v, err := strconv.ParseBool(strings.TrimPrefix(a, "--json=")); err == nil && v {
				return true
			}
		}
	}
	return false
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
		if c, ok := g.stdout.(*countingWriter); ok {
			c.result = true
		}
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
