package console

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgundo/pgundo/undo"
)

// An undo from the console (AllowUndo) runs in the background: the POST
// that confirms it starts it and redirects to its run page, /undo-run/N,
// which reloads itself every second (a Refresh header: no script) showing
// the phase, rows written of rows to write, percent and time left as the
// undo's progress callbacks (undo.Options.Step and Progress) report them,
// then the result with the redo link, or the refusal or error and what to
// do next. One undo of a target (a session, tag or transaction) runs at a
// time: a second POST for it while it runs is refused (409) and starts
// nothing. The undo is one transaction: when the server is closed (or the
// process ends) before it commits, it rolls back and nothing is changed.

// maxRuns is the most finished undo runs the console keeps to show.
const maxRuns = 64

// runRefresh is how often a running undo's page reloads itself.
const runRefresh = 1 // second

// undoRun is one undo started from the console.
type undoRun struct {
	n       int64 // its number, in its address
	target  target
	started time.Time
	done    chan struct{}

	mu        sync.Mutex
	tables    map[string]undo.TableProgress // as Step last reported
	order     []string                      // tables in the order first reported
	expected  map[string]int64              // rows per table by the dry run shown, if any
	lines     []string                      // Progress lines, newest last (a few)
	finished  time.Time                     // when done closed
	plan      *undo.Plan                    // set when done: the result, or the refused plan
	refusal   string                        // the refusal on purpose, if refused
	conflicts bool
	err       error // any other failure
}

// runRef links a running undo.
type runRef struct {
	URL     string
	Started time.Time
}

func (u *undoRun) url() string { return "/undo-run/" + strconv.FormatInt(u.n, 10) }

func (u *undoRun) ref() *runRef { return &runRef{URL: u.url(), Started: u.started} }

func (u *undoRun) finishedYet() bool {
	select {
	case <-u.done:
		return true
	default:
		return false
	}
}

// step and line are the undo's progress callbacks (undo.Options).
func (u *undoRun) step(tp undo.TableProgress) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if _, ok := u.tables[tp.Table]; !ok {
		u.order = append(u.order, tp.Table)
	}
	u.tables[tp.Table] = tp
}

func (u *undoRun) line(msg string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.lines = append(u.lines, msg)
	if len(u.lines) > 5 {
		u.lines = u.lines[len(u.lines)-5:]
	}
}

// runningUndo returns the undo of t running now, or nil.
func (s *Server) runningUndo(t target) *runRef {
	s.runMu.Lock()
	defer s.runMu.Unlock()
	if u := s.running[t.key()]; u != nil {
		return u.ref()
	}
	return nil
}

// undoPost confirms and starts the undo of a session (POST /undo/{id}).
func (s *Server) undoPost(w http.ResponseWriter, r *http.Request) {
	s.startUndo(w, r, sessionTarget(r.PathValue("id")))
}

// undoByPost confirms and starts the undo of a tag or a transaction (POST
// /undo?tag=, ?tx=).
func (s *Server) undoByPost(w http.ResponseWriter, r *http.Request) {
	if !s.opts.AllowUndo {
		s.undoOff(w, "pgundo undo --tag TAG or --tx XID")
		return
	}
	t, err := queryTarget(r)
	if err != nil {
		s.failErr(w, err)
		return
	}
	s.startUndo(w, r, t)
}

func (s *Server) undoOff(w http.ResponseWriter, command string) {
	s.fail(w, http.StatusForbidden, errors.New("undo is off: this console was started without --allow-undo; nothing was changed"), "run "+command+" from a terminal, or restart pgundo serve with --allow-undo")
}

