package console

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgundo/pgundo/history"
)

// summaryBatch is the most statements one refresh of the log summaries adds
// (a few seconds of work on the bench log); a refresh that added that many
// is followed by another at once, until the summaries are caught up.
const summaryBatch = 200_000

// summaryIdle is the pause between refreshes once caught up.
const summaryIdle = 2 * time.Second

// refreshSummaries keeps the log summaries (sql/009) up to date in the
// background, so that the sessions and activity pages read them instead of
// totalling the log, and no page waits for a refresh. Pages are exact
// either way (they add what the summaries do not hold yet). It stops when
// ctx ends, or for good when the role may not refresh (an auditor granted
// before schema 10) or the pool is closed.
func (s *Server) refreshSummaries(ctx context.Context) {
	defer close(s.refreshDone)
	for {
		n, err := s.refreshSummariesOnce(ctx)
		var pe *pgconn.PgError
		switch {
		case ctx.Err() != nil:
			return
		case errors.As(err, &pe) && (pe.Code == pgerrcode.InsufficientPrivilege || pe.Code == pgerrcode.ReadOnlySQLTransaction):
			return
		case err != nil && err.Error() == "closed pool":
			return
		case err == nil && n >= summaryBatch:
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(summaryIdle):
		}
	}
}

func (s *Server) refreshSummariesOnce(ctx context.Context) (int64, error) {
	c, err := s.opts.Pool.Acquire(ctx)
	if err != nil {
		return 0, err
	}
	defer c.Release()
	return history.RefreshSummaries(ctx, c.Conn(), summaryBatch)
}

// Close stops the background work of the server (the summaries' refresh,
// and any undo still running, whose transaction rolls back) and waits for
// it. The pool stays open.
func (s *Server) Close() {
	s.stop()
	<-s.refreshDone
	s.runWG.Wait()
}
