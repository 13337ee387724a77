package cli

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/pgundo/pgundo/console"
)

// TokenEnv names the environment variable that sets the console's token
// instead of a random one.
const TokenEnv = "PGUNDO_SERVE_TOKEN"

type serveOptions struct {
	listen           string
	allowUndo        bool
	tlsCert, tlsKey  string
	insecureListen   bool
	statementTimeout time.Duration
	undoTimeout      time.Duration
}

// Validate checks the flags: a listen address that is not loopback needs
// TLS or --insecure-listen.
func (o serveOptions) Validate() error {
	host, _, err := net.SplitHostPort(o.listen)
	if err != nil {
		return usageErr(fmt.Errorf("--listen %q: want HOST:PORT, e.g. 127.0.0.1:8080", o.listen))
	}
	if (o.tlsCert == "") != (o.tlsKey == "") {
		return usageErr(errors.New("--tls-cert and --tls-key go together: give both"))
	}
	if o.statementTimeout <= 0 || o.undoTimeout <= 0 {
		return usageErr(errors.New("--statement-timeout and --undo-timeout must be more than 0"))
	}
	if !isLoopback(host) && o.tlsCert == "" && !o.insecureListen {
		where := host
		if where == "" {
			where = "every interface"
		}
		return usageErr(fmt.Errorf("--listen %s: the console shows production data and would listen on %s, not loopback; "+
			"give --tls-cert and --tls-key, or --insecure-listen to serve plain HTTP there anyway (behind a TLS proxy), or listen on 127.0.0.1", o.listen, where))
	}
	return nil
}

// isLoopback reports whether host names only the loopback interface.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

func newServeCommand(g *globals) *cobra.Command {
	o := serveOptions{listen: "127.0.0.1:8080", statementTimeout: console.DefaultStatementTimeout, undoTimeout: console.DefaultUndoTimeout}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "The web console: sessions, diffs, history, activity, undo plans",
		Long: `Serve pgundo's web console on --listen (default 127.0.0.1:8080), on the same
connection settings as every command: the sessions (newest first, filtered by
time, user, application, tag and table), each session's row diffs, row
history and as-of views, capture status, an activity chart of changes per
minute or hour, and the plan of undoing a session, a tag or a transaction
(a dry run, with its conflicts and a download of the SQL script).

Security: the console shows production data.
  - It listens on loopback unless told otherwise: any other --listen needs
    --tls-cert and --tls-key, or --insecure-listen (plain HTTP, e.g. behind
    a TLS proxy); otherwise it refuses (exit 2).
  - Every request needs a token: a random one made at start, printed once,
    as part of the address on the first line of stdout
    (http://127.0.0.1:8080/?token=...); $` + TokenEnv + ` sets it instead.
    The first visit with ?token= sets an HttpOnly, SameSite=Strict cookie;
    "Authorization: Bearer TOKEN" works too. Without it: 401, no data.
  - Undo is offered only with --allow-undo: a button on the plan page that
    needs the session id (tag, transaction id) typed again, sent as a POST
    with a CSRF token. The undo then runs in the background, one at a time
    per target, on a page showing its progress, then its result; if pgundo
    serve stops first, its transaction rolls back. Without the flag no page
    offers it and the endpoints refuse.
  - Every query runs under --statement-timeout; undo and its dry run under
    --undo-timeout.

It runs until Ctrl-C. Exit codes: 0 stopped by Ctrl-C; 1 error (cannot
listen, cannot connect, pgundo not installed); 2 bad usage (a non-loopback
--listen without TLS or --insecure-listen).`,
		Example: `  pgundo serve
  pgundo serve --listen 127.0.0.1:9000 --allow-undo
  PGUNDO_SERVE_TOKEN=$(openssl rand -hex 16) pgundo serve
  pgundo serve --listen 0.0.0.0:8443 --tls-cert cert.pem --tls-key key.pem
  curl -H "Authorization: Bearer $PGUNDO_SERVE_TOKEN" http://127.0.0.1:8080/status`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.Validate(); err != nil {
				return err
			}
			return g.serve(cmd.Context(), o)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&o.listen, "listen", o.listen, "HOST:PORT to listen on; not loopback only with --tls-cert/--tls-key or --insecure-listen (port 0: any free port)")
	fl.BoolVar(&o.allowUndo, "allow-undo", false, "offer the Undo button on plan pages (typed confirmation, CSRF-protected POST); default off: read only")
	fl.StringVar(&o.tlsCert, "tls-cert", "", "serve HTTPS with this PEM certificate (with --tls-key)")
	fl.StringVar(&o.tlsKey, "tls-key", "", "the PEM private key of --tls-cert")
	fl.BoolVar(&o.insecureListen, "insecure-listen", false, "allow a non-loopback --listen over plain HTTP (behind a TLS proxy)")
	fl.DurationVar(&o.statementTimeout, "statement-timeout", o.statementTimeout, "statement timeout of every query of a page")
	fl.DurationVar(&o.undoTimeout, "undo-timeout", o.undoTimeout, "statement timeout of an undo and of a plan's dry run")
	return cmd
}