// startUndo checks the POST (undo allowed, CSRF token, the target typed
// again, no undo of it running) and starts the undo in the background,
// redirecting to its run page; anything amiss changes nothing.
func (s *Server) startUndo(w http.ResponseWriter, r *http.Request, t target) {
	if !s.opts.AllowUndo {
		s.undoOff(w, t.Command())
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		s.fail(w, http.StatusBadRequest, fmt.Errorf("read the form: %w; nothing was changed", err), "")
		return
	}
	if !sameOrigin(r) || !hmacEqual(r.PostForm.Get("csrf"), s.csrf) {
		s.fail(w, http.StatusForbidden, errors.New("the form's CSRF token is missing or wrong (a page from another site, or from an earlier run of pgundo serve); nothing was changed"), "reload the plan page and try again")
		return
	}
	typed := r.PostForm.Get("confirm")
	if !t.typedMatches(typed) {
		s.notConfirmed(w, r, t, typed)
		return
	}
	s.runMu.Lock()
	if u := s.running[t.key()]; u != nil {
		s.runMu.Unlock()
		s.fail(w, http.StatusConflict, fmt.Errorf("an undo of %s is already running (started %s from this console); this one was not started and nothing was changed by it", t.Label(), u.started.UTC().Format("2006-01-02 15:04:05 MST")),
			"wait for it to finish: its progress is at "+u.url())
		return
	}
	s.runSeq++
	u := &undoRun{n: s.runSeq, target: t, started: time.Now(), done: make(chan struct{}),
		tables: map[string]undo.TableProgress{}}
	if d := s.keptPlan(t); d != nil && d.Plan != nil && d.Refusal == "" {
		u.expected = map[string]int64{}
		for _, tp := range d.Plan.Tables {
			u.expected[tp.Table] = tp.Restore + tp.Reinsert + tp.Delete + tp.Merged
		}
	}
	s.running[t.key()] = u
	s.runs[u.n] = u
	s.pruneRuns()
	s.runWG.Add(1)
	s.runMu.Unlock()
	go s.runUndo(u)
	http.Redirect(w, r, u.url(), http.StatusSeeOther)
}

// notConfirmed answers an Undo whose confirmation was not typed (or
// mistyped): the plan page again, with what to type; nothing is started.
func (s *Server) notConfirmed(w http.ResponseWriter, r *http.Request, t target, typed string) {
	d := planData{}
	if j, err := s.planFor(r.Context(), t); err == nil {
		select {
		case <-j.done:
			if j.err == nil {
				d = j.d
			}
		case <-time.After(s.opts.PlanWait):
		}
	}
	d.Target, d.AllowUndo, d.CSRF, d.Typed = t, s.opts.AllowUndo, s.csrf, typed
	d.Running = s.runningUndo(t)
	d.Message = "Type the " + t.Noun() + " " + t.Value + " exactly to confirm the undo. Nothing was changed."
	s.render(w, http.StatusBadRequest, "plan", planTitle(t), d)
}

// pruneRuns forgets the oldest finished runs beyond maxRuns (runMu held).
func (s *Server) pruneRuns() {
	for len(s.runs) > maxRuns {
		var oldest *undoRun
		for _, u := range s.runs {
			if u.finishedYet() && (oldest == nil || u.n < oldest.n) {
				oldest = u
			}
		}
		if oldest == nil {
			return
		}
		delete(s.runs, oldest.n)
	}
}

// runUndo applies the undo, bounded by the undo timeout and by the
// server's life (Close cancels it, and the transaction rolls back), not by
// the request that started it.
func (s *Server) runUndo(u *undoRun) {
	defer s.runWG.Done()
	ctx, cancel := context.WithTimeout(s.bg, s.opts.UndoTimeout+time.Minute)
	defer cancel()
	var d planData
	err := s.withUndoTimeout(ctx, func(conn *pgx.Conn) error {
		plan, err := undo.Apply(ctx, conn, u.target.selection(), undo.Options{Step: u.step, Progress: u.line}, nil)
		return planOutcome(&d, plan, err)
	})
	if err != nil && s.bg.Err() != nil {
		err = fmt.Errorf("pgundo serve stopped before the undo committed, so its transaction rolled back: nothing was changed (%w)", err)
	}
	if err == nil && d.Refusal == "" {
		s.forgetPlans()
	}
	u.mu.Lock()
	u.plan, u.refusal, u.conflicts, u.err = d.Plan, d.Refusal, d.Conflicts, err
	u.finished = time.Now()
	u.mu.Unlock()
	s.runMu.Lock()
	if s.running[u.target.key()] == u {
		delete(s.running, u.target.key())
	}
	s.runMu.Unlock()
	close(u.done)
}

// tableRun is one table's line on a run page.
type tableRun struct {
	Table          string
	Done, Planned  int64
	Percent        int
	Counted, Whole bool
}

// runData is a run page's data: the progress of a running undo, or its
// outcome.
type runData struct {
	Target  target
	URL     string
	Started time.Time
	// Running until the undo committed, was refused or failed.
	Running bool
	Elapsed string
	// Phase says what the undo is doing now.
	Phase string
	// Done of Total rows written, Percent of them; Known when the total
	// is (from the dry run shown, or once the undo counted every table).
	Done, Total int64
	Percent     int
	Known       bool
	// Left is the time left, estimated from the rate so far ("" unknown).
	Left   string
	Tables []tableRun
	Lines  []string
	// The outcome, once done.
	Plan      *undo.Plan
	Refusal   string
	Conflicts bool
	Error     string
	Finished  time.Time
}

