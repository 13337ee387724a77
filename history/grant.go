package history

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// AuditorViews are the views in schema pgundo that an auditor role may read
// (GrantAuditor): pgundo.changes (every row change with table and session
// context, old/new as exact text images and as jsonb), pgundo.row_history
// (the same by table and primary-key value, through the row-history index),
// pgundo.sessions (one row per session, totalled from the whole log),
// pgundo.session_totals (the same sessions with the totals Sessions reads,
// from the console's summaries and the log above them: fast on a big log)
// and pgundo.statements (one row per statement of pgundo.changes).
var AuditorViews = []string{"pgundo.changes", "pgundo.row_history", "pgundo.sessions", "pgundo.session_totals", "pgundo.statements"}

// AuditorFunctions are the functions an auditor role may call: the one the
// views use to render images as jsonb, the refresh of the row-history index
// (which only adds index entries derived from the log) and the refresh of
// the console's summaries that pgundo.session_totals reads (which only adds
// totals derived from the log, and a sample of its size), so that an
// auditor's console keeps them current itself.
var AuditorFunctions = []string{"pgundo._image_jsonb(oid, text)", "pgundo.refresh_history()", "pgundo.refresh_summaries(bigint)"}

// Grant is what GrantAuditor granted or revoked.
type Grant struct {
	Role       string   `json:"role"`
	Revoked    bool     `json:"revoked"`
	Schema     string   `json:"schema_usage"`
	Views      []string `json:"select_on"`
	Functions  []string `json:"execute_on"`
	Superuser  bool     `json:"superuser"`
	Statements []string `json:"statements"`
}

// GrantAuditor lets role read pgundo's views and nothing else of pgundo:
// USAGE on schema pgundo, SELECT on AuditorViews, EXECUTE on
// AuditorFunctions, in one transaction. The log's tables stay unreadable to
// it (the views read them with their owner's rights) and nothing becomes
// writable. With revoke it takes exactly those privileges back. An unknown
// role is a RequestError.
func GrantAuditor(ctx context.Context, db Conn, role string, revoke bool) (*Grant, error) {
	g := &Grant{Role: role, Revoked: revoke, Schema: "pgundo", Views: AuditorViews, Functions: AuditorFunctions}
	var exists bool
	if err := db.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_roles WHERE rolname = $1), coalesce((SELECT rolsuper FROM pg_roles WHERE rolname = $1), false)", role).
		Scan(&exists, &g.Superuser); err != nil {
		return nil, fmt.Errorf("look up role %s: %w", role, err)
	}
	if !exists {
		return nil, requestErr("role %q does not exist; create it first (CREATE ROLE %s LOGIN PASSWORD '...'), then run this again", role, pgx.Identifier{role}.Sanitize())
	}
	r := pgx.Identifier{role}.Sanitize()
	verb, prep := "GRANT", "TO"
	if revoke {
		verb, prep = "REVOKE", "FROM"
	}
	g.Statements = append(g.Statements, fmt.Sprintf("%s USAGE ON SCHEMA pgundo %s %s", verb, prep, r))
	for _, v := range AuditorViews {
		g.Statements = append(g.Statements, fmt.Sprintf("%s SELECT ON %s %s %s", verb, v, prep, r))
	}
	for _, f := range AuditorFunctions {
		g.Statements = append(g.Statements, fmt.Sprintf("%s EXECUTE ON FUNCTION %s %s %s", verb, f, prep, r))
	}
	err := pgx.BeginTxFunc(ctx, db, pgx.TxOptions{}, func(tx pgx.Tx) error {
		for _, s := range g.Statements {
			if _, err := tx.Exec(ctx, s); err != nil {
				return fmt.Errorf("%s: %w", s, err)
			}
		}
		return nil
	})
	if err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == pgerrcode.InsufficientPrivilege {
			return nil, fmt.Errorf("%s auditor %s: %w (run it as the role that installed pgundo, or a superuser)", verb, role, err)
		}
		return nil, err
	}
	return g, nil
}
