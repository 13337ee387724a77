package cli

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/pgundo/pgundo/triggers"
)

type untrackResult struct {
	Tables []triggers.Tracked `json:"tables"`
}

func newUntrackCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "untrack TABLE...",
		Short: "Stop capturing changes to tables (the log is kept)",
		Long: `Stop capture on tables (and their partitions). What was logged so far stays in
the log and can still be shown and undone. Names as for track; naming a table
that is not tracked is refused, and the list is all or nothing. A tracked
table that was dropped while pgundo's event triggers were absent (pgundo
status: TABLE DROPPED) is untracked by the name it had.`,
		Example:           `  pgundo untrack public.orders`,
		ValidArgsFunction: g.completeTrackedTables(false),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageErr(errors.New("name at least one table to untrack"))
			}
			ctx := cmd.Context()
			conn, err := g.connectInstalled(ctx)
			if err != nil {
				return err
			}
			defer conn.Close(context.Background())
			tables, err := triggers.Untrack(ctx, conn, args)
			if err != nil {
				return tableRequestError(err)
			}
			return g.output(untrackResult{Tables: tables}, func(w io.Writer) error {
				for _, t := range tables {
					if t.Dropped {
						fmt.Fprintf(w, "no longer tracking %s (it was dropped; its log is kept)\n", t.Qualified())
						continue
					}
					fmt.Fprintf(w, "no longer tracking %s (its log is kept)\n", t.Qualified())
				}
				return nil
			})
		},
	}
}
