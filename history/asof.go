package history

import (
	"context"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgundo/pgundo/internal/timefmt"
)

// MismatchError is returned by AsOf and AsOfRow when the log and the table
// disagree: row images logged after the time asked for that the table does
// not hold now (changes made while capture was off, or edits of the log).
// The rows already streamed cannot be trusted.
type MismatchError struct {
	Table string
	Count int64
	Key   string
}

func (e *MismatchError) Error() string {
	where := e.Table
	if e.Key != "" {
		where += " " + e.Key
	}
	return fmt.Sprintf("%s: %d row image(s) logged since then are not in the table now, so the log does not account for every change (was capture off for a while, or the log edited?); the rows shown cannot be trusted; pgundo status checks capture, pgundo log --table %s shows what was logged", where, e.Count, e.Table)
}

// checkAsOf refuses what the log cannot rebuild: an untracked table, a time
// before tracking started, columns changed since that time, partitions whose
// columns are laid out differently from the partitioned table.
func checkAsOf(ctx context.Context, tx pgx.Tx, t *Table, at time.Time) error {
	if !t.Tracked {
		return requestErr("table %s is not tracked, so pgundo cannot rebuild its past rows (run pgundo track %s to record changes from now on)", t.Name, t.Name)
	}
	if t.TrackedAt != nil && at.Before(*t.TrackedAt) {
		return requestErr("table %s is tracked since %s; pgundo cannot rebuild its rows as of %s, before that", t.Name,
			timefmt.Format(*t.TrackedAt), timefmt.Format(at))
	}
	var changedAt *int64
	var odd *string
	var reshaped bool
	err := tx.QueryRow(ctx, `
		SELECT EXISTS (SELECT FROM pgundo.shape sh WHERE sh.relid = ANY ($1::oid[])
		                  AND EXISTS (SELECT FROM pgundo.shape e WHERE e.relid = sh.relid AND e.since_stmt < sh.since_stmt)),
		       (SELECT min(p::regclass::text) FROM unnest($1::oid[]) p
		         WHERE (SELECT array_agg(attname::text ORDER BY attnum) FROM pg_attribute WHERE attrelid = p AND attnum > 0 AND NOT attisdropped)
		            <> (SELECT array_agg(attname::text ORDER BY attnum) FROM pg_attribute WHERE attrelid = $2 AND attnum > 0 AND NOT attisdropped))`,
		t.Partitions, t.OID).Scan(&reshaped, &odd)
	if err != nil {
		return fmt.Errorf("check %s: %w", t.Name, err)
	}
	if reshaped {
		// Columns changed at some point: did they change after at?
		err = tx.QueryRow(ctx, `
			SELECT min(sh.since_stmt) FROM pgundo.shape sh
			 WHERE sh.relid = ANY ($1::oid[])
			   AND sh.since_stmt >= (SELECT min(st.id) FROM pgundo.stmt st WHERE st.relid = ANY ($1::oid[]) AND st.at >= $2)
			   AND EXISTS (SELECT FROM pgundo.shape e WHERE e.relid = sh.relid AND e.since_stmt < sh.since_stmt)`,
			t.Partitions, at).Scan(&changedAt)
		if err != nil {
			return fmt.Errorf("check %s: %w", t.Name, err)
		}
	}
	if changedAt != nil {
		return requestErr("the columns of %s changed after %s (after statement %d); asof rebuilds rows across data changes, not column changes", t.Name,
			timefmt.Format(at), *changedAt)
	}
	if odd != nil {
		return requestErr("partition %s of %s orders its columns differently from %s; asof needs them laid out alike", *odd, t.Name, t.Name)
	}
	return nil
}

