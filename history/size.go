package history

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// SizeSampleEvery is how often at most pgundo.sample_size() records the
// log's size (its default, sql/010): the console's summary refresh and
// pgundo seal call it, and pgundo prune records one after every drop.
const SizeSampleEvery = 10 * time.Minute

// SizeSample is one measurement of the log's size (pgundo.size_sample).
type SizeSample struct {
	At time.Time `json:"at"`
	// Bytes is the on-disk size of the log (log tables, journal and
	// sessions, with indexes and TOAST) at At, as LogStats.Bytes.
	Bytes int64 `json:"bytes"`
	// ChangesEstimate is the planner's estimate of the log's row changes
	// at At (as LogStats.Changes), not a count.
	ChangesEstimate int64 `json:"changes_estimate"`
}

// SizeSamples returns the samples of the log's size taken from since to
// until (both inclusive), oldest first, and how many there are in that
// range. When there are more than most, it returns the newest sample of
// each of most equal spans of the range instead: every one returned is a
// measurement as taken, none is averaged or made up.
func SizeSamples(ctx context.Context, db DBTX, since, until time.Time, most int) ([]SizeSample, int64, error) {
	var n int64
	if err := db.QueryRow(ctx, `SELECT count(*) FROM pgundo.size_sample WHERE at >= $1 AND at <= $2`, since, until).Scan(&n); err != nil {
		return nil, 0, fmt.Errorf("read the log's size samples: %w", err)
	}
	query := `SELECT at, log_bytes, change_rows FROM pgundo.size_sample WHERE at >= $1 AND at <= $2 ORDER BY at`
	args := []any{since, until}
	if most > 0 && n > int64(most) {
		span := until.Sub(since).Seconds() / float64(most)
		query = `SELECT DISTINCT ON (floor(extract(epoch FROM at - $1) / $3)) at, log_bytes, change_rows
			  FROM pgundo.size_sample WHERE at >= $1 AND at <= $2
			 ORDER BY floor(extract(epoch FROM at - $1) / $3), at DESC`
		args = append(args, span)
	}
	rows, err := db.Query(ctx, query, args...)
	if err != nil {
		return nil, 0, fmt.Errorf("read the log's size samples: %w", err)
	}
	ss, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (SizeSample, error) {
		var s SizeSample
		return s, r.Scan(&s.At, &s.Bytes, &s.ChangesEstimate)
	})
	if err != nil {
		return nil, 0, fmt.Errorf("read the log's size samples: %w", err)
	}
	return ss, n, nil
}
