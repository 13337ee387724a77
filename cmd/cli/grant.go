package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/pgundo/pgundo/history"
)

type grantOptions struct {
	revoke bool
}

// Validate checks the arguments that need no database.
func (o grantOptions) Validate(args []string) error {
	if len(args) != 2 {
		return usageErr(errors.New("usage: pgundo grant auditor ROLE"))
	}
	if args[0] != "auditor" {
		return usageErr(fmt.Errorf("unknown grant %q: the one grant is auditor (read-only access to pgundo's views)", args[0]))
	}
	if args[1] == "" {
		return usageErr(errors.New("name the role to grant auditor to"))
	}
	return nil
}

func newGrantCommand(g *globals) *cobra.Command {
	var o grantOptions
	cmd := &cobra.Command{
		Use:   "grant auditor ROLE",
		Short: "Let a read-only role query pgundo's views (and nothing else)",
		Long: `Grant an existing role read-only access to pgundo's documented views, for
auditors, BI tools and psql users:

  pgundo.changes      every logged row change: statement id, xid, time, op,
                      schema and table, session, login user, effective role,
                      application_name, client address, tag, old/new row
                      images (exact text) and old_data/new_data (jsonb)
  pgundo.row_history  the same by table and primary-key value (key,
                      previous_key, next_key), through the row-history index;
                      SELECT pgundo.refresh_history() first to include the
                      latest changes
  pgundo.sessions     one row per session: who, from where, when, how many
                      changes in which tables, undo links
  pgundo.session_totals
                      the same sessions with the totals pgundo sessions shows,
                      read from the console's summaries: fast on a big log
  pgundo.statements   one row per logged statement: session, xid, time, op,
                      table, the rows it changed, role, application, tag

It grants USAGE on schema pgundo, SELECT on those five views, and EXECUTE on
pgundo.refresh_history(), pgundo.refresh_summaries(bigint) (both only add
what is derived from the log: the row-history index, the totals
session_totals reads) and pgundo._image_jsonb(oid, text) (which the views
call). Nothing else: the log's tables stay unreadable to the role except
through the views, and nothing becomes writable. --revoke takes exactly that
back. Run it as the role that installed pgundo (or a superuser). The role must
exist.

pgundo's own commands (sessions, show, history, log, asof, ...) read the log
tables, not the views: run as an auditor they exit 1 with one line naming the
views it may query instead.`,
		Example: `  psql -c "CREATE ROLE auditor LOGIN PASSWORD 'secret'"
  pgundo grant auditor auditor
  psql -U auditor -c "SELECT at, op, table_name, login_user, old_data, new_data FROM pgundo.changes WHERE table_name = 'orders' ORDER BY stmt_id DESC LIMIT 20"
  pgundo grant auditor auditor --revoke`,
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
			res, err := history.GrantAuditor(ctx, conn, args[1], o.revoke)
			var re *history.RequestError
			if errors.As(err, &re) {
				return usageErr(err)
			}
			if err != nil {
				return err
			}
			return g.output(res, func(w io.Writer) error {
				for _, s := range res.Statements {
					fmt.Fprintln(w, s+";")
				}
				if res.Revoked {
					fmt.Fprintf(w, "role %s can no longer read pgundo's views\n", res.Role)
				} else {
					fmt.Fprintf(w, "role %s can read %s, and nothing else of pgundo\n", res.Role, strings.Join(res.Views, ", "))
				}
				if res.Superuser {
					fmt.Fprintf(w, "note: %s is a superuser; superusers bypass all privileges, so this changes nothing for it\n", res.Role)
				}
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&o.revoke, "revoke", false, "take the auditor privileges back")
	return cmd
}
