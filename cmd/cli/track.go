package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/pgundo/pgundo/triggers"
)

type trackOptions struct {
	schemas []string
}

// Validate checks that the options name at least one table.
func (o trackOptions) Validate(args []string) error {
	if len(args) == 0 && len(o.schemas) == 0 {
		return usageErr(errors.New("name at least one table, or --schema SCHEMA"))
	}
	return nil
}

type trackResult struct {
	Tables []triggers.Tracked `json:"tables"`
}

func newTrackCommand(g *globals) *cobra.Command {
	var o trackOptions
	cmd := &cobra.Command{
		Use:   "track TABLE... | --schema SCHEMA",
		Short: "Start capturing changes to tables",
		Long: `Start capture on tables: every INSERT, UPDATE, DELETE and TRUNCATE on them is
recorded from now on, in the same transaction, with who made it.

Names are taken as psql takes them: schema.table, a name found through
search_path, or SQL-quoted parts ('"Billing Ops"."Order ""Items"""').
A partitioned table is tracked at its parent and covers every partition,
present and future; a partition on its own is refused. Views, foreign tables,
temporary tables and pgundo's own tables are refused by name. The list is all
or nothing: if one name is refused, nothing is tracked.

Tracking a table that is already tracked repairs its capture, on it and on
each of its partitions: a capture trigger that was dropped is created again,
and one that was disabled, or set to ENABLE or ENABLE REPLICA instead of
ENABLE ALWAYS, fires ALWAYS again. Each repair is named
("public.orders: already tracked; repaired: pgundo_capture_delete was
disabled"); pgundo status lists what needs it.`,
		Example: `  pgundo track public.orders order_items
  pgundo track '"Billing Ops"."Order ""Items"""'
  pgundo track --schema public`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.Validate(args); err != nil {
				return err
			}
			ctx := cmd.Context()
			conn, err := g.connectInstalled(ctx)
			if err != nil {
				return err
			}
			defer conn.Close(context.Background())
			names := append([]string(nil), args...)
			for _, s := range o.schemas {
				tables, err := triggers.SchemaTables(ctx, conn, s)
				if err != nil {
					return usageErr(err)
				}
				if len(tables) == 0 {
					return usageErr(fmt.Errorf("schema %q has no tables to track; nothing was changed", s))
				}
				names = append(names, tables...)
			}
			tables, err := triggers.Track(ctx, conn, names)
			if err != nil {
				return tableRequestError(err)
			}
			return g.output(trackResult{Tables: tables}, func(w io.Writer) error {
				for _, t := range tables {
					switch {
					case !t.AlreadyTracked:
						fmt.Fprintf(w, "tracking %s\n", t.Qualified())
					case len(t.Repaired) == 0:
						fmt.Fprintf(w, "%s: already tracked; capture is whole, nothing to repair\n", t.Qualified())
					default:
						was := make([]string, len(t.Repaired))
						for i, p := range t.Repaired {
							was[i] = p.Repaired()
						}
						fmt.Fprintf(w, "%s: already tracked; repaired: %s\n", t.Qualified(), strings.Join(was, ", "))
					}
				}
				return nil
			})
		},
	}
	cmd.Flags().StringArrayVar(&o.schemas, "schema", nil, "track every table of this schema (repeatable; partitions are covered by their parent)")
	return cmd
}

// tableRequestError maps a refused track/untrack list to exit code 2.
func tableRequestError(err error) error {
	var re *triggers.RefusedError
	if errors.As(err, &re) || errors.Is(err, triggers.ErrNoTables) {
		return usageErr(err)
	}
	return err
}
