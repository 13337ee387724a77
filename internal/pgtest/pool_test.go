package pgtest

import (
	"context"
	"testing"
)

func TestPool(t *testing.T) {
	pool := Pool(t, NewDB(t))
	Exec(t, pool, "insert into items values (2, 'two')")
	var n int
	if err := pool.QueryRow(context.Background(), "select count(*) from items").Scan(&n); err != nil || n != 2 {
		t.Fatalf("count = %d, %v", n, err)
	}
}
