package console

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgundo/pgundo/history"
	"github.com/pgundo/pgundo/internal/timefmt"
	"github.com/pgundo/pgundo/triggers"
	"github.com/pgundo/pgundo/undo"
)

// badRequest is an error in what the page was asked (a filter, a key):
// 400, with the message.
type badRequest struct{ err error }

func (e badRequest) Error() string { return e.err.Error() }
func (e badRequest) Unwrap() error { return e.err }

// failErr renders err with the status its kind calls for.
func (s *Server) failErr(w http.ResponseWriter, err error) {
	var br badRequest
	var re *history.RequestError
	var ne *triggers.NameError
	var nf *undo.NotFoundError
	switch {
	case errors.As(err, &br), errors.As(err, &re), errors.As(err, &ne):
		s.fail(w, http.StatusBadRequest, err, "")
	case errors.Is(err, history.ErrNoSuchSession), errors.As(err, &nf):
		s.fail(w, http.StatusNotFound, err, "the sessions page lists the recorded sessions")
	default:
		s.fail(w, http.StatusInternalServerError, err, "")
	}
}

// pageNumber reads ?page= (1 and up; default 1).
func pageNumber(r *http.Request) (int, error) {
	p := r.URL.Query().Get("page")
	if p == "" {
		return 1, nil
	}
	n, err := strconv.Atoi(p)
	if err != nil || n < 1 || n > 100000 {
		return 0, badRequest{fmt.Errorf("page %q: a page is a number from 1", p)}
	}
	return n, nil
}

// parseTime reads a time parameter as every pgundo time flag does; "" is nil.
func (s *Server) parseTime(name, v string) (*time.Time, error) {
	if v == "" {
		return nil, nil
	}
	t, err := timefmt.Parse(v, s.opts.Now())
	if err != nil {
		return nil, badRequest{fmt.Errorf("%s: %w", name, err)}
	}
	return &t, nil
}

// loadTable resolves a table name as psql would.
func loadTable(ctx context.Context, conn *pgx.Conn, name string) (*history.Table, error) {
	rt, err := triggers.Resolve(ctx, conn, name)
	if err != nil {
		return nil, err
	}
	return history.LoadTable(ctx, conn, rt.OID)
}

// pager links the previous and next pages of a list.
type pager struct {
	Page       int
	Prev, Next string
}

func makePager(r *http.Request, p int, more bool) pager {
	pg := pager{Page: p}
	q := r.URL.Query()
	if p > 1 {
		q.Set("page", strconv.Itoa(p-1))
		pg.Prev = r.URL.Path + "?" + q.Encode()
	}
	if more {
		q.Set("page", strconv.Itoa(p+1))
		pg.Next = r.URL.Path + "?" + q.Encode()
	}
	return pg
}

// pageOf is page p of a list read with one item more than a page (size),
// which says whether there is a next page.
func pageOf[T any](r *http.Request, p, size int, items []T) ([]T, pager) {
	return items[:min(size, len(items))], makePager(r, p, len(items) > size)
}

// ---- sessions

type sessionsFilter struct {
	Since, Until, User, App, Tag, Table string
}

type sessionsData struct {
	// Auditor: the console runs as an auditor role (no plan links).
	Auditor  bool
	Filter   sessionsFilter
	Sessions []history.Session
	Pager    pager
}

