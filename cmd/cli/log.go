package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/pgundo/pgundo/history"
	"github.com/pgundo/pgundo/internal/timefmt"
)

// Output formats of log and asof.
const (
	formatTable  = "table"
	formatJSON   = "json"
	formatNDJSON = "ndjson"
	formatCSV    = "csv"
)

// checkFormat validates --format (given says it was on the command line,
// not defaulted to table); --json means json, and --json with a --format
// other than json is refused as bad usage.
func checkFormat(format string, given, jsonFlag bool) (string, error) {
	switch format {
	case formatTable, formatJSON, formatNDJSON, formatCSV:
	default:
		return "", usageErr(fmt.Errorf("unknown --format %q: use table, json, ndjson or csv", format))
	}
	if jsonFlag {
		if given && format != formatJSON {
			return "", usageErr(fmt.Errorf("--json and --format %s contradict: --json is --format json; give one of them", format))
		}
		return formatJSON, nil
	}
	return format, nil
}

type logOptions struct {
	table, session, tx string
	user, app, tag     string
	ops                []string
	since, until       timeFlag
	format             string
	limit              int64
}

var opLetters = map[string]string{"insert": "I", "update": "U", "delete": "D", "truncate": "T"}

// Validate checks the flag values that need no database.
func (o logOptions) Validate() error {
	if o.limit < 0 {
		return usageErr(errors.New("--limit must be 0 (no limit) or more"))
	}
	if o.tx != "" {
		if _, err := strconv.ParseUint(o.tx, 10, 64); err != nil {
			return usageErr(fmt.Errorf("--tx %q: give a transaction id as a number (the xid column of pgundo log or pgundo show)", o.tx))
		}
	}
	for _, op := range o.ops {
		if _, ok := opLetters[strings.ToLower(op)]; !ok {
			return usageErr(fmt.Errorf("--op %q: use insert, update, delete or truncate", op))
		}
	}
	return nil
}

func (o *logOptions) filter() history.LogFilter {
	f := history.LogFilter{Session: o.session, XID: o.tx, User: o.user, App: o.app, Tag: o.tag, Limit: o.limit,
		Since: o.since.ptr(), Until: o.until.ptr()}
	for _, op := range o.ops {
		f.Ops = append(f.Ops, opLetters[strings.ToLower(op)])
	}
	return f
}

