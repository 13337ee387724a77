package cli

import (
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/pgundo/pgundo/history"
	"github.com/pgundo/pgundo/internal/timefmt"
)

// renderDiff prints what a session (show) or a rehearsed script (try)
// changed: the rows inserted, updated, deleted and truncated per table, a
// blank line, then every row change (see renderChanges).
func renderDiff(w io.Writer, p palette, tables []history.TableCount, changes []history.Change, when bool) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TABLE\tINSERTED\tUPDATED\tDELETED\tTRUNCATED")
	for _, t := range tables {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\n", t.Table, t.Inserts, t.Updates, t.Deletes, t.Truncates)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	renderChanges(w, p, changes, when)
	return nil
}

// renderChanges prints row changes, for show and try alike: an update with
// its key (the columns it left as they were) and its changed columns
// (old -> new), an insert or delete with every column; with when, each
// header names the transaction and the time. Removed values are coloured
// red, added ones green, keys bold (see palette).
func renderChanges(w io.Writer, p palette, changes []history.Change, when bool) {
	for _, c := range changes {
		key := ""
		if c.Op == "UPDATE" {
			for _, col := range c.Columns {
				if deref(col.Old) == deref(col.New) {
					key += " " + p.Key(col.Column+"="+deref(col.Old))
				}
			}
		}
		suffix := ""
		if when {
			suffix = fmt.Sprintf("  (xid %s, %s)", c.XID, timefmt.Format(c.At))
		}
		fmt.Fprintf(w, "%s %s%s%s\n", c.Op, c.Table, key, suffix)
		if len(c.Columns) == 0 {
			fmt.Fprintf(w, "    old: %s\n    new: %s\n", p.Removed(deref(c.Old)), p.Added(deref(c.New)))
			continue
		}
		for _, col := range c.Columns {
			switch c.Op {
			case "UPDATE":
				if deref(col.Old) == deref(col.New) {
					continue
				}
				fmt.Fprintf(w, "    %s: %s -> %s\n", col.Column, p.Removed(deref(col.Old)), p.Added(deref(col.New)))
			case "INSERT":
				fmt.Fprintf(w, "    %s: %s\n", col.Column, p.Added(deref(col.New)))
			default:
				fmt.Fprintf(w, "    %s: %s\n", col.Column, p.Removed(deref(col.Old)))
			}
		}
	}
}

// deref shows a value as text, NULL for null.
func deref(s *string) string {
	if s == nil {
		return "NULL"
	}
	return *s
}