// view reads the run's state for its page.
func (u *undoRun) view(now time.Time) runData {
	u.mu.Lock()
	defer u.mu.Unlock()
	d := runData{Target: u.target, URL: u.url(), Started: u.started, Running: u.finished.IsZero(),
		Lines: append([]string(nil), u.lines...), Plan: u.plan, Refusal: u.refusal, Conflicts: u.conflicts, Finished: u.finished}
	if u.err != nil {
		d.Error = u.err.Error()
	}
	end := now
	if !d.Running {
		end = u.finished
	}
	elapsed := end.Sub(u.started)
	d.Elapsed = roughDuration(elapsed)
	// The tables reported so far, in that order, then those the dry run
	// expects, by name.
	var unseen []string
	for name := range u.expected {
		if _, ok := u.tables[name]; !ok {
			unseen = append(unseen, name)
		}
	}
	slices.Sort(unseen)
	names := append(slices.Clone(u.order), unseen...)
	whole := 0
	for _, name := range names {
		tr := tableRun{Table: name}
		if tp, ok := u.tables[name]; ok {
			tr.Done, tr.Planned, tr.Counted = tp.Done, tp.Planned, true
		} else {
			tr.Planned = u.expected[name]
		}
		tr.Whole = tr.Counted && tr.Done >= tr.Planned
		if tr.Whole {
			whole++
		}
		tr.Percent = percent(tr.Done, tr.Planned, tr.Whole)
		d.Done += tr.Done
		d.Total += tr.Planned
		d.Tables = append(d.Tables, tr)
	}
	d.Known = u.expected != nil || len(names) > 0 && whole == len(names)
	allWritten := len(names) > 0 && whole == len(names)
	d.Percent = percent(d.Done, d.Total, allWritten)
	switch {
	case !d.Running:
		d.Phase = "finished"
	case len(u.order) == 0:
		d.Phase = "selecting the changes to undo and reading them from the log (rows locked by other transactions are waited for)"
	case allWritten:
		d.Phase = "checking the rows written and the foreign keys, then committing"
	default:
		cur := u.order[len(u.order)-1]
		for _, name := range u.order {
			if tp := u.tables[name]; tp.Done < tp.Planned {
				cur = name
				break
			}
		}
		d.Phase = fmt.Sprintf("undoing %s (%d of %d tables written)", cur, whole, len(names))
	}
	if d.Running && d.Known && d.Done > 0 && d.Done < d.Total {
		d.Left = "about " + roughDuration(time.Duration(float64(elapsed)*float64(d.Total-d.Done)/float64(d.Done)))
	}
	return d
}

// percent is done of total in whole percent, 100 only when whole.
func percent(done, total int64, whole bool) int {
	switch {
	case whole:
		return 100
	case total <= 0:
		return 0
	}
	return min(99, int(done*100/total))
}

// roughDuration prints a duration to the second (minutes past a minute).
func roughDuration(d time.Duration) string {
	switch {
	case d < time.Second:
		return "less than a second"
	case d < time.Minute:
		return fmt.Sprintf("%d s", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%d min %d s", int(d.Minutes()), int(d.Seconds())%60)
	}
	return strings.TrimSuffix(d.Round(time.Minute).String(), "0s")
}

// runPage shows an undo run (/undo-run/{n}): its progress while it runs
// (202, reloading itself every second), then its result (200), refusal
// (409) or error (500).
func (s *Server) runPage(w http.ResponseWriter, r *http.Request) {
	if !s.opts.AllowUndo {
		s.undoOff(w, "pgundo undo")
		return
	}
	n, err := strconv.ParseInt(r.PathValue("n"), 10, 64)
	s.runMu.Lock()
	u := s.runs[n]
	s.runMu.Unlock()
	if err != nil || u == nil {
		s.fail(w, http.StatusNotFound, fmt.Errorf("no undo run %q in this console (runs are kept in memory, the newest %d, until pgundo serve stops)", r.PathValue("n"), maxRuns),
			"the sessions page shows what was undone")
		return
	}
	d := u.view(time.Now())
	title := "Undo of " + u.target.Label()
	switch {
	case d.Running:
		w.Header().Set("Refresh", strconv.Itoa(runRefresh))
		s.render(w, http.StatusAccepted, "undorun", title, d)
	case d.Error != "":
		s.render(w, http.StatusInternalServerError, "undorun", title, d)
	case d.Refusal != "":
		s.render(w, http.StatusConflict, "undorun", title, d)
	default:
		s.render(w, http.StatusOK, "undorun", title, d)
	}
}