func newLogCommand(g *globals) *cobra.Command {
	var o logOptions
	cmd := &cobra.Command{
		Use:   "log",
		Short: "The change stream: every logged row change, filtered, as a table, JSON, NDJSON or CSV",
		Long: `Stream pgundo's log of row changes, oldest first: for each changed row the
statement time, transaction, session, login user and effective role,
application_name, client address, tag, operation, table, primary key, the
columns that changed (old -> new), and the full row images before and after.

Filters combine (all must match): --table (a partitioned table includes its
partitions), --session, --tx, --user (login or effective role), --app, --tag,
--op (repeatable or comma-separated), --since (inclusive) and --until
(exclusive).

Formats (--format, default table; --json is --format json):
  table   one line per change, for people: columns aligned (500 lines at a
          time), with the XID that undo --tx takes
  json    one JSON array of change objects
  ndjson  one JSON object per line
  csv     a header, then one line per change (PostgreSQL's CSV conventions:
          NULL is an empty field, an empty string is "")

It streams: memory stays constant on logs of millions of entries, and the
first lines appear at once. Pipe it to head, jq or a file.`,
		Example: `  pgundo log --since 1h
  pgundo log --table public.orders --op update,delete --format csv > orders.csv
  pgundo log --user alice --since 7d --until 1d --format ndjson | jq .key
  pgundo log --session 6740a1b2.3f1c --limit 20
  pgundo log --tag ticket-123 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.Validate(); err != nil {
				return err
			}
			format, err := checkFormat(o.format, cmd.Flags().Changed("format"), g.json)
			if err != nil {
				return err
			}
			f := o.filter()
			ctx := cmd.Context()
			conn, err := g.connectInstalled(ctx)
			if err != nil {
				return err
			}
			defer conn.Close(context.Background())
			// Many short queries: JIT compilation would only delay them.
			if _, err := conn.Exec(ctx, "SET jit = off"); err != nil {
				return err
			}
			if o.table != "" {
				t, err := loadTable(ctx, conn, o.table)
				if err != nil {
					return err
				}
				f.Tables = t.Partitions
			}
			w := newChangeWriter(g.stdout, format)
			if err := w.begin(); err != nil {
				return err
			}
			// One more than --limit, to tell whether the output is cut.
			cut := false
			emit := w.write
			if o.limit > 0 {
				f.Limit = o.limit + 1
				emit = func(v *history.Version) error {
					if w.n == o.limit {
						cut = true
						return nil
					}
					return w.write(v)
				}
			}
			if err := history.Log(ctx, conn, f, emit); err != nil {
				_ = w.flush()
				return err
			}
			if err := w.end(); err != nil {
				return err
			}
			if cut {
				g.noteCut(o.limit, "changes")
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&o.table, "table", "", "only changes of this table (and its partitions)")
	fl.StringVar(&o.session, "session", "", "only changes of this session (pgundo sessions lists them)")
	fl.StringVar(&o.tx, "tx", "", "only changes of this transaction id")
	fl.StringVar(&o.user, "user", "", "only changes by this login or effective role")
	fl.StringVar(&o.app, "app", "", "only changes under this application_name")
	fl.StringVar(&o.tag, "tag", "", "only changes tagged so (SET pgundo.tag = '...')")
	fl.StringSliceVar(&o.ops, "op", nil, "only these operations: insert, update, delete, truncate (repeat or comma-separate)")
	timeVar(fl, &o.since, "since", "only changes at or after this time")
	timeVar(fl, &o.until, "until", "only changes before this time")
	fl.StringVar(&o.format, "format", formatTable, "output format: table, json, ndjson or csv")
	fl.Int64Var(&o.limit, "limit", 0, "stop after this many changes (default 0: all); a cut is said on stderr")
	_ = cmd.RegisterFlagCompletionFunc("table", g.completeTrackedTables(false))
	_ = cmd.RegisterFlagCompletionFunc("tag", g.completeTags)
	_ = cmd.RegisterFlagCompletionFunc("session", g.completeSessions(true))
	return cmd
}

// changeWriter streams log entries in one format.
type changeWriter struct {
	streamWriter
}

// logTableHeader names the columns of log's table format.
var logTableHeader = []string{"AT", "XID", "SESSION", "USER", "APPLICATION", "TAG", "OP", "TABLE", "KEY", "CHANGES"}

var logCSVHeader = []string{"stmt_id", "xid", "at", "op", "table", "key", "previous_key", "session", "user", "role",
	"application_name", "client_addr", "tag", "columns", "old", "new"}

func newChangeWriter(out io.Writer, format string) *changeWriter {
	return &changeWriter{newStreamWriter(out, format, logCSVHeader, logTableHeader, 100)}
}

// begin writes what comes before the first entry at once (the JSON array's
// bracket, the CSV header).
func (cw *changeWriter) begin() error {
	cw.start()
	return cw.flush()
}

func (cw *changeWriter) write(v *history.Version) error {
	switch cw.format {
	case formatJSON, formatNDJSON:
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		return cw.writeJSON(func(w *bufio.Writer) error { _, err := w.Write(b); return err })
	case formatCSV:
		cols, err := json.Marshal(v.Columns)
		if err != nil {
			return err
		}
		colText := string(cols)
		stmt, at := strconv.FormatInt(v.StmtID, 10), v.At.UTC().Format(time.RFC3339Nano)
		var client *string // NULL for a Unix-socket connection
		if v.ClientAddr != "" {
			client = &v.ClientAddr
		}
		return cw.writeCSV([]*string{&stmt, &v.XID, &at, &v.Op, &v.Table, &v.Key, v.PreviousKey, &v.Session, &v.User, &v.Role,
			&v.ApplicationName, client, v.Tag, &colText, v.Old, v.New})
	}
	return cw.writeCells(logCells(v))
}

func (cw *changeWriter) end() error {
	if cw.format == formatTable {
		if cw.n == 0 {
			fmt.Fprintln(cw.w, "(no changes match)")
		} else {
			cw.tab.flush()
		}
	}
	return cw.streamWriter.end()
}

// logCells renders one change as the cells of one line, for people: values
// as pgundo history shows them, line breaks and tabs as \n, \r and \t.
func logCells(v *history.Version) []string {
	client := v.ClientAddr
	if client == "" {
		client = "local"
	}
	tag := "-"
	if v.Tag != nil {
		tag = *v.Tag
	}
	user := v.User
	if v.Role != "" && v.Role != v.User {
		user += "/" + v.Role
	}
	key := v.Key
	if key == "" {
		key = "-"
	}
	if v.PreviousKey != nil {
		key += " (was " + *v.PreviousKey + ")"
	}
	var parts []string
	for _, c := range v.Columns {
		switch {
		case v.Old != nil && v.New != nil:
			parts = append(parts, c.Column+": "+quoteValue(c.Old)+" -> "+quoteValue(c.New))
		case v.New != nil:
			parts = append(parts, c.Column+"="+quoteValue(c.New))
		default:
			parts = append(parts, c.Column+"="+quoteValue(c.Old))
		}
	}
	changes := strings.Join(parts, ", ")
	if len(v.Columns) == 0 {
		changes = "old " + deref(v.Old) + " new " + deref(v.New)
	}
	app := v.ApplicationName
	if app == "" {
		app = "-"
	}
	cells := []string{timefmt.Format(v.At), v.XID, v.Session, user, app, tag, v.Op, v.Table, key, changes}
	for i, c := range cells {
		cells[i] = cellText(&c)
	}
	return cells
}
