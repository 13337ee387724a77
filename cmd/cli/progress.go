package cli

import (
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	"github.com/pgundo/pgundo/undo"
)

// progressDelay is how long work runs before a progress bar appears: a
// quick undo prints only its result. PGUNDO_PROGRESS_DELAY (a Go duration,
// e.g. 0s) overrides it; the tests use it.
const progressDelay = 2 * time.Second

// undoProgress shows an undo's progress on stderr. On a terminal, once the
// undo has run for progressDelay, a bar per table (rows written of rows
// planned, rate, time left) drawn by mpb, with the step lines printed above
// the bars; off a terminal, the step lines alone; under --json nothing.
type undoProgress struct {
	g     *globals
	mu    sync.Mutex
	on    bool // on a terminal, until done
	timer *time.Timer
	p     *mpb.Progress // nil until the delay is over
	order []string
	last  map[string]undo.TableProgress
	bars  map[string]*mpb.Bar
	begun time.Time
}

// newUndoProgress returns the progress display for one undo; set its
// callbacks in undo.Options and call done when the undo returns.
func (g *globals) newUndoProgress() *undoProgress {
	u := &undoProgress{g: g, last: map[string]undo.TableProgress{}, bars: map[string]*mpb.Bar{}, begun: time.Now()}
	f, ok := g.stderr.(*os.File)
	if g.json || !ok || g.termWidth(f) == 0 {
		return u
	}
	delay := progressDelay
	if d, err := time.ParseDuration(os.Getenv("PGUNDO_PROGRESS_DELAY")); err == nil {
		delay = d
	}
	u.on = true
	if delay <= 0 {
		u.start()
	} else {
		u.timer = time.AfterFunc(delay, u.start)
	}
	return u
}

// options returns Options.Progress and Options.Step for this display.
func (u *undoProgress) options() (func(string), func(undo.TableProgress)) {
	if !u.on {
		return u.g.progress, nil
	}
	return u.line, u.step
}

func (u *undoProgress) line(msg string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.p == nil {
		fmt.Fprintln(u.g.stderr, msg)
		return
	}
	_, _ = fmt.Fprintln(u.p, msg)
}

func (u *undoProgress) step(tp undo.TableProgress) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if _, ok := u.last[tp.Table]; !ok {
		u.order = append(u.order, tp.Table)
	}
	u.last[tp.Table] = tp
	if u.p != nil {
		u.show(tp)
	}
}

// start draws the bars once the delay is over.
func (u *undoProgress) start() {
	u.mu.Lock()
	defer u.mu.Unlock()
	if !u.on || u.p != nil {
		return // done already, or started
	}
	u.p = mpb.New(mpb.WithOutput(u.g.stderr), mpb.WithWidth(40), mpb.WithAutoRefresh())
	for _, t := range u.order {
		u.show(u.last[t])
	}
}

// rate is a bar's rows written per second since the undo started (mpb's
// AverageSpeed shows nothing for a bar completed between two refreshes).
func (u *undoProgress) rate(s decor.Statistics) string {
	el := time.Since(u.begun).Seconds()
	if el <= 0 {
		return ""
	}
	return fmt.Sprintf("%.0f rows/s", float64(s.Current)/el)
}

// show brings a table's bar to tp, adding it when new.
func (u *undoProgress) show(tp undo.TableProgress) {
	b := u.bars[tp.Table]
	if b == nil {
		b = u.p.AddBar(tp.Planned,
			mpb.PrependDecorators(decor.Name(tp.Table, decor.WCSyncSpaceR), decor.CountersNoUnit("%d / %d rows", decor.WCSyncSpace)),
			mpb.AppendDecorators(decor.Any(u.rate, decor.WCSyncSpace), decor.Name(" ETA "), decor.AverageETA(decor.ET_STYLE_GO)))
		u.bars[tp.Table] = b
	}
	b.SetTotal(tp.Planned, false)
	b.SetCurrent(tp.Done)
	if tp.Done >= tp.Planned {
		b.SetTotal(tp.Planned, true)
	}
}

// done stops the display: bars not complete (a refusal, an error) are
// left as they stand.
func (u *undoProgress) done() {
	u.mu.Lock()
	if u.timer != nil {
		u.timer.Stop()
	}
	u.on = false
	p := u.p
	for _, b := range u.bars {
		if !b.Completed() {
			b.Abort(false)
		}
	}
	u.p, u.bars = nil, map[string]*mpb.Bar{}
	u.mu.Unlock()
	if p != nil {
		p.Wait()
	}
}

// withUndoProgress runs one undo step (plan, apply, script) with the
// progress display, stopped before run's caller prints anything.
func (g *globals) withUndoProgress(opts undo.Options, run func(undo.Options) error) error {
	u := g.newUndoProgress()
	opts.Progress, opts.Step = u.options()
	defer u.done()
	return run(opts)
}

// working shows, on a terminal, that a step which may run long is under
// way: once it has run for progressDelay (PGUNDO_PROGRESS_DELAY), a
// spinner with what and the time elapsed on stderr (mpb). Off a terminal
// and under --json it shows nothing (the step's result says what it did).
// Call the returned func when the step ends, before printing its result.
func (g *globals) working(what string) (done func()) {
	f, ok := g.stderr.(*os.File)
	if g.json || !ok || g.termWidth(f) == 0 {
		return func() {}
	}
	delay := progressDelay
	if d, err := time.ParseDuration(os.Getenv("PGUNDO_PROGRESS_DELAY")); err == nil {
		delay = d
	}
	var mu sync.Mutex
	var p *mpb.Progress
	var bar *mpb.Bar
	stopped := false
	timer := time.AfterFunc(delay, func() {
		mu.Lock()
		defer mu.Unlock()
		if stopped {
			return
		}
		p = mpb.New(mpb.WithOutput(g.stderr), mpb.WithWidth(40), mpb.WithAutoRefresh())
		bar = p.New(0, mpb.SpinnerStyle(),
			mpb.PrependDecorators(decor.Name(what, decor.WCSyncSpaceR)),
			mpb.AppendDecorators(decor.Elapsed(decor.ET_STYLE_GO)),
			mpb.BarRemoveOnComplete())
	})
	return func() {
		mu.Lock()
		stopped = true
		timer.Stop()
		pp, b := p, bar
		mu.Unlock()
		if b != nil {
			b.SetTotal(-1, true) // complete: the spinner line is removed
			pp.Wait()
		}
	}
}
