// Package console serves pgundo's web console (pgundo serve): sessions,
// their row diffs, row history and as-of views, capture status, an
// activity chart, and the plan of undoing a session, a tag or a
// transaction, with the undo itself only when the server is started with
// AllowUndo.
//
// It is a plain net/http handler with server-rendered html/template pages
// and assets embedded with go:embed: no JavaScript, nothing fetched at run
// time. Handlers are thin: they call the library packages (history, undo,
// triggers) that the command line calls, and render their results.
//
// Every request needs the token (Options.Token): as ?token= on a first
// visit (which sets an HttpOnly, SameSite=Strict cookie and redirects to the
// same page without it), the cookie, or an "Authorization: Bearer TOKEN"
// header. Without it every path answers 401 with no data. Pages are sent
// with a Content-Security-Policy that allows only the console's own style
// sheet; the undo is a POST with a CSRF token and the session id (tag,
// transaction id) typed again, and runs in the background with a page of
// its progress. The package never prints.
package console

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	pgsql "github.com/pgundo/pgundo/sql"
)

//go:embed templates/*.html static/*
var assets embed.FS

// Defaults of Options.
const (
	// DefaultStatementTimeout bounds every query of a page.
	DefaultStatementTimeout = 15 * time.Second
	// DefaultUndoTimeout bounds the statements of an undo run from the
	// console (and of the plan page's dry run).
	DefaultUndoTimeout = 10 * time.Minute
	// DefaultPageSize is the number of sessions or row changes per page.
	DefaultPageSize = 50
)

// CookieName is the cookie that holds the token after a first visit with
// ?token=.
const CookieName = "pgundo_console"

// Options configure a console Server.
type Options struct {
	// Pool is where every page reads from. Open it with Open so that every
	// query runs under a statement timeout. Required.
	Pool *pgxpool.Pool
	// Token is the secret every request must carry. Required (NewToken
	// makes one).
	Token string
	// AllowUndo offers the Undo button on plan pages and accepts the POST
	// that starts it (and serves its progress page). Default false: no page
	// offers it and the endpoints refuse (403).
	AllowUndo bool
	// Secure marks the cookie Secure (the server runs TLS). Default false.
	Secure bool
	// UndoTimeout is the statement timeout of an undo and of a plan's dry
	// run; 0 means DefaultUndoTimeout.
	UndoTimeout time.Duration
	// PageSize is the number of sessions or row changes per page; 0 means
	// DefaultPageSize.
	PageSize int
	// PlanWait is how long a plan page waits for its dry run before it
	// answers 202 with a page that reloads itself until the run is done (the
	// run goes on in the background, once per session and log position); 0
	// means DefaultPlanWait.
	PlanWait time.Duration
	// Auditor serves the console to a role granted pgundo grant auditor,
	// which may read pgundo's views only: the sessions and their row
	// changes from the views, every other page answers 403 saying why, and
	// nothing offers or runs an undo (AllowUndo is ignored). It refreshes
	// the summaries as the owner's console does (an auditor may run
	// pgundo.refresh_summaries() from schema 10 on).
	Auditor bool
	// NoSummaryRefresh leaves the log summaries as they are (tests; pages
	// are exact either way). Default false: the server refreshes them in
	// the background until Close.
	NoSummaryRefresh bool
	// Now returns the current time (for relative times such as since=2h);
	// nil means time.Now.
	Now func() time.Time
}

// Server is the console's http.Handler.
type Server struct {
	opts  Options
	mux   *http.ServeMux
	pages map[string]*template.Template
	csrf  string

	foldMu   sync.Mutex
	lastFold time.Time

	stop        context.CancelFunc
	refreshDone chan struct{}

	planMu  sync.Mutex
	plans   map[string]*planJob // by target.key()
	planRun chan struct{}       // one dry run at a time

	// bg ends when the server is closed: undo runs stop (and roll back).
	bg      context.Context
	runMu   sync.Mutex
	runs    map[int64]*undoRun  // by number, the newest maxRuns finished ones and every running one
	running map[string]*undoRun // by target.key(), while running
	runSeq  int64
	runWG   sync.WaitGroup
}