func (s *Server) sessionsPage(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	q := r.URL.Query()
	d := sessionsData{Filter: sessionsFilter{Since: q.Get("since"), Until: q.Get("until"), User: q.Get("user"), App: q.Get("app"), Tag: q.Get("tag"), Table: q.Get("table")}}
	err := func() error {
		p, err := pageNumber(r)
		if err != nil {
			return err
		}
		f := history.SessionFilter{User: d.Filter.User, App: d.Filter.App, Tag: d.Filter.Tag}
		if f.Since, err = s.parseTime("since", d.Filter.Since); err != nil {
			return err
		}
		if f.Until, err = s.parseTime("until", d.Filter.Until); err != nil {
			return err
		}
		c, err := s.conn(ctx)
		if err != nil {
			return err
		}
		defer c.Release()
		if d.Filter.Table != "" {
			t, err := triggers.Resolve(ctx, c.Conn(), d.Filter.Table)
			if err != nil {
				return err
			}
			f.TableOID = t.OID
		}
		// This page's sessions, and one more to know whether there is a
		// next page.
		size := s.opts.PageSize
		f.Offset, f.Limit = (p-1)*size, size+1
		ss, err := history.Sessions(ctx, c.Conn(), f)
		if err != nil {
			return err
		}
		d.Sessions, d.Pager = pageOf(r, p, size, ss)
		return nil
	}()
	s.respond(w, err, "sessions", "Sessions", d)
}

// ---- one session

// colView is one column of a row change as the session page shows it.
type colView struct {
	Name     string
	Old, New Value
	HasOld   bool
	HasNew   bool
	Changed  bool
	Key      bool
}

// changeView is one row change as the session and history pages show it.
type changeView struct {
	StmtID      int64
	XID         string
	At          time.Time
	Op          string
	Table       string
	Key         string
	HistoryLink string
	Cols        []colView
	Raw         Value // the row image, when the columns cannot be read
	// Who, for the history page.
	Session, User, Role, App, Client, Tag, PreviousKey string
}

type sessionData struct {
	// Auditor: the console runs as an auditor role (no plan link, no
	// filters).
	Auditor bool
	S       history.Session
	Tables  []history.TableCount
	Changes []changeView
	Total   int64
	Table   string
	Keys    []string
	Pager   pager
	// Txs are the session's transactions, each with a link to the plan of
	// undoing it (not for an auditor); TxMore says more than maxTxs.
	Txs    []txRow
	TxMore bool
}

// maxTxs is the most transactions a session page lists.
const maxTxs = 50

// txRow is one transaction of a session.
type txRow struct {
	XID         string
	Statements  int64
	Rows        int64
	First, Last time.Time
}

// sessionTxs lists the first maxTxs transactions of session id, in log
// order, and whether there are more.
func sessionTxs(ctx context.Context, conn *pgx.Conn, id string) ([]txRow, bool, error) {
	rows, err := conn.Query(ctx, `SELECT xid::text, count(*), sum(rows)::bigint, min(at), max(at) FROM pgundo.stmt
		 WHERE session_id = $1 GROUP BY xid ORDER BY min(id) LIMIT $2`, id, maxTxs+1)
	if err != nil {
		return nil, false, fmt.Errorf("read the transactions of session %s: %w", id, err)
	}
	txs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (txRow, error) {
		var t txRow
		return t, r.Scan(&t.XID, &t.Statements, &t.Rows, &t.First, &t.Last)
	})
	if err != nil {
		return nil, false, fmt.Errorf("read the transactions of session %s: %w", id, err)
	}
	return txs[:min(len(txs), maxTxs)], len(txs) > maxTxs, nil
}

// keyCache remembers tables' primary-key columns by name.
type keyCache struct {
	conn   *pgx.Conn
	byName map[string]*history.Table
}

func (k *keyCache) table(ctx context.Context, name string) *history.Table {
	if t, ok := k.byName[name]; ok {
		return t
	}
	t, err := loadTable(ctx, k.conn, name)
	if err != nil {
		t = nil // dropped since: shown without key links
	}
	k.byName[name] = t
	return t
}

