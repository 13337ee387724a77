package cli

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	pgsql "github.com/pgundo/pgundo/sql"
)

type installResult struct {
	Schema      string `json:"schema"`
	FromVersion int32  `json:"from_version"`
	ToVersion   int32  `json:"to_version"`
	Changed     bool   `json:"changed"`
}

func newInstallCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "install",
		Short: "Create or upgrade pgundo's schema (idempotent)",
		Long: `Create schema "pgundo" (the log, the capture functions) or upgrade it to this
binary's version through versioned migrations. Running it again is a no-op.

Needs a role that may create a schema in the database. Event triggers (which
attach capture to partitions created later) need superuser, rds_superuser or
cloudsqlsuperuser; without them install warns and carries on.`,
		Example: `  pgundo install --database-url postgres://admin@db.internal/shop`,
		Args:    cobra.NoArgs,
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
			return g.output(out, func(w io.Writer) error {
				switch {
				case !out.Changed:
					fmt.Fprintf(w, "pgundo is up to date in database %s (schema version %d); nothing to do\n", conn.Config().Database, out.ToVersion)
				case out.FromVersion == 0:
					fmt.Fprintf(w, "installed pgundo in database %s (schema version %d)\nnext: pgundo track SCHEMA.TABLE ...\n", conn.Config().Database, out.ToVersion)
				default:
					fmt.Fprintf(w, "upgraded pgundo in database %s from schema version %d to %d\n", conn.Config().Database, out.FromVersion, out.ToVersion)
				}
				return nil
			})
		},
	}
}