// NewToken returns a random token of 32 hex digits (128 bits).
func NewToken() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("make a console token: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// Open opens a small pool (at most 4 connections) on cfg in which every
// statement runs under statementTimeout (0: DefaultStatementTimeout), and
// without JIT compilation.
func Open(ctx context.Context, cfg *pgx.ConnConfig, statementTimeout time.Duration) (*pgxpool.Pool, error) {
	if statementTimeout <= 0 {
		statementTimeout = DefaultStatementTimeout
	}
	pc, err := pgxpool.ParseConfig("")
	if err != nil {
		return nil, err
	}
	cc := cfg.Copy()
	cc.RuntimeParams["statement_timeout"] = fmt.Sprint(statementTimeout.Milliseconds())
	// A page's queries are small, but the planner's cost of some (the
	// status page's catalog joins, 8,000) passes jit_above_cost: compiling
	// them took 1.6 s of a 2 ms query on the bench log.
	cc.RuntimeParams["jit"] = "off"
	pc.ConnConfig = cc
	pc.MaxConns = 4
	pc.MinConns = 0
	return pgxpool.NewWithConfig(ctx, pc)
}

// New builds a Server and starts its background work (the log summaries'
// refresh); Close stops it.
func New(o Options) (*Server, error) {
	if o.Pool == nil {
		return nil, errors.New("console: no database pool")
	}
	if o.Token == "" {
		return nil, errors.New("console: empty token")
	}
	if o.UndoTimeout <= 0 {
		o.UndoTimeout = DefaultUndoTimeout
	}
	if o.PageSize <= 0 {
		o.PageSize = DefaultPageSize
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Auditor {
		o.AllowUndo = false
	}
	if o.PlanWait <= 0 {
		o.PlanWait = DefaultPlanWait
	}
	s := &Server{opts: o, mux: http.NewServeMux(), pages: map[string]*template.Template{},
		plans: map[string]*planJob{}, planRun: make(chan struct{}, 1),
		runs: map[int64]*undoRun{}, running: map[string]*undoRun{}}
	// The CSRF token is derived from the secret token, so it is stable for
	// the server's life and unknown to anyone without the token.
	m := hmac.New(sha256.New, []byte(o.Token))
	m.Write([]byte("pgundo console csrf"))
	s.csrf = hex.EncodeToString(m.Sum(nil))
	for _, p := range []string{"sessions", "session", "history", "asof", "status", "plan", "planning", "undorun", "activity", "error"} {
		t, err := template.New(p).Funcs(funcs).ParseFS(assets, "templates/layout.html", "templates/"+p+".html")
		if err != nil {
			return nil, fmt.Errorf("console: parse template %s: %w", p, err)
		}
		s.pages[p] = t
	}
	static, err := fs.Sub(assets, "static")
	if err != nil {
		return nil, err
	}
	s.mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	// The pages an auditor may not have: the owner's handler, or 403 for an
	// auditor (one list, so that a page added here is refused to auditors).
	ownerOnly := []struct {
		pattern string
		handler http.HandlerFunc
	}{
		{"GET /history", s.historyPage}, {"GET /asof", s.asofPage}, {"GET /status", s.statusPage},
		{"GET /activity", s.activityPage}, {"GET /plan/{id}", s.planPage}, {"GET /plan/{id}/undo.sql", s.planSQL},
		{"POST /undo/{id}", s.undoPost}, {"GET /plan", s.planByPage}, {"GET /plan/undo.sql", s.planBySQL},
		{"POST /undo", s.undoByPost}, {"GET /undo-run/{n}", s.runPage},
	}
	if o.Auditor {
		s.mux.HandleFunc("GET /{$}", s.auditorSessions)
		s.mux.HandleFunc("GET /session/{id}", s.auditorSession)
	} else {
		s.mux.HandleFunc("GET /{$}", s.sessionsPage)
		s.mux.HandleFunc("GET /session/{id}", s.sessionPage)
	}
	for _, r := range ownerOnly {
		if o.Auditor {
			s.mux.HandleFunc(r.pattern, s.auditorUnavailable)
		} else {
			s.mux.HandleFunc(r.pattern, r.handler)
		}
	}
	var ctx context.Context
	ctx, s.stop = context.WithCancel(context.Background())
	s.bg = ctx
	s.refreshDone = make(chan struct{})
	if !o.NoSummaryRefresh {
		go s.refreshSummaries(ctx)
	} else {
		close(s.refreshDone)
	}
	return s, nil
}

// contentSecurityPolicy allows the console's own style sheet and nothing
// else: no script at all, no frames, forms post only to the console.
const contentSecurityPolicy = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// ServeHTTP checks the token, sets the security headers and serves the
// request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	if q := r.URL.Query(); q.Has("token") {
		if !s.tokenOK(q.Get("token")) {
			s.unauthorized(w)
			return
		}
		http.SetCookie(w, &http.Cookie{Name: CookieName, Value: s.opts.Token, Path: "/", HttpOnly: true,
			SameSite: http.SameSiteStrictMode, Secure: s.opts.Secure})
		// The same page without the token in its address (history,
		// bookmarks, screen shares).
		q.Del("token")
		u := *r.URL
		u.RawQuery = q.Encode()
		http.Redirect(w, r, u.RequestURI(), http.StatusSeeOther)
		return
	}
	if !s.authorized(r) {
		s.unauthorized(w)
		return
	}
	s.mux.ServeHTTP(w, r)
}