// AsOfRow returns the row of t with key k as it was at time at, as its text
// image, or nil when there was no such row then. "At time at" means after
// every statement that started before at (a statement's time is its start;
// its transaction may have committed later), so it is the state that the
// changes logged before at (pgundo log --until at) left. The state is
// rebuilt from the row now and the changes logged at or after at: the row
// now, plus the old images, minus the new images of those changes (as
// multisets), found through the row-history index, without scanning the log.
func AsOfRow(ctx context.Context, db Conn, t *Table, k Key, at time.Time) (*string, error) {
	if err := refreshIfAllowed(ctx, db); err != nil {
		return nil, err
	}
	var img *string
	err := pgx.BeginTxFunc(ctx, db, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, pinnedSettings); err != nil {
			return err
		}
		if err := checkAsOf(ctx, tx, t, at); err != nil {
			return err
		}
		if err := t.canonicalKey(ctx, tx, &k); err != nil {
			return err
		}
		pend, err := pending(ctx, tx, t)
		if err != nil {
			return err
		}
		es, vs, err := lookup(ctx, tx, t, k.Text, math.MaxInt64, &at, pend[k.Text])
		if err != nil {
			return err
		}
		count := map[string]int{}
		cur, err := t.currentRow(ctx, tx, k)
		if err != nil {
			return err
		}
		if cur != nil {
			count[*cur]++
		}
		for i, e := range es {
			if (e.side == "b" || e.side == "o") && vs[i].Old != nil {
				count[*vs[i].Old]++
			}
			if (e.side == "b" || e.side == "n") && vs[i].New != nil {
				count[*vs[i].New]--
			}
		}
		var bad, extra int64
		for im, n := range count {
			switch {
			case n < 0:
				bad += int64(-n)
			case n > 0 && img == nil:
				s := im
				img = &s
				extra += int64(n - 1)
			case n > 0:
				extra += int64(n)
			}
		}
		if bad == 0 {
			bad = extra
		}
		if bad > 0 {
			return &MismatchError{Table: t.Name, Key: k.String(), Count: bad}
		}
		return nil
	})
	return img, err
}

// AsOf streams the rows of t as they were at time at (see AsOfRow for what
// that means), ordered by primary key (by row image without one), calling
// emit with each row's image and its fields in column order. Every check,
// the *MismatchError included, comes before the first call of emit. It reads, in
// one REPEATABLE READ read-only transaction, the table now and the changes
// logged for it at or after at, and nets them as multisets of row images on the
// server: memory stays constant on the client; the server's work grows with
// the table and with the changes since at.
func AsOf(ctx context.Context, db Conn, t *Table, at time.Time, emit func(img string, fields []*string) error) error {
	cols := t.columnNames()
	return pgx.BeginTxFunc(ctx, db, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, pinnedSettings+"; SET LOCAL work_mem = '64MB'"); err != nil {
			return err
		}
		if err := checkAsOf(ctx, tx, t, at); err != nil {
			return err
		}
		order := "d.img"
		if len(t.Key) > 0 {
			parts := make([]string, len(t.Key))
			for i, c := range t.Key {
				parts[i] = "(x.r)." + pgx.Identifier{c.Name}.Sanitize()
			}
			order = strings.Join(parts, ", ")
		}
		rows, err := tx.Query(ctx, `
			WITH s AS MATERIALIZED (SELECT id FROM pgundo.stmt WHERE relid = ANY ($1::oid[]) AND at >= $2),
			d AS (
				SELECT img, sum(n)::bigint AS n FROM (
					SELECT ROW(t.*)::text AS img, 1 AS n FROM `+t.ident+` t
					UNION ALL
					SELECT v.img, v.n FROM pgundo.change c
					 CROSS JOIN LATERAL (VALUES (c.old, 1), (c.new, -1)) v (img, n)
					 WHERE c.stmt_id IN (SELECT id FROM s) AND c.stmt_id >= (SELECT min(id) FROM s) AND v.img IS NOT NULL
				) x GROUP BY img HAVING sum(n) <> 0)
			SELECT d.img, d.n FROM d
			  LEFT JOIN LATERAL (SELECT d.img::`+t.ident+` AS r WHERE d.n > 0 OFFSET 0) x ON true
			 ORDER BY d.n > 0, `+order,
			t.Partitions, at)
		if err != nil {
			return fmt.Errorf("rebuild %s as of %s: %w", t.Name, timefmt.Format(at), err)
		}
		defer rows.Close()
		// Images the log has but the table lacks come first: a mismatch is
		// known before any row is emitted.
		var bad int64
		for rows.Next() {
			var img string
			var n int64
			if err := rows.Scan(&img, &n); err != nil {
				return fmt.Errorf("rebuild %s: %w", t.Name, err)
			}
			if n < 0 {
				bad += -n
				continue
			}
			if bad > 0 {
				return &MismatchError{Table: t.Name, Count: bad}
			}
			f, err := namedFields(&img, cols)
			if err != nil {
				return fmt.Errorf("rebuild %s: read row %.60s: %w", t.Name, img, err)
			}
			for ; n > 0; n-- {
				if err := emit(img, f); err != nil {
					return err
				}
			}
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("rebuild %s as of %s: %w", t.Name, timefmt.Format(at), err)
		}
		if bad > 0 {
			return &MismatchError{Table: t.Name, Count: bad}
		}
		return nil
	})
}
