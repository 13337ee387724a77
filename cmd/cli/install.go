package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	pgsql "github.com/pgundo/pgundo/sql"
)

type installResult struct {
	Schema      string `json:"schema"`
	FromVersion int32  `json:"from_version"`
	ToVersion   int32  `json:"to_version"`
	Changed     bool   `json:"changed"`
	// The event triggers created now (an install by a role that could not
	// create them, run again by one that can) and the tables re-attached.
	pgsql.EventTriggerResult
}

func newInstallCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "install",
		Short: "Create or upgrade pgundo's schema (idempotent)",
		Long: `Create schema "pgundo" (the log, the capture functions) or upgrade it to this
binary's version through versioned migrations. Running it again is a no-op.

Needs a role that may create a schema in the database. Event triggers (which
attach capture to partitions created later, and follow a column's new type
so that capture checks only the output settings a table's rows depend on)
need superuser, rds_superuser or cloudsqlsuperuser; without them install
warns and carries on, and capture checks every output setting on every
table (about 60% more CPU per captured statement); on RDS and Aurora, install
as the master user to get them. Run install again as a superuser to add
them later: it creates the missing ones and attaches each tracked table's
capture again with the settings its columns depend on, and attaches capture
to partitions created meanwhile (one table at a time, waiting at most 2s for
each table's lock; a busy one keeps what it had, and the warning names the
command that brings it up to date).`,
		Example: `  pgundo install --database-url postgres://admin@db.internal/shop
  # installed by the application's owner; later, as a superuser, add the event triggers:
  pgundo install --database-url postgres://postgres@db.internal/shop`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			conn, err := g.connect(ctx)
			if err != nil {
				return err
			}
			defer conn.Close(context.Background())
			res, err := pgsql.Migrate(ctx, conn)
			if err != nil {
				return fmt.Errorf("install into database %s: %w", conn.Config().Database, err)
			}
			out := installResult{Schema: pgsql.Schema, FromVersion: res.From, ToVersion: res.To, Changed: res.Changed()}
			// A fresh install's migrations created the event triggers, or
			// warned that they could not.
			if res.From != 0 {
				et, err := pgsql.EnsureEventTriggers(ctx, conn)
				var priv *pgsql.EventTriggerPrivilegeError
				switch {
				case errors.As(err, &priv):
					fmt.Fprintf(g.stderr, "pgundo: warning: %v\n", err)
				case err != nil:
					return fmt.Errorf("install into database %s: %w", conn.Config().Database, err)
				}
				out.EventTriggerResult = et
				for _, n := range et.NotReattached {
					fmt.Fprintf(g.stderr, "pgundo: warning: capture on %s was not brought up to date (%s); run pgundo track %s as a role that owns it\n",
						n.Table, n.Reason, shellQuote(n.Table))
				}
			}
			return g.output(out, func(w io.Writer) error {
				switch {
				case !out.Changed:
					fmt.Fprintf(w, "pgundo is up to date in database %s (schema version %d); nothing to do\n", conn.Config().Database, out.ToVersion)
				case out.FromVersion == 0:
					fmt.Fprintf(w, "installed pgundo in database %s (schema version %d)\nnext: pgundo track SCHEMA.TABLE ...\n", conn.Config().Database, out.ToVersion)
				default:
					fmt.Fprintf(w, "upgraded pgundo in database %s from schema version %d to %d\n", conn.Config().Database, out.FromVersion, out.ToVersion)
				}
				if len(out.Created) > 0 {
					fmt.Fprintf(w, "created event triggers %s\n", strings.Join(out.Created, ", "))
				}
				if out.PartitionsAttached > 0 {
					noun := "partitions"
					if out.PartitionsAttached == 1 {
						noun = "partition"
					}
					fmt.Fprintf(w, "capture attached to %d %s created while pgundo_ddl was missing\n", out.PartitionsAttached, noun)
				}
				if out.Reattached > 0 {
					noun := "tables"
					if out.Reattached == 1 {
						noun = "table"
					}
					fmt.Fprintf(w, "capture on %d tracked %s (and partitions) now checks only the output settings their columns depend on\n", out.Reattached, noun)
				}
				return nil
			})
		},
	}
}
