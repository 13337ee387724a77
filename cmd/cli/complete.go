package cli

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"

	"github.com/pgundo/pgundo/history"
	"github.com/pgundo/pgundo/internal/timefmt"
)

// Shell completion (pgundo completion bash|zsh|fish|powershell, cobra's
// own) offers candidates read from the database named by --database-url,
// DATABASE_URL or the PG* variables, as every command connects. Without a
// connection, or without pgundo installed, it offers nothing and says
// nothing: a completion never prints an error.

// completeTimeout bounds what one completion may spend on the database.
const completeTimeout = 3 * time.Second

// completeLimit is the most candidates one completion offers.
const completeLimit = 200

// completeFrom runs list on a connection and returns its candidates in
// the order given (cobra's KeepOrder), or none when anything fails.
func (g *globals) completeFrom(ctx context.Context, list func(ctx context.Context, conn *pgx.Conn) ([]string, error)) ([]string, cobra.ShellCompDirective) {
	const none = cobra.ShellCompDirectiveNoFileComp
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithTimeout(ctx, completeTimeout)
	defer cancel()
	conn, err := g.connectInstalled(ctx)
	if err != nil {
		return nil, none
	}
	defer conn.Close(context.Background())
	out, err := list(ctx, conn)
	if err != nil {
		return nil, none
	}
	return out, none | cobra.ShellCompDirectiveKeepOrder
}

// completeSessions offers session ids, the most recently active first,
// each described by its application and last change; ids already given
// are left out. A command that takes one session gets candidates only for
// its first argument.
func (g *globals) completeSessions(many bool) func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		if !many && len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		return g.completeFrom(cmd.Context(), func(ctx context.Context, conn *pgx.Conn) ([]string, error) {
			sessions, err := history.Sessions(ctx, conn, history.SessionFilter{Limit: completeLimit})
			if err != nil {
				return nil, err
			}
			var out []string
			for _, s := range sessions {
				if !strings.HasPrefix(s.ID, toComplete) || slices.Contains(args, s.ID) {
					continue
				}
				app := s.ApplicationName
				if app == "" {
					app = "no application_name"
				}
				out = append(out, s.ID+"\t"+app+", "+timefmt.Format(s.LastChangeAt))
			}
			return out, nil
		})
	}
}

// completeTrackedTables offers the tracked tables, by name as psql takes
// them. With first, only a command's first argument is a table.
func (g *globals) completeTrackedTables(first bool) func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		if first && len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		return g.completeFrom(cmd.Context(), func(ctx context.Context, conn *pgx.Conn) ([]string, error) {
			rows, err := conn.Query(ctx, `
				SELECT quote_ident(schema_name) || '.' || quote_ident(table_name) AS name
				  FROM pgundo.tracked ORDER BY 1`)
			if err != nil {
				return nil, err
			}
			names, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil {
				return nil, err
			}
			var out []string
			for _, n := range names {
				if strings.HasPrefix(n, toComplete) && !slices.Contains(args, n) {
					out = append(out, n)
				}
			}
			return out, nil
		})
	}
}

// completeTags offers the tags in the log, the most recently used first.
func (g *globals) completeTags(cmd *cobra.Command, _ []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	return g.completeFrom(cmd.Context(), func(ctx context.Context, conn *pgx.Conn) ([]string, error) {
		prefix := strings.NewReplacer(`\`, `\\`, "%", `\%`, "_", `\_`).Replace(toComplete) + "%"
		rows, err := conn.Query(ctx, `
			SELECT tag FROM pgundo.stmt WHERE tag LIKE $1
			 GROUP BY tag ORDER BY max(at) DESC, tag LIMIT $2`, prefix, completeLimit)
		if err != nil {
			return nil, err
		}
		return pgx.CollectRows(rows, pgx.RowTo[string])
	})
}
