package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgundo/pgundo/history"
	pgsql "github.com/pgundo/pgundo/sql"
)

// connString picks the connection: --database-url, then DATABASE_URL, then
// "" (pgx then reads the libpq PG* variables).
func (g *globals) connString() string {
	if g.databaseURL != "" {
		return g.databaseURL
	}
	return os.Getenv("DATABASE_URL")
}

// connConfig parses the connection settings, sets application_name to
// "pgundo" when none is given, and a 10s connect timeout when none is given.
func (g *globals) connConfig() (*pgx.ConnConfig, error) {
	cfg, err := pgx.ParseConfig(g.connString())
	if err != nil {
		return nil, usageErr(fmt.Errorf("invalid connection string (from --database-url, DATABASE_URL or PG* variables): %w", err))
	}
	if cfg.RuntimeParams["application_name"] == "" {
		cfg.RuntimeParams["application_name"] = "pgundo"
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 10 * time.Second
	}
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
		if n.Severity == "WARNING" {
			fmt.Fprintf(g.stderr, "pgundo: warning: %s\n", n.Message)
		}
	}
	return cfg, nil
}

// connect opens one connection, with an error that names the server and
// says what to check.
func (g *globals) connect(ctx context.Context) (*pgx.Conn, error) {
	cfg, err := g.connConfig()
	if err != nil {
		return nil, err
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, connectError(cfg, err)
	}
	g.mu.Lock()
	g.conns = append(g.conns, conn)
	g.mu.Unlock()
	return conn, nil
}

// waitCleanup waits (up to 5 s) until every connection the command opened
// has been cleaned up. After Ctrl-C, pgx cancels the running statement and
// closes the connection from a goroutine: exiting before it is done would
// leave the statement running on the server, holding its locks, while we
// say it was rolled back.
func (g *globals) waitCleanup() {
	g.mu.Lock()
	conns := g.conns
	g.conns = nil
	g.mu.Unlock()
	deadline := time.After(5 * time.Second)
	for _, c := range conns {
		if !c.IsClosed() {
			c.Close(context.Background())
		}
		select {
		case <-c.PgConn().CleanupDone():
		case <-deadline:
			return
		}
	}
}

// connectInstalled connects and checks that pgundo's schema is installed and
// current.
func (g *globals) connectInstalled(ctx context.Context) (*pgx.Conn, error) {
	conn, err := g.connect(ctx)
	if err != nil {
		return nil, err
	}
	if err := pgsql.CheckInstalled(ctx, conn); err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == pgerrcode.InsufficientPrivilege {
			err = g.accessError(ctx, conn, pe)
		} else {
			err = fmt.Errorf("database %s: %w", conn.Config().Database, err)
		}
		conn.Close(context.Background())
		return nil, err
	}
	// Best effort: what is read is the same either way (see pgsql.Fold).
	done := g.working("folding the journal into the log")
	_, err = pgsql.Fold(ctx, conn)
	done()
	if err != nil && ctx.Err() != nil {
		conn.Close(context.Background())
		return nil, ctx.Err()
	}
	return conn, nil
}

// accessError explains, in one line, why the connected role may not use
// this command: an auditor (pgundo grant auditor) may read pgundo's views
// only, not the log tables the commands read; any other role has no access
// to pgundo at all. denied is the server's refusal, for when the role's
// privileges cannot be read either.
func (g *globals) accessError(ctx context.Context, conn *pgx.Conn, denied *pgconn.PgError) error {
	db := conn.Config().Database
	role, auditor, err := auditorRole(ctx, conn)
	if err != nil {
		return fmt.Errorf("database %s: %s (SQLSTATE %s); run pgundo as the role that installed it", db, denied.Message, denied.Code)
	}
	command := g.command
	if command == "" {
		command = "pgundo"
	}
	if auditor {
		return &exitError{code: ExitError,
			err: fmt.Errorf("role %s is a pgundo auditor in database %s: it may read the views %s, not run %s, which reads pgundo's log tables; query the views (psql, BI tools), or run %s as the role that installed pgundo",
				role, db, strings.Join(history.AuditorViews, ", "), command, command),
			hint: "query " + strings.Join(history.AuditorViews, ", ") + " with psql"}
	}
	return &exitError{code: ExitError,
		err: fmt.Errorf("role %s has no access to pgundo in database %s (%s); run %s as the role that installed pgundo, or let it read pgundo's views: pgundo grant auditor %s",
			role, db, denied.Message, command, role),
		hint: "run " + command + " as the role that installed pgundo"}
}

// auditorRole returns the connected role, and whether it may read pgundo's
// views (pgundo grant auditor).
func auditorRole(ctx context.Context, conn *pgx.Conn) (string, bool, error) {
	var role string
	var auditor bool
	// By oid, never by name: naming pgundo's objects needs USAGE on the schema.
	err := conn.QueryRow(ctx, `
		SELECT current_user::text,
		       coalesce(has_schema_privilege(n.oid, 'USAGE') AND has_table_privilege(c.oid, 'SELECT'), false)
		  FROM pg_namespace n LEFT JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = 'changes'
		 WHERE n.nspname = $1`, pgsql.Schema).Scan(&role, &auditor)
	return role, auditor, err
}

func connectError(cfg *pgx.ConnConfig, err error) error {
	where := describeServer(cfg)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		// The server answered: authentication, unknown database, ...
		return &exitError{code: ExitError, err: fmt.Errorf("cannot connect to PostgreSQL at %s as user %q: %s (SQLSTATE %s)", where, cfg.User, pgErr.Message, pgErr.Code),
			hint: "check the user, password and database (--database-url, DATABASE_URL or PGUSER/PGPASSWORD/PGDATABASE)"}
	}
	if errors.Is(err, context.Canceled) {
		return err
	}
	const check = "check that the server is running and reachable, and --database-url, DATABASE_URL or PGHOST/PGPORT"
	return &exitError{code: ExitError, err: fmt.Errorf("cannot connect to PostgreSQL at %s: %v; %s", where, unwrapConnect(err), check), hint: check}
}

func describeServer(cfg *pgx.ConnConfig) string {
	host := cfg.Host
	if strings.HasPrefix(host, "/") {
		return fmt.Sprintf("%s/.s.PGSQL.%d (database %q)", host, cfg.Port, cfg.Database)
	}
	return fmt.Sprintf("%s (database %q)", net.JoinHostPort(host, fmt.Sprint(cfg.Port)), cfg.Database)
}

// unwrapConnect drops pgx's "failed to connect to ..." prefix, which repeats
// what describeServer already said.
func unwrapConnect(err error) error {
	for {
		u := errors.Unwrap(err)
		if u == nil {
			return err
		}
		var ne net.Error
		if errors.As(err, &ne) {
			return ne
		}
		err = u
	}
}
