package cli

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/pgundo/pgundo/internal/humanize"
	pgsql "github.com/pgundo/pgundo/sql"
)

type uninstallOptions struct {
	yes bool
}

type uninstallResult struct {
	Removed       bool  `json:"removed"`
	TrackedTables int64 `json:"tracked_tables"`
	LogBytes      int64 `json:"log_bytes"`
}

func newUninstallCommand(g *globals) *cobra.Command {
	var o uninstallOptions
	cmd := &cobra.Command{
		Use:   "uninstall --yes",
		Short: "Remove capture from every table and drop schema pgundo with its log",
		Long: `Remove the capture triggers from every tracked table (and partition) and drop
schema "pgundo" with the whole log, in one transaction. The log cannot be
recovered afterwards: without --yes, uninstall only says what it would remove.`,
		Example: `  pgundo uninstall          # shows what would be removed, exits 2
  pgundo uninstall --yes`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			conn, err := g.connect(ctx)
			if err != nil {
				return err
			}
			defer conn.Close(context.Background())
			fp, err := pgsql.ReadFootprint(ctx, conn)
			res := uninstallResult{TrackedTables: fp.TrackedTables, LogBytes: fp.LogBytes}
			if err != nil {
				if errors.Is(pgsql.CheckInstalled(ctx, conn), pgsql.ErrNotInstalled) {
					return usageErr(fmt.Errorf("database %s: nothing to uninstall: %w", conn.Config().Database, pgsql.ErrNotInstalled))
				}
				return fmt.Errorf("read what uninstall would remove: %w", err)
			}
			if !o.yes {
				return usageErr(fmt.Errorf("uninstall would stop capture on %d tracked tables and drop schema pgundo with %s of log, which cannot be recovered; nothing was changed; run again with --yes to do it",
					res.TrackedTables, humanBytes(res.LogBytes)))
			}
			if err := pgsql.Uninstall(ctx, conn); err != nil {
				return fmt.Errorf("uninstall from database %s: %w", conn.Config().Database, err)
			}
			res.Removed = true
			return g.output(res, func(w io.Writer) error {
				fmt.Fprintf(w, "removed capture from %d tables and dropped schema pgundo (%s of log)\n", res.TrackedTables, humanBytes(res.LogBytes))
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&o.yes, "yes", false, "really uninstall (default false: refuse and say what would be removed)")
	return cmd
}

// humanBytes renders a size in bytes as 1.5 MiB (internal/humanize).
func humanBytes(n int64) string { return humanize.Bytes(n) }
