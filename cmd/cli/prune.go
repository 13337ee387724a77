package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/pgundo/pgundo/audit"
	"github.com/pgundo/pgundo/internal/timefmt"
)

type pruneOptions struct {
	before timeFlag
	yes    bool
	dryRun bool
}

// Validate checks the flags that need no database.
func (o *pruneOptions) Validate(now time.Time) (time.Time, error) {
	if !o.before.set {
		return time.Time{}, usageErr(errors.New("--before is required: a time (2026-09-01 UTC, RFC 3339) or an age (90d, 3mo)"))
	}
	t := o.before.t
	if t.After(now) {
		return time.Time{}, usageErr(fmt.Errorf("--before %s (%s) is in the future; nothing was changed", o.before.text, timefmt.Format(t)))
	}
	return t, nil
}

func newPruneCommand(g *globals) *cobra.Command {
	var o pruneOptions
	cmd := &cobra.Command{
		Use:   "prune --before TIME|AGE",
		Short: "Remove log older than a time (retention), by dropping whole chunks",
		Long: `Remove the part of the log older than --before, cheaply: the log is stored in
chunks (one per period between two prunes), and prune drops every chunk whose
newest entry is older than --before, instead of deleting rows. It first starts
a new chunk, so that the next prune can remove everything logged until now:
run it regularly (e.g. daily from cron: pgundo prune --before 90d --yes).
Entries older than --before can remain when they share a chunk with newer ones.

Sessions that lose some of their changes can no longer be undone; undo says so.
Writers to tracked tables wait while the chunks are dropped (a few catalog
operations). --dry-run lists the chunks that would go and changes nothing.
On a terminal prune asks y/N; otherwise it needs --yes (exit 2 without).

Exit codes: 0 done, 1 error, 2 bad usage.`,
		Example: `  pgundo prune --before 90d --dry-run
  pgundo prune --before 90d --yes
  pgundo prune --before 2026-09-01 --json --yes`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			before, err := o.Validate(time.Now())
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			conn, err := g.connectInstalled(ctx)
			if err != nil {
				return err
			}
			defer conn.Close(context.Background())
			if o.dryRun || !o.yes {
				done := g.working("reading the log's chunks")
				plan, err := audit.PrunePlan(ctx, conn, before)
				done()
				if err != nil {
					return err
				}
				if o.dryRun {
					return g.output(plan, func(w io.Writer) error { return renderPrune(w, plan, true) })
				}
				if err := renderPrune(g.stderr, plan, true); err != nil {
					return err
				}
				if len(plan.Removed) == 0 {
					return g.output(plan, func(w io.Writer) error { return nil })
				}
				if !isTerminal(g.stdin) {
					return usageErr(errors.New("prune needs confirmation: no terminal to ask on, so nothing was removed; add --yes to remove the chunks above"))
				}
				ok, err := confirm(g.stdin, g.stderr, "remove these log chunks for good? [y/N] ")
				if err != nil {
					return err
				}
				if !ok {
					return refusedErr(errors.New("prune not confirmed; nothing was removed"))
				}
			}
			done := g.working("removing log chunks")
			res, err := audit.Prune(ctx, conn, before)
			done()
			if err != nil {
				return err
			}
			return g.output(res, func(w io.Writer) error { return renderPrune(w, res, false) })
		},
	}
	f := cmd.Flags()
	timeVar(f, &o.before, "before", "remove log older than this time or age")
	f.BoolVar(&o.yes, "yes", false, "remove without asking")
	f.BoolVar(&o.dryRun, "dry-run", false, "list what would be removed; change nothing")
	return cmd
}

func renderPrune(w io.Writer, res *audit.PruneResult, plan bool) error {
	verb := "removed"
	if plan {
		verb = "would remove"
	}
	if len(res.Removed) == 0 {
		fmt.Fprintf(w, "nothing to prune before %s: no closed log chunk is entirely older", timefmt.Format(res.Before))
		if res.Oldest != nil {
			fmt.Fprintf(w, " (oldest entry: %s)", timefmt.Format(*res.Oldest))
		}
		fmt.Fprintln(w)
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CHUNK\tSTATEMENTS\tCHANGES\tSIZE\tNEWEST ENTRY")
	for _, c := range res.Removed {
		fmt.Fprintf(tw, "%d\t%d\t%d\t%s\t%s\n", c.Chunk, c.Statements, c.Changes, humanBytes(c.Bytes), timefmt.Format(c.Newest))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "%s %d statements, %d row changes, %s of log older than %s\n", verb, res.Statements, res.Changes, humanBytes(res.Bytes), timefmt.Format(res.Before))
	if !plan {
		if res.Oldest != nil {
			fmt.Fprintf(w, "oldest entry left: %s\n", timefmt.Format(*res.Oldest))
		}
		if res.PartlyPruned > 0 {
			fmt.Fprintf(w, "%d sessions lost part of their changes and can no longer be undone\n", res.PartlyPruned)
		}
	}
	return nil
}
