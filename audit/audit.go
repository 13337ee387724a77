// Package audit keeps pgundo's log bounded and trustworthy: retention
// (Prune drops whole log chunks older than a time), and tamper evidence
// (Seal hashes what was logged into a SHA-256 chain; Verify recomputes it and
// names every statement whose log rows were edited, deleted or inserted
// outside capture).
//
// The work is done by SQL functions of pgundo's schema (see
// sql/003_retention.sql); this package calls them in transactions of their
// own and returns typed results. It never prints.
package audit

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgundo/pgundo/internal/pgdb"
	"github.com/pgundo/pgundo/internal/timefmt"
)

// DBTX is what the package needs: a connection or pool, as it runs
// transactions of its own (not a pgx.Tx; see internal/pgdb).
type DBTX = pgdb.Conn

// Chunk is one log chunk removed by Prune.
type Chunk struct {
	Chunk      int64     `json:"chunk"`
	FirstStmt  int64     `json:"first_statement"`
	LastStmt   int64     `json:"last_statement"`
	Statements int64     `json:"statements"`
	Changes    int64     `json:"changes"`
	Bytes      int64     `json:"bytes"`
	Newest     time.Time `json:"newest"`
}

// PruneResult is what Prune removed and what is left.
type PruneResult struct {
	Before  time.Time `json:"before"`
	Removed []Chunk   `json:"removed"`
	// Statements, Changes and Bytes total the removed chunks.
	Statements int64 `json:"statements"`
	Changes    int64 `json:"changes"`
	Bytes      int64 `json:"bytes"`
	// Oldest is the time of the oldest statement left in the log (nil when
	// the log is empty). Statements older than Before can remain: they share
	// a chunk with newer ones (a chunk spans the time between two prunes).
	Oldest *time.Time `json:"oldest_left"`
	// PartlyPruned counts sessions that lost some, not all, of their
	// changes: they can no longer be undone.
	PartlyPruned int64 `json:"sessions_partly_pruned"`
}