func (s *Server) tokenOK(t string) bool {
	return subtle.ConstantTimeCompare([]byte(t), []byte(s.opts.Token)) == 1
}

func (s *Server) authorized(r *http.Request) bool {
	if a := r.Header.Get("Authorization"); a != "" {
		if t, ok := strings.CutPrefix(a, "Bearer "); ok && s.tokenOK(strings.TrimSpace(t)) {
			return true
		}
	}
	if c, err := r.Cookie(CookieName); err == nil && s.tokenOK(c.Value) {
		return true
	}
	return false
}

func (s *Server) unauthorized(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("WWW-Authenticate", `Bearer realm="pgundo"`)
	w.WriteHeader(http.StatusUnauthorized)
	fmt.Fprintln(w, "401 unauthorized: the pgundo console needs its token; open the address pgundo serve printed (it ends in ?token=...), or send Authorization: Bearer TOKEN")
}

// conn acquires a connection for one request and folds the journal into
// the log at most every two seconds (best effort: an auditor may not, and
// reads the same either way).
func (s *Server) conn(ctx context.Context) (*pgxpool.Conn, error) {
	c, err := s.opts.Pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("connect to the database: %w", err)
	}
	s.foldMu.Lock()
	due := !s.opts.Auditor && time.Since(s.lastFold) > 2*time.Second
	if due {
		s.lastFold = time.Now()
	}
	s.foldMu.Unlock()
	if due {
		_, _ = pgsql.Fold(ctx, c.Conn())
	}
	return c, nil
}

// page is what every template gets.
type page struct {
	Title     string
	Nav       string
	AllowUndo bool
	// Notice is shown at the top of every page (the auditor's read-only
	// mode).
	Notice string
	Data   any
}

// respond ends a page handler: the error page for err (see failErr), else
// the page rendered from data with status 200.
func (s *Server) respond(w http.ResponseWriter, err error, name, title string, data any) {
	if err != nil {
		s.failErr(w, err)
		return
	}
	s.render(w, http.StatusOK, name, title, data)
}

func (s *Server) render(w http.ResponseWriter, status int, name, title string, data any) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	var b strings.Builder
	if err := s.pages[name].ExecuteTemplate(&b, "layout", page{Title: title, Nav: name, AllowUndo: s.opts.AllowUndo, Notice: s.notice(), Data: data}); err != nil {
		http.Error(w, "render "+name+": "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.WriteHeader(status)
	_, _ = w.Write([]byte(b.String()))
}

func (s *Server) notice() string {
	if s.opts.Auditor {
		return auditorNotice
	}
	return ""
}

// errorData is the error page's data.
type errorData struct {
	Message string
	Hint    string
}

func (s *Server) fail(w http.ResponseWriter, status int, err error, hint string) {
	s.render(w, status, "error", "Error", errorData{Message: err.Error(), Hint: hint})
}

// link builds a console address with query parameters, leaving out empty
// values.
func link(path string, kv ...string) string {
	q := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] != "" {
			q.Add(kv[i], kv[i+1])
		}
	}
	if len(q) == 0 {
		return path
	}
	return path + "?" + q.Encode()
}

func hmacEqualBytes(a, b []byte) bool { return subtle.ConstantTimeCompare(a, b) == 1 }
