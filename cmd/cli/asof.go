package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/pgundo/pgundo/history"
	"github.com/pgundo/pgundo/internal/timefmt"
)

type asofOptions struct {
	at     timeFlag
	format string
}

// Validate checks the flag values and arguments that need no database.
func (o asofOptions) Validate(args []string) error {
	if len(args) < 1 {
		return usageErr(errors.New("name a table, e.g. pgundo asof public.orders --at '2026-11-25 09:00'"))
	}
	if !o.at.set {
		return usageErr(fmt.Errorf("say when: pgundo asof %s --at TIME (RFC 3339, '2026-11-25 10:00', or 2h / 7d ago)", args[0]))
	}
	return nil
}

func newAsofCommand(g *globals) *cobra.Command {
	var o asofOptions
	cmd := &cobra.Command{
		Use:   "asof TABLE --at TIME [KEY...]",
		Short: "A table's rows (or one row) as they were at a past time",
		Long: `Show the rows of a tracked table as they were at --at, rebuilt from the table
now and pgundo's log: the rows now, with every change logged after that time
taken back (old images in, new images out). With a key (the primary-key
value alone, or col=value pairs), just that row; a row found through its key
at that time, even if its key changed since.

"At TIME" means after every statement that started before TIME. Column
changes (ALTER TABLE) are not rewound: a table whose columns changed since
TIME is refused, as is a time before the table was tracked. When the log
does not account for the rows now (capture was off for a while between
changes logged after TIME), asof fails with exit code 1 and says so.

Formats (--format, default table; --json is --format json): table (aligned
columns, values as PostgreSQL prints them, unquoted, NULL for null, tabs and
line breaks shown as \t and \n; laid out 500 rows at a time, the header
printed again above rows that need wider columns), json (an array of
objects, column -> value as PostgreSQL prints it, null for NULL), ndjson
(one object per line), csv (a header, then PostgreSQL's CSV: the same bytes
COPY (SELECT ...) TO STDOUT WITH (FORMAT csv, HEADER) would write with
pgundo's pinned settings, such as TimeZone UTC). Rows come in primary-key
order and stream: the client's memory stays constant. Every check, the log
accounting for the rows included, runs before the first row is written, so
a failure leaves stdout empty (no CSV header in a redirected file).

Exit codes: 0 shown; 1 error, or the log does not account for the rows now;
2 unknown or untracked table, a view or other relation that is not a table,
a time before tracking, columns changed since, a bad key.`,
		Example: `  pgundo asof public.orders --at '2026-11-25 09:00'
  pgundo asof orders --at 2h 42
  pgundo asof orders --at 2026-11-25T09:00:00Z --format csv > orders-0900.csv
  pgundo asof film_actor --at 1d actor_id=1 film_id=23 --json`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.Validate(args); err != nil {
				return err
			}
			format, err := checkFormat(o.format, cmd.Flags().Changed("format"), g.json)
			if err != nil {
				return err
			}
			at := o.at.t
			ctx := cmd.Context()
			conn, err := g.connectInstalled(ctx)
			if err != nil {
				return err
			}
			defer conn.Close(context.Background())
			t, err := loadTable(ctx, conn, args[0])
			if err != nil {
				return err
			}
			cols := make([]string, len(t.Columns))
			for i, c := range t.Columns {
				cols[i] = c.Name
			}
			w := newRowWriter(g.stdout, format, cols)
			var re *history.RequestError
			if len(args) > 1 {
				k, err := t.ParseKey(args[1:])
				if err != nil {
					return usageErr(err)
				}
				img, err := history.AsOfRow(ctx, conn, t, k, at)
				if errors.As(err, &re) {
					return usageErr(err)
				}
				if err != nil {
					return err
				}
				if img == nil && format == formatTable {
					fmt.Fprintf(g.stdout, "%s had no row with %s at %s\n", t.Name, k, timefmt.Format(at))
					return nil
				}
				w.vertical = true
				if img != nil {
					f, err := history.ParseImage(*img)
					if err != nil || len(f) != len(cols) {
						return fmt.Errorf("read row %s of %s: unexpected image %s", k, t.Name, *img)
					}
					if err := w.write(*img, f); err != nil {
						return err
					}
				}
				return w.end()
			}
			// Every check runs, and a log that does not account for the rows
			// is found, before the first row is written: a failure leaves
			// stdout empty (what is still buffered is dropped).
			err = history.AsOf(ctx, conn, t, at, w.write)
			if errors.As(err, &re) {
				return usageErr(err)
			}
			if err != nil {
				return err
			}
			return w.end()
		},
	}
	timeVar(cmd.Flags(), &o.at, "at", "the time")
	cmd.Flags().StringVar(&o.format, "format", formatTable, "output format: table, json, ndjson or csv")
	cmd.ValidArgsFunction = g.completeTrackedTables(true)
	return cmd
}

// rowWriter streams table rows in one format. Nothing is written before
// the first row or end: a command that fails first leaves stdout empty.
type rowWriter struct {
	streamWriter
	cols     []string
	keys     [][]byte // JSON-encoded column names
	vertical bool     // table format: one "column: value" line each (one row)
}

func newRowWriter(out io.Writer, format string, cols []string) *rowWriter {
	rw := &rowWriter{streamWriter: newStreamWriter(out, format, cols, cols, 500), cols: cols}
	for _, c := range cols {
		b, _ := json.Marshal(c)
		rw.keys = append(rw.keys, b)
	}
	return rw
}

// cellText shows a value for people: as PostgreSQL prints it, unquoted,
// NULL for null; tabs and line breaks as \t, \n and \r so that a row stays
// on one line.
func cellText(f *string) string {
	if f == nil {
		return "NULL"
	}
	return strings.NewReplacer("\t", `\t`, "\n", `\n`, "\r", `\r`).Replace(*f)
}

func (rw *rowWriter) write(_ string, fields []*string) error {
	switch rw.format {
	case formatJSON, formatNDJSON:
		return rw.writeJSON(func(w *bufio.Writer) error {
			w.WriteByte('{')
			for i, f := range fields {
				if i > 0 {
					w.WriteByte(',')
				}
				w.Write(rw.keys[i])
				w.WriteByte(':')
				if f == nil {
					w.WriteString("null")
					continue
				}
				b, err := json.Marshal(*f)
				if err != nil {
					return err
				}
				w.Write(b)
			}
			w.WriteByte('}')
			return nil
		})
	case formatCSV:
		return rw.writeCSV(fields)
	}
	if rw.vertical {
		for i, f := range fields {
			fmt.Fprintf(rw.w, "%s: %s\n", rw.cols[i], cellText(f))
		}
		rw.n++
		return nil
	}
	cells := make([]string, len(fields))
	for i, f := range fields {
		cells[i] = cellText(f)
	}
	return rw.writeCells(cells)
}

func (rw *rowWriter) end() error {
	if rw.format == formatTable && !rw.vertical {
		rw.tab.flush()
		fmt.Fprintf(rw.w, "(%d rows)\n", rw.n)
	}
	return rw.streamWriter.end()
}