// Prune removes every log chunk whose newest statement is older than before,
// in one transaction, and starts a new chunk first (so that the next prune
// can remove everything logged until now). Writers to tracked tables wait
// while the chunks are dropped.
func Prune(ctx context.Context, db DBTX, before time.Time) (*PruneResult, error) {
	res := &PruneResult{Before: before, Removed: []Chunk{}}
	err := pgx.BeginTxFunc(ctx, db, pgx.TxOptions{IsoLevel: pgx.ReadCommitted}, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT chunk, first_stmt, last_stmt, stmts, changes, bytes, newest FROM pgundo.prune($1)`, before)
		if err != nil {
			return err
		}
		res.Removed, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Chunk, error) {
			var c Chunk
			var newest *time.Time
			err := r.Scan(&c.Chunk, &c.FirstStmt, &c.LastStmt, &c.Statements, &c.Changes, &c.Bytes, &newest)
			if newest != nil {
				c.Newest = *newest
			}
			return c, err
		})
		if err != nil {
			return err
		}
		for _, c := range res.Removed {
			res.Statements += c.Statements
			res.Changes += c.Changes
			res.Bytes += c.Bytes
		}
		return tx.QueryRow(ctx, `SELECT (SELECT at FROM pgundo.stmt ORDER BY id LIMIT 1),
			(SELECT count(*) FROM pgundo.session WHERE pruned_at IS NOT NULL)`).Scan(&res.Oldest, &res.PartlyPruned)
	})
	if err != nil {
		return nil, fmt.Errorf("prune the log before %s: %w", timefmt.Format(before), err)
	}
	return res, nil
}

// Seal seals the statements logged so far, and returns how many it sealed.
// A seal covers only statements whose transactions have all ended, which
// pgundo.seal() knows from a mark left by its previous call: so Seal calls
// it repeatedly, waiting a little in between, until the statements logged
// before Seal was called are sealed or wait has passed. Any transaction
// still open in the cluster holds sealing back (not capture); statements
// left unsealed are sealed by a later call.
func Seal(ctx context.Context, db DBTX, wait time.Duration) (int64, error) {
	var target int64
	if err := db.QueryRow(ctx, `SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END FROM pgundo.stmt_id_seq`).Scan(&target); err != nil {
		return 0, fmt.Errorf("seal the log: %w", err)
	}
	deadline := time.Now().Add(wait)
	var total int64
	for pause := 10 * time.Millisecond; ; pause = min(2*pause, 500*time.Millisecond) {
		var n, sealedTo int64
		if err := db.QueryRow(ctx, `SELECT pgundo.seal(), coalesce((SELECT max(to_stmt) FROM pgundo.seal), 0)`).Scan(&n, &sealedTo); err != nil {
			return total, fmt.Errorf("seal the log: %w", err)
		}
		total += n
		if sealedTo >= target || time.Now().After(deadline) {
			return total, nil
		}
		select {
		case <-ctx.Done():
			return total, ctx.Err()
		case <-time.After(pause):
		}
	}
}

// DefaultSealWait is how long Verify waits for open transactions to end
// before it checks what could be sealed.
const DefaultSealWait = 10 * time.Second

// Problem is one statement whose log rows do not match their seal.
type Problem struct {
	// Statement is the statement id (for a Kind "seal" problem, the seal's
	// last statement).
	Statement int64 `json:"statement"`
	// Kind is "edited", "deleted", "inserted" or "seal".
	Kind   string `json:"kind"`
	Detail string `json:"detail"`
	// Table, Session and At describe the statement where the log still
	// holds it (or the seal's record of it).
	Table   string     `json:"table,omitempty"`
	Session string     `json:"session,omitempty"`
	At      *time.Time `json:"at,omitempty"`
}

// VerifyResult is what Verify found.
type VerifyResult struct {
	// OK is true when every sealed statement matches its seal.
	OK bool `json:"ok"`
	// Sealed is the number of statements checked against seals, Seals the
	// number of seals, Unsealed the statements logged since the last seal
	// (checked by the next seal).
	Sealed   int64 `json:"sealed_statements"`
	Seals    int64 `json:"seals"`
	Unsealed int64 `json:"unsealed_statements"`
	// Head is the newest seal's hash: record it outside the database; a
	// later verify whose chain no longer leads to it proves a rewrite.
	Head     string    `json:"head_hash"`
	HeadSeal int64     `json:"head_seal"`
	Problems []Problem `json:"problems"`
	// NewlySealed is the number of statements this run sealed first.
	NewlySealed int64 `json:"newly_sealed"`
}

// Verify seals what is new (unless noSeal; see Seal, with DefaultSealWait),
// then recomputes every seal and every sealed statement's digest. Problems
// are listed in statement order; OK is false when there is any.
func Verify(ctx context.Context, db DBTX, noSeal bool) (*VerifyResult, error) {
	res := &VerifyResult{Problems: []Problem{}}
	if !noSeal {
		n, err := Seal(ctx, db, DefaultSealWait)
		if err != nil {
			return nil, err
		}
		res.NewlySealed = n
	}
	err := pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY`); err != nil {
			return err
		}
		err := tx.QueryRow(ctx, `SELECT (SELECT count(*) FROM pgundo.seal_stmt), (SELECT count(*) FROM pgundo.seal),
			(SELECT count(*) FROM pgundo.stmt WHERE id > coalesce((SELECT max(to_stmt) FROM pgundo.seal), 0)),
			coalesce((SELECT hash FROM pgundo.seal ORDER BY id DESC LIMIT 1), ''), coalesce((SELECT max(id) FROM pgundo.seal), 0)`).
			Scan(&res.Sealed, &res.Seals, &res.Unsealed, &res.Head, &res.HeadSeal)
		if err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT v.stmt_id, v.problem, v.detail,
			       coalesce(quote_ident(st.schema_name) || '.' || quote_ident(st.table_name), ''), coalesce(st.session_id, ''), st.at
			  FROM pgundo.verify() v LEFT JOIN pgundo.stmt st ON st.id = v.stmt_id
			 ORDER BY v.stmt_id, v.problem`)
		if err != nil {
			return err
		}
		res.Problems, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Problem, error) {
			var p Problem
			err := r.Scan(&p.Statement, &p.Kind, &p.Detail, &p.Table, &p.Session, &p.At)
			return p, err
		})
		return err
	})
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == pgerrcode.InsufficientPrivilege {
			return nil, fmt.Errorf("verify the log: %s; run pgundo verify as pgundo's owner (the role that ran pgundo install) or a superuser", pgErr.Message)
		}
		return nil, fmt.Errorf("verify the log: %w", err)
	}
	if res.Problems == nil {
		res.Problems = []Problem{}
	}
	res.OK = len(res.Problems) == 0
	return res, nil
}

// PrunePlan lists, changing nothing (it folds the journal, as Prune does:
// the log reads the same), the chunks Prune(before) would remove
// now: every chunk up to the current one (which Prune closes first), oldest
// first, as long as its newest statement is older than before.
func PrunePlan(ctx context.Context, db DBTX, before time.Time) (*PruneResult, error) {
	res := &PruneResult{Before: before, Removed: []Chunk{}}
	// Prune folds the journal into the chunks first: count what it will.
	if _, err := db.Exec(ctx, `SELECT pgundo.fold()`); err != nil {
		return nil, fmt.Errorf("fold the journal: %w", err)
	}
	rows, err := db.Query(ctx, `
		SELECT substr(c.relname, 7)::bigint AS k
		  FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
		 WHERE i.inhparent = 'pgundo.stmt_log'::regclass AND c.relname ~ '^stmt_c[0-9]+$'
		   AND substr(c.relname, 7)::bigint <= (SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END FROM pgundo.stmt_id_seq) / pgundo._chunk_size()
		 ORDER BY 1`)
	if err != nil {
		return nil, fmt.Errorf("list log chunks: %w", err)
	}
	chunks, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("list log chunks: %w", err)
	}
	for _, k := range chunks {
		c := Chunk{Chunk: k}
		var newest *time.Time
		var first, last *int64
		stmt, change := pgx.Identifier{"pgundo", fmt.Sprintf("stmt_c%d", k)}.Sanitize(), pgx.Identifier{"pgundo", fmt.Sprintf("change_c%d", k)}.Sanitize()
		err := db.QueryRow(ctx, `SELECT max(at), count(*), min(id), max(id), (SELECT count(*) FROM `+change+`),
			pg_total_relation_size('`+stmt+`') + pg_total_relation_size('`+change+`') FROM `+stmt).
			Scan(&newest, &c.Statements, &first, &last, &c.Changes, &c.Bytes)
		if err != nil {
			return nil, fmt.Errorf("read log chunk %d: %w", k, err)
		}
		if newest != nil && !newest.Before(before) {
			break
		}
		if newest != nil {
			c.Newest = *newest
		}
		if first != nil {
			c.FirstStmt, c.LastStmt = *first, *last
		}
		res.Removed = append(res.Removed, c)
		res.Statements += c.Statements
		res.Changes += c.Changes
		res.Bytes += c.Bytes
	}
	if err := db.QueryRow(ctx, `SELECT at FROM pgundo.stmt ORDER BY id LIMIT 1`).Scan(&res.Oldest); err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("read the oldest log entry: %w", err)
	}
	return res, nil
}
