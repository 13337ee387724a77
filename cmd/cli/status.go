package cli

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/pgundo/pgundo/history"
	"github.com/pgundo/pgundo/internal/timefmt"
	"github.com/pgundo/pgundo/triggers"
)

type statusResult struct {
	Healthy       bool                   `json:"healthy"`
	Tables        []triggers.TableStatus `json:"tables"`
	EventTriggers bool                   `json:"event_triggers"`
	Log           history.LogStats       `json:"log"`
}

func newStatusCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Tracked tables, capture health, log size and age",
		Long: `List the tracked tables and flag any whose capture is not whole: a capture
trigger missing or disabled on the table or on one of its partitions (for
example a partition created while pgundo's event trigger was absent), or a
tracked table that was dropped. Then the log's size and oldest entry.

status exits 0 even when it flags problems; use --json and "healthy" in scripts.`,
		Example: `  pgundo status
  pgundo status --json | jq .healthy`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			conn, err := g.connectInstalled(ctx)
			if err != nil {
				return err
			}
			defer conn.Close(context.Background())
			var res statusResult
			if res.Tables, err = triggers.Status(ctx, conn); err != nil {
				return err
			}
			if res.Log, err = history.Stats(ctx, conn); err != nil {
				return err
			}
			if err := conn.QueryRow(ctx, `SELECT count(*) = 2 FROM pg_event_trigger WHERE evtname IN ('pgundo_ddl', 'pgundo_drop') AND evtenabled <> 'D'`).Scan(&res.EventTriggers); err != nil {
				return fmt.Errorf("read event triggers: %w", err)
			}
			res.Healthy = true
			for _, t := range res.Tables {
				res.Healthy = res.Healthy && t.Healthy()
			}
			return g.output(res, func(w io.Writer) error { return renderStatus(w, res) })
		},
	}
}

func renderStatus(w io.Writer, res statusResult) error {
	if len(res.Tables) == 0 {
		fmt.Fprintln(w, "no tables are tracked; start with: pgundo track SCHEMA.TABLE ...")
	} else {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "TABLE\tPARTITIONS\tCAPTURE")
		for _, t := range res.Tables {
			parts := "-"
			if t.Partitioned {
				parts = fmt.Sprint(t.Partitions)
			}
			state := "ok"
			switch {
			case t.Dropped:
				state = "TABLE DROPPED (pgundo untrack it, or track the new table)"
			case len(t.Problems) > 0:
				state = fmt.Sprintf("BROKEN: %d problems", len(t.Problems))
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\n", t.Qualified(), parts, state)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		for _, t := range res.Tables {
			for _, p := range t.Problems {
				fmt.Fprintf(w, "  %s: %s\n", t.Qualified(), p)
			}
		}
		if !res.Healthy {
			fmt.Fprintln(w, "to repair capture, run pgundo track again on the flagged tables")
		}
	}
	if !res.EventTriggers {
		fmt.Fprintln(w, "event triggers absent: partitions created from now on are not captured until pgundo track runs again on their parent")
	}
	fmt.Fprintf(w, "log: %s, %d sessions, %d statements, about %d row changes", humanBytes(res.Log.Bytes), res.Log.Sessions, res.Log.Statements, res.Log.Changes)
	if res.Log.Oldest != nil {
		fmt.Fprintf(w, ", oldest %s, newest %s", timefmt.Format(*res.Log.Oldest), timefmt.Format(*res.Log.Newest))
	}
	fmt.Fprintln(w)
	return nil
}

// joinOr renders a list or a dash.
func joinOr(list []string, sep string) string {
	if len(list) == 0 {
		return "-"
	}
	return strings.Join(list, sep)
}
