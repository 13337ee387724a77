package console

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgundo/pgundo/undo"
)

// DefaultPlanWait is how long a plan page waits for its dry run before it
// answers with a page that reloads itself until the dry run is done.
const DefaultPlanWait = 200 * time.Millisecond

// maxPlans is the most dry-run results the console keeps (one per
// session, tag or transaction).
const maxPlans = 64

// planJob is one dry run of undoing a target (a session, a tag, a
// transaction), at a log position (the newest statement id when it
// started): a plan page shows its result while the log has not moved, and
// a page that finds one running waits for it instead of starting another,
// so that a dry run of minutes is run once however often the page reloads.
type planJob struct {
	target  target
	pos     int64
	started time.Time
	done    chan struct{}
	// Set when done is closed.
	d   planData
	err error
}

func (j *planJob) finished() bool {
	select {
	case <-j.done:
		return true
	default:
		return false
	}
}

// logPosition is the id of the newest statement in the log (0: empty). A
// dry run leaves none (it rolls back), so a plan keyed by it stays valid
// until something is logged or undone.
func logPosition(ctx context.Context, conn *pgx.Conn) (int64, error) {
	var pos int64
	err := conn.QueryRow(ctx, `SELECT coalesce((SELECT id FROM pgundo.stmt ORDER BY id DESC LIMIT 1), 0)`).Scan(&pos)
	if err != nil {
		return 0, fmt.Errorf("read the log position: %w", err)
	}
	return pos, nil
}

// planFor returns the dry run of undoing target t at the log's current
// position: the one kept or running for it, else a new one started in the
// background. A run still going for an earlier position is returned as it
// is (its page says when it started) rather than started again.
func (s *Server) planFor(ctx context.Context, t target) (*planJob, error) {
	c, err := s.conn(ctx)
	if err != nil {
		return nil, err
	}
	pos, err := logPosition(ctx, c.Conn())
	c.Release()
	if err != nil {
		return nil, err
	}
	s.planMu.Lock()
	defer s.planMu.Unlock()
	if j := s.plans[t.key()]; j != nil && (!j.finished() || j.pos == pos && j.err == nil) {
		return j, nil
	}
	if len(s.plans) >= maxPlans {
		var oldest *planJob
		for _, j := range s.plans {
			if j.finished() && (oldest == nil || j.started.Before(oldest.started)) {
				oldest = j
			}
		}
		if oldest != nil {
			delete(s.plans, oldest.target.key())
		}
	}
	j := &planJob{target: t, pos: pos, started: time.Now(), done: make(chan struct{})}
	s.plans[t.key()] = j
	go s.runPlan(j)
	return j, nil
}

// runPlan runs a dry run, one at a time (each holds a connection for as
// long as it takes), bounded by the undo timeout, not by the page that
// asked for it.
func (s *Server) runPlan(j *planJob) {
	defer close(j.done)
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.UndoTimeout+time.Minute)
	defer cancel()
	s.planRun <- struct{}{}
	defer func() { <-s.planRun }()
	j.err = s.withUndoTimeout(ctx, func(conn *pgx.Conn) error {
		plan, err := undo.MakePlan(ctx, conn, j.target.selection(), undo.Options{})
		return planOutcome(&j.d, plan, err)
	})
}

// forgetPlans drops every kept dry run (after an undo from the console:
// the log position moves anyway, but so does what was undone).
func (s *Server) forgetPlans() {
	s.planMu.Lock()
	defer s.planMu.Unlock()
	for id, j := range s.plans {
		if j.finished() {
			delete(s.plans, id)
		}
	}
}

// keptPlan returns the finished dry run kept for t, or nil.
func (s *Server) keptPlan(t target) *planData {
	s.planMu.Lock()
	defer s.planMu.Unlock()
	if j := s.plans[t.key()]; j != nil && j.finished() && j.err == nil {
		d := j.d
		return &d
	}
	return nil
}

// runningData is the page of a dry run still going.
type runningData struct {
	Target  target
	Started time.Time
	Seconds int
}

// planPage is the plan of undoing a session (/plan/{id}).
func (s *Server) planPage(w http.ResponseWriter, r *http.Request) {
	s.showPlan(w, r, sessionTarget(r.PathValue("id")))
}

// planByPage is the plan of undoing a tag or a transaction (/plan?tag=,
// /plan?tx=).
func (s *Server) planByPage(w http.ResponseWriter, r *http.Request) {
	t, err := queryTarget(r)
	if err != nil {
		s.failErr(w, err)
		return
	}
	s.showPlan(w, r, t)
}

// showPlan renders the dry run of undoing t: at once when it is done within
// PlanWait, else a page that reloads itself until it is.
func (s *Server) showPlan(w http.ResponseWriter, r *http.Request, t target) {
	ctx := r.Context()
	j, err := s.planFor(ctx, t)
	if err != nil {
		s.failErr(w, err)
		return
	}
	select {
	case <-j.done:
	case <-time.After(s.opts.PlanWait):
		w.Header().Set("Refresh", "2")
		s.render(w, http.StatusAccepted, "planning", planTitle(t),
			runningData{Target: t, Started: j.started, Seconds: int(time.Since(j.started).Seconds())})
		return
	case <-ctx.Done():
		return
	}
	if j.err != nil {
		s.failErr(w, j.err)
		return
	}
	d := j.d
	d.Target, d.AllowUndo, d.CSRF = t, s.opts.AllowUndo, s.csrf
	d.PlannedAt, d.Position = j.started, strconv.FormatInt(j.pos, 10)
	d.Running = s.runningUndo(t)
	status := http.StatusOK
	if d.Refusal != "" {
		status = http.StatusConflict
	}
	s.render(w, status, "plan", planTitle(t), d)
}

// planTitle is a plan page's title: Undo plan ID for a session, else Undo
// plan of tag "T" or of transaction X.
func planTitle(t target) string {
	if t.Kind == bySession {
		return "Undo plan " + t.Value
	}
	return "Undo plan of " + t.Label()
}
