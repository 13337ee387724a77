// Package pgdb defines the database interfaces pgundo's packages take, once:
// query functions take a DBTX, so that a connection, a pool and a
// transaction all work; functions that open transactions of their own take
// a Conn. The library packages name them through aliases (history.DBTX,
// triggers.DBTX, audit.DBTX, ...).
package pgdb

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// DBTX runs statements: *pgx.Conn, pgx.Tx, *pgxpool.Pool and *pgxpool.Conn
// all are one.
type DBTX interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Conn is a DBTX that also starts transactions: *pgx.Conn, *pgxpool.Pool
// and *pgxpool.Conn are one; a pgx.Tx is not (it has no BeginTx).
type Conn interface {
	DBTX
	Begin(ctx context.Context) (pgx.Tx, error)
	BeginTx(ctx context.Context, opts pgx.TxOptions) (pgx.Tx, error)
}