// viewColumns orders a change's columns key first and marks what changed.
func viewColumns(op string, cols []history.ColumnChange, key []history.Column) []colView {
	isKey := func(n string) bool {
		return slices.ContainsFunc(key, func(c history.Column) bool { return c.Name == n })
	}
	var keys, rest []colView
	for _, c := range cols {
		v := colView{Name: c.Column, Old: MakeValue(c.Old), New: MakeValue(c.New), Key: isKey(c.Column)}
		switch op {
		case "INSERT":
			v.HasNew = true
		case "DELETE", "TRUNCATE":
			v.HasOld = true
		default:
			v.HasOld, v.HasNew = true, true
			v.Changed = !eqPtr(c.Old, c.New)
		}
		if v.Key {
			keys = append(keys, v)
		} else {
			rest = append(rest, v)
		}
	}
	// Key columns in key order.
	slices.SortStableFunc(keys, func(a, b colView) int {
		return slices.IndexFunc(key, func(c history.Column) bool { return c.Name == a.Name }) -
			slices.IndexFunc(key, func(c history.Column) bool { return c.Name == b.Name })
	})
	return append(keys, rest...)
}

func eqPtr(a, b *string) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// rowKey returns a row change's primary key as col=value pairs (for the
// history link and the page), from the row after the change, or before it
// for a delete.
func rowKey(op string, cols []history.ColumnChange, key []history.Column) ([]string, bool) {
	var pairs []string
	for _, k := range key {
		i := slices.IndexFunc(cols, func(c history.ColumnChange) bool { return c.Column == k.Name })
		if i < 0 {
			return nil, false
		}
		v := cols[i].New
		if op == "DELETE" || op == "TRUNCATE" || v == nil {
			v = cols[i].Old
		}
		if v == nil {
			return nil, false
		}
		pairs = append(pairs, quoteKeyName(k.Name)+"="+*v)
	}
	return pairs, len(pairs) > 0
}

var plainIdent = regexp.MustCompile(`^[a-z_][a-z0-9_$]*$`)

// quoteKeyName quotes a column name as history.Table.ParseKey reads it.
func quoteKeyName(n string) string {
	if plainIdent.MatchString(n) {
		return n
	}
	return `"` + strings.ReplaceAll(n, `"`, `""`) + `"`
}

func historyLink(table string, pairs []string) string {
	q := url.Values{"table": {table}, "key": pairs}
	return "/history?" + q.Encode()
}

func (s *Server) sessionPage(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	id := r.PathValue("id")
	q := r.URL.Query()
	d := sessionData{Table: q.Get("table"), Keys: q["key"]}
	err := func() error {
		p, err := pageNumber(r)
		if err != nil {
			return err
		}
		if len(d.Keys) > 0 && d.Table == "" {
			return badRequest{errors.New("a key needs its table")}
		}
		c, err := s.conn(ctx)
		if err != nil {
			return err
		}
		defer c.Release()
		conn := c.Conn()
		size := s.opts.PageSize
		o := history.ShowOptions{Offset: (p - 1) * size, Limit: size}
		if d.Table != "" {
			if o.Table, err = loadTable(ctx, conn, d.Table); err != nil {
				return err
			}
		}
		if len(d.Keys) > 0 {
			k, err := o.Table.ParseKey(d.Keys)
			if err != nil {
				return badRequest{err}
			}
			o.Key = &k
		}
		det, err := history.ShowWith(ctx, conn, id, o)
		if err != nil {
			return err
		}
		d.S, d.Tables = det.Session, det.Tables
		for _, t := range det.Tables {
			d.Total += t.Inserts + t.Updates + t.Deletes + t.Truncates
		}
		kc := &keyCache{conn: conn, byName: map[string]*history.Table{}}
		for _, ch := range det.Changes {
			d.Changes = append(d.Changes, s.viewChange(ctx, kc, ch.Op, ch.Table, ch.Columns, ch.Old, ch.New, ch.StmtID, ch.XID, ch.At))
		}
		d.Pager = makePager(r, p, det.More > 0)
		d.Txs, d.TxMore, err = sessionTxs(ctx, conn, id)
		return err
	}()
	if err != nil {
		s.failErr(w, err)
		return
	}
	s.render(w, http.StatusOK, "session", "Session "+id, d)
}