// isAuditor reports whether the connected role is a pgundo auditor.
func (g *globals) isAuditor(ctx context.Context) bool {
	conn, err := g.connect(ctx)
	if err != nil {
		return false
	}
	defer conn.Close(context.Background())
	_, auditor, err := auditorRole(ctx, conn)
	return err == nil && auditor
}

// serve runs the console until ctx is cancelled.
func (g *globals) serve(ctx context.Context, o serveOptions) error {
	token := os.Getenv(TokenEnv)
	if token == "" {
		var err error
		if token, err = console.NewToken(); err != nil {
			return err
		}
	}
	// Check once, as every command does, that pgundo is installed and
	// current, and say so now rather than on every page.
	check, err := g.connectInstalled(ctx)
	auditor := false
	if err != nil {
		// An auditor may read pgundo's views only: served read only, from them.
		if auditor = g.isAuditor(ctx); !auditor {
			return err
		}
		if o.allowUndo {
			fmt.Fprintln(g.stderr, "pgundo: --allow-undo ignored: an auditor role cannot undo")
		}
	} else {
		check.Close(context.Background())
	}
	cfg, err := g.connConfig()
	if err != nil {
		return err
	}
	pool, err := console.Open(ctx, cfg, o.statementTimeout)
	if err != nil {
		return connectError(cfg, err)
	}
	defer pool.Close()
	srv, err := console.New(console.Options{Pool: pool, Token: token, AllowUndo: o.allowUndo && !auditor, Auditor: auditor, Secure: o.tlsCert != "", UndoTimeout: o.undoTimeout})
	if err != nil {
		return err
	}
	defer srv.Close()
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", o.listen, err)
	}
	scheme := "http"
	if o.tlsCert != "" {
		cert, err := tls.LoadX509KeyPair(o.tlsCert, o.tlsKey)
		if err != nil {
			ln.Close()
			return usageErr(fmt.Errorf("--tls-cert %s / --tls-key %s: %w", o.tlsCert, o.tlsKey, err))
		}
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
		scheme = "https"
	}
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second, BaseContext: func(net.Listener) context.Context { return ctx }}
	fmt.Fprintf(g.stdout, "%s://%s/?token=%s\n", scheme, ln.Addr().String(), token)
	mode := "read only (start with --allow-undo to offer undo)"
	switch {
	case auditor:
		mode = "read only as an auditor: sessions and their row changes, from pgundo's views"
	case o.allowUndo:
		mode = "undo allowed"
	}
	fmt.Fprintf(g.stderr, "pgundo: console on %s://%s, %s; Ctrl-C stops it\n", scheme, ln.Addr().String(), mode)
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve on %s: %w", o.listen, err)
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = hs.Shutdown(shutdown)
	fmt.Fprintln(g.stderr, "pgundo: console stopped")
	return nil
}