func (s *Server) viewChange(ctx context.Context, kc *keyCache, op, table string, cols []history.ColumnChange, old, new *string, stmt int64, xid string, at time.Time) changeView {
	v := changeView{StmtID: stmt, XID: xid, At: at, Op: op, Table: table}
	var key []history.Column
	if t := kc.table(ctx, table); t != nil {
		key = t.Key
		if pairs, ok := rowKey(op, cols, key); ok {
			v.Key = strings.Join(pairs, " ")
			v.HistoryLink = historyLink(t.Name, pairs)
		}
	}
	v.Cols = viewColumns(op, cols, key)
	if len(cols) == 0 {
		img := new
		if img == nil {
			img = old
		}
		v.Raw = MakeValue(img)
	}
	return v
}

// ---- row history

type historyData struct {
	Table    string
	Keys     []string
	H        *history.RowHistory
	Versions []changeView
	Current  []colView
	At       string
}

func (s *Server) historyPage(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	q := r.URL.Query()
	d := historyData{Table: q.Get("table"), Keys: q["key"]}
	if d.Table == "" || len(d.Keys) == 0 {
		s.render(w, http.StatusOK, "history", "Row history", d)
		return
	}
	err := func() error {
		c, err := s.conn(ctx)
		if err != nil {
			return err
		}
		defer c.Release()
		conn := c.Conn()
		t, err := loadTable(ctx, conn, d.Table)
		if err != nil {
			return err
		}
		k, err := t.ParseKey(d.Keys)
		if err != nil {
			return badRequest{err}
		}
		if d.H, err = history.History(ctx, conn, t, k); err != nil {
			return err
		}
		for _, v := range d.H.Versions {
			cv := changeView{StmtID: v.StmtID, XID: v.XID, At: v.At, Op: v.Op, Table: v.Table, Key: v.Key,
				Session: v.Session, User: v.User, Role: v.Role, App: v.ApplicationName, Client: v.ClientAddr, Tag: deref(v.Tag), PreviousKey: deref(v.PreviousKey)}
			cv.Cols = viewColumns(v.Op, v.Columns, t.Key)
			d.Versions = append(d.Versions, cv)
		}
		for _, cc := range d.H.CurrentColumns {
			d.Current = append(d.Current, colView{Name: cc.Column, New: MakeValue(cc.New), HasNew: true})
		}
		return nil
	}()
	s.respond(w, err, "history", "Row history", d)
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// ---- as of

// AsOfRowLimit is the most rows the as-of page lists.
const AsOfRowLimit = 500

type asofData struct {
	Table   string
	At      string
	AtTime  time.Time
	Keys    []string
	Columns []string
	Rows    [][]Value
	Cut     bool
	Shown   bool
}

var errEnough = errors.New("enough rows")

func (s *Server) asofPage(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	q := r.URL.Query()
	d := asofData{Table: q.Get("table"), At: q.Get("at"), Keys: q["key"]}
	if d.Table == "" || d.At == "" {
		s.render(w, http.StatusOK, "asof", "As of", d)
		return
	}
	err := func() error {
		at, err := s.parseTime("at", d.At)
		if err != nil {
			return err
		}
		d.AtTime = *at
		c, err := s.conn(ctx)
		if err != nil {
			return err
		}
		defer c.Release()
		conn := c.Conn()
		t, err := loadTable(ctx, conn, d.Table)
		if err != nil {
			return err
		}
		for _, col := range t.Columns {
			d.Columns = append(d.Columns, col.Name)
		}
		add := func(fields []*string) {
			row := make([]Value, len(fields))
			for i, f := range fields {
				row[i] = MakeValue(f)
			}
			d.Rows = append(d.Rows, row)
		}
		d.Shown = true
		if len(d.Keys) > 0 {
			k, err := t.ParseKey(d.Keys)
			if err != nil {
				return badRequest{err}
			}
			img, err := history.AsOfRow(ctx, conn, t, k, *at)
			if err != nil || img == nil {
				return err
			}
			fields, err := history.ParseImage(*img)
			if err != nil {
				return err
			}
			add(fields)
			return nil
		}
		err = history.AsOf(ctx, conn, t, *at, func(_ string, fields []*string) error {
			if len(d.Rows) == AsOfRowLimit {
				d.Cut = true
				return errEnough
			}
			add(fields)
			return nil
		})
		if errors.Is(err, errEnough) {
			err = nil
		}
		return err
	}()
	s.respond(w, err, "asof", "As of", d)
}

// ---- status

type statusTable struct {
	triggers.TableStatus
	Fix string
}

type statusData struct {
	Tables  []statusTable
	Healthy bool
	// EventTriggerWarnings: what pgundo's missing or disabled event
	// triggers cost and what restores them (triggers.EventTriggerWarnings).
	EventTriggerWarnings []string
	Log                  history.LogStats
	Seal                 *sealFacts // nil: the log was never sealed
	// The log's size over time: the samples from SizeSince (default
	// DefaultSizeSince) to now, how many there are (SizeCount; the chart
	// shows at most SizePoints of them) and the sampling period.
	SizeSince  string
	Start, End time.Time
	SizeCount  int64
	SizeChart  SizeChart
	Samples    []history.SizeSample
	Thinned    bool // SizeCount > len(Samples)
	Every      string
}

// DefaultSizeSince is the range of the status page's chart of the log's
// size, back from now, unless ?size_since= says otherwise.
const DefaultSizeSince = "30d"

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// SizePoints is the most samples the chart of the log's size draws; a
// range with more draws the newest sample of each of SizePoints equal
// spans of it.
const SizePoints = 720

// sealFacts is the newest seal: what pgundo verify (or a cron'd pgundo
// seal) last sealed, and the head hash to compare with the copy kept
// outside the database.
type sealFacts struct {
	At     time.Time
	Upto   int64 // the last statement id it covers
	Hash   string
	Number int64 // seals in the chain
}

// shellQuote quotes a table name for a shell command line when it needs it.
func shellQuote(s string) string {
	if regexp.MustCompile(`^[A-Za-z0-9_.]+$`).MatchString(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func (s *Server) statusPage(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	d := statusData{SizeSince: r.URL.Query().Get("size_since"), Every: fmt.Sprintf("%d minutes", int(history.SizeSampleEvery.Minutes()))}
	if d.SizeSince == "" {
		d.SizeSince = DefaultSizeSince
	}
	err := func() error {
		since, err := s.parseTime("size_since", d.SizeSince)
		if err != nil {
			return err
		}
		d.Start, d.End = since.UTC(), s.opts.Now().UTC()
		if !d.Start.Before(d.End) {
			return badRequest{errors.New("size_since must be in the past")}
		}
		c, err := s.conn(ctx)
		if err != nil {
			return err
		}
		defer c.Release()
		conn := c.Conn()
		ts, err := triggers.Status(ctx, conn)
		if err != nil {
			return err
		}
		d.Healthy = true
		for _, t := range ts {
			st := statusTable{TableStatus: t}
			switch {
			case t.Dropped:
				st.Fix = "pgundo untrack " + shellQuote(t.Qualified())
			case !t.Healthy():
				st.Fix = "pgundo track " + shellQuote(t.Qualified())
			}
			d.Healthy = d.Healthy && t.Healthy()
			d.Tables = append(d.Tables, st)
		}
		if d.Log, err = history.Stats(ctx, conn); err != nil {
			return err
		}
		var seal sealFacts
		switch err := conn.QueryRow(ctx, `SELECT sealed_at, to_stmt, hash, (SELECT count(*) FROM pgundo.seal) FROM pgundo.seal ORDER BY id DESC LIMIT 1`).
			Scan(&seal.At, &seal.Upto, &seal.Hash, &seal.Number); {
		case errors.Is(err, pgx.ErrNoRows):
		case err != nil:
			return err
		default:
			d.Seal = &seal
		}
		if d.Samples, d.SizeCount, err = history.SizeSamples(ctx, conn, d.Start, d.End, SizePoints); err != nil {
			return err
		}
		d.Thinned = d.SizeCount > int64(len(d.Samples))
		if len(d.Samples) >= 2 {
			// From the first sample when the range starts before it.
			d.SizeChart = layoutSizeChart(d.Samples, maxTime(d.Start, d.Samples[0].At), d.End)
		}
		states, err := triggers.EventTriggerStates(ctx, conn)
		d.EventTriggerWarnings = triggers.EventTriggerWarnings(states)
		return err
	}()
	s.respond(w, err, "status", "Status", d)
}

// ---- activity

// MaxBuckets is the most buckets (bars per series) an activity chart has.
const MaxBuckets = 1500

type activityData struct {
	Since, Until, Bucket, By string
	Start, End               time.Time
	Chart                    Chart
	Series                   []LegendItem
	Total                    int64
}

func (s *Server) activityPage(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	q := r.URL.Query()
	d := activityData{Since: q.Get("since"), Until: q.Get("until"), Bucket: q.Get("bucket"), By: q.Get("by")}
	if d.Since == "" {
		d.Since = "24h"
	}
	err := func() error {
		since, err := s.parseTime("since", d.Since)
		if err != nil {
			return err
		}
		until, err := s.parseTime("until", d.Until)
		if err != nil {
			return err
		}
		end := s.opts.Now()
		if until != nil {
			end = *until
		}
		if !since.Before(end) {
			return badRequest{errors.New("since must be before until")}
		}
		var step time.Duration
		switch d.Bucket {
		case "", "auto":
			d.Bucket = "auto"
			step = time.Minute
			if end.Sub(*since) > 6*time.Hour {
				step = time.Hour
			}
		case "minute":
			step = time.Minute
		case "hour":
			step = time.Hour
		case "day":
			step = 24 * time.Hour
		default:
			return badRequest{fmt.Errorf("bucket %q: use minute, hour, day or auto", d.Bucket)}
		}
		unit := map[time.Duration]string{time.Minute: "minute", time.Hour: "hour", 24 * time.Hour: "day"}[step]
		switch d.By {
		case "", "table":
			d.By = "table"
		case "app":
		default:
			return badRequest{fmt.Errorf("by %q: use table or app", d.By)}
		}
		d.Start, d.End = since.UTC().Truncate(step), end.UTC().Truncate(step).Add(step)
		if d.End.Sub(d.Start)/step > MaxBuckets {
			return badRequest{fmt.Errorf("%d %ss are too many bars for one chart (at most %d): choose a larger bucket or a shorter range", d.End.Sub(d.Start)/step, unit, MaxBuckets)}
		}
		c, err := s.conn(ctx)
		if err != nil {
			return err
		}
		defer c.Release()
		ap, err := history.Activity(ctx, c.Conn(), *since, end, unit, d.By)
		if err != nil {
			return err
		}
		points := make([]point, len(ap))
		for i, p := range ap {
			points[i] = point{Bucket: p.Bucket, Series: p.Series, Count: p.Count}
		}
		totals := map[string]int64{}
		for _, p := range points {
			totals[p.Series] += p.Count
			d.Total += p.Count
		}
		var series []string
		for k := range totals {
			series = append(series, k)
		}
		slices.SortFunc(series, func(a, b string) int {
			if totals[a] != totals[b] {
				return int(totals[b] - totals[a])
			}
			return strings.Compare(a, b)
		})
		d.Chart = layoutChart(points, series, d.Start, d.End, step)
		for i, name := range series {
			d.Series = append(d.Series, LegendItem{Name: name, Fill: palette[i%len(palette)], Total: totals[name]})
		}
		return nil
	}()
	s.respond(w, err, "activity", "Activity", d)
}

// ---- undo plan and undo

type planData struct {
	Target    target
	Plan      *undo.Plan
	Refusal   string
	Conflicts bool
	CSRF      string
	Typed     string
	Message   string
	// AllowUndo offers the Undo form (Options.AllowUndo).
	AllowUndo bool
	// PlannedAt and Position say when the dry run shown started and at
	// which log position (the newest statement id).
	PlannedAt time.Time
	Position  string
	// Running is the undo of the target running now, if any (its
	// progress page is linked instead of the Undo form).
	Running *runRef
}

// withUndoTimeout runs f on a connection whose statements run under the
// undo timeout, and puts the page timeout back after.
func (s *Server) withUndoTimeout(ctx context.Context, f func(conn *pgx.Conn) error) error {
	c, err := s.conn(ctx)
	if err != nil {
		return err
	}
	defer c.Release()
	conn := c.Conn()
	if _, err := conn.Exec(ctx, "SELECT set_config('statement_timeout', $1, false)", fmt.Sprint(s.opts.UndoTimeout.Milliseconds())); err != nil {
		return err
	}
	ferr := f(conn)
	if _, err := conn.Exec(context.WithoutCancel(ctx), "RESET statement_timeout"); err != nil {
		// Not to be handed out again with the long timeout.
		destroy(c)
	}
	return ferr
}

func destroy(c *pgxpool.Conn) {
	_ = c.Conn().Close(context.Background())
}

// planOutcome sorts undo's errors: a plan with its conflicts, a refusal
// on purpose (foreign keys, already undone, ...), or another error.
func planOutcome(d *planData, plan *undo.Plan, err error) error {
	d.Plan = plan
	var ce *undo.ConflictError
	var re *undo.RefusedError
	switch {
	case err == nil:
	case errors.As(err, &ce):
		d.Plan, d.Conflicts = ce.Plan, true
		d.Refusal = fmt.Sprintf("%d rows were changed since by someone else: the undo is refused and changes nothing. Undo the later sessions first, or use pgundo undo --on-conflict skip or merge.", len(ce.Plan.Conflicts))
	case errors.As(err, &re):
		d.Refusal = re.Error()
	default:
		return err
	}
	return nil
}

var safeName = regexp.MustCompile(`[^A-Za-z0-9._-]`)

// planSQL downloads the undo of a session as a script (/plan/{id}/undo.sql).
func (s *Server) planSQL(w http.ResponseWriter, r *http.Request) {
	s.writeSQL(w, r, sessionTarget(r.PathValue("id")))
}

// planBySQL downloads the undo of a tag or a transaction as a script
// (/plan/undo.sql?tag=, ?tx=).
func (s *Server) planBySQL(w http.ResponseWriter, r *http.Request) {
	t, err := queryTarget(r)
	if err != nil {
		s.failErr(w, err)
		return
	}
	s.writeSQL(w, r, t)
}

// writeSQL sends the undo of t as the script pgundo undo --sql writes, or
// the plan page with the refusal when the undo would be refused now.
func (s *Server) writeSQL(w http.ResponseWriter, r *http.Request, t target) {
	ctx := r.Context()
	f, err := os.CreateTemp("", "pgundo-console-*.sql")
	if err != nil {
		s.failErr(w, err)
		return
	}
	defer os.Remove(f.Name())
	defer f.Close()
	d := planData{Target: t}
	err = s.withUndoTimeout(ctx, func(conn *pgx.Conn) error {
		plan, err := undo.WriteScript(ctx, conn, t.selection(), undo.Options{}, f)
		return planOutcome(&d, plan, err)
	})
	if err != nil {
		s.failErr(w, err)
		return
	}
	if d.Refusal != "" {
		d.CSRF = s.csrf
		s.render(w, http.StatusConflict, "plan", planTitle(t), d)
		return
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		s.failErr(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/sql; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="`+t.filename()+`"`)
	_, _ = io.Copy(w, f)
}

// sameOrigin rejects a cross-site POST whose Origin (or Referer) names
// another site; a request without either (curl, tests) passes on the CSRF
// token alone.
func sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		o = r.Header.Get("Referer")
	}
	if o == "" || o == "null" && r.Header.Get("Sec-Fetch-Site") == "same-origin" {
		return true
	}
	u, err := url.Parse(o)
	return err == nil && u.Host == r.Host
}

func hmacEqual(a, b string) bool {
	return a != "" && len(a) == len(b) && hmacEqualBytes([]byte(a), []byte(b))
}
