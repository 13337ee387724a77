package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"

	"github.com/pgundo/pgundo/console"
	"github.com/pgundo/pgundo/history"
	"github.com/pgundo/pgundo/internal/pgcluster"
	pgsql "github.com/pgundo/pgundo/sql"
	"github.com/pgundo/pgundo/triggers"
	"github.com/pgundo/pgundo/undo"
)

type demoOptions struct {
	keep   bool
	serve  bool
	listen string
}

type demoResult struct {
	PatchSession string           `json:"patch_session"`
	UndoSession  string           `json:"undo_session"`
	Plan         *undo.Plan       `json:"plan"`
	Tables       []demoTableCheck `json:"tables"`
	Identical    bool             `json:"identical"`
	Seconds      float64          `json:"seconds"`
}

type demoTableCheck struct {
	Table     string `json:"table"`
	Rows      int    `json:"rows"`
	Identical bool   `json:"identical"`
}

// demoSchema is the small shop of the demo. orders.version is bumped by a
// BEFORE UPDATE trigger (optimistic locking, as many ORMs do): the undo must
// restore the logged value, not bump it again.
const demoSchema = `
CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL, email text NOT NULL);
CREATE TABLE orders (
    id          int PRIMARY KEY,
    customer_id int NOT NULL REFERENCES customers,
    status      text NOT NULL,
    note        text,
    total       numeric(10,2) NOT NULL,
    version     int NOT NULL DEFAULT 1
);
CREATE TABLE order_items (
    order_id int REFERENCES orders ON DELETE CASCADE,
    line     int,
    sku      text NOT NULL,
    qty      int NOT NULL,
    PRIMARY KEY (order_id, line)
);
CREATE FUNCTION bump_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.version := OLD.version + 1; RETURN NEW; END $$;
CREATE TRIGGER orders_version BEFORE UPDATE ON orders FOR EACH ROW EXECUTE FUNCTION bump_version();
INSERT INTO customers SELECT i, 'customer ' || i, 'c' || i || '@example.com' FROM generate_series(1, 20) i;
INSERT INTO orders (id, customer_id, status, total)
SELECT i, 1 + i % 20, CASE WHEN i % 3 = 0 THEN 'packed' ELSE 'paid' END, 10 + i FROM generate_series(1, 60) i;
INSERT INTO order_items SELECT o, l, 'sku-' || (o * 7 + l) % 50, 1 + l FROM generate_series(1, 60) o, generate_series(1, 3) l;
`

// demoSessions are the incident: end users, the hasty patch, more end users.
var demoSessions = []struct {
	app, title string
	patch      bool
	sql        []string
}{
	{"shop-web", "end users leave delivery notes on their orders", false, []string{
		`UPDATE orders SET note = 'leave at the back door' WHERE id IN (3, 9, 12)`,
		`UPDATE orders SET note = 'call before delivery' WHERE id IN (15, 30)`,
		`INSERT INTO orders (id, customer_id, status, note, total) VALUES (61, 4, 'paid', 'gift wrap please', 42)`,
		`INSERT INTO order_items VALUES (61, 1, 'sku-9', 1)`,
	}},
	{"psql", "the hasty patch: 'ship packed orders', and re-create two broken orders", true, []string{
		// Side effect: clears every note the customers entered.
		`UPDATE orders SET status = 'shipped', note = NULL WHERE status = 'packed'`,
		// Destroy-then-create: the orders come back with new keys; their
		// items are deleted by the cascade and re-created.
		`DELETE FROM orders WHERE id IN (15, 30)`,
		`INSERT INTO orders (id, customer_id, status, total) VALUES (1015, 16, 'paid', 25), (1030, 11, 'paid', 40)`,
		`INSERT INTO order_items VALUES (1015, 1, 'sku-6', 2), (1030, 1, 'sku-11', 2)`,
	}},
	{"shop-web", "more end-user work on other orders", false, []string{
		`UPDATE orders SET note = 'no onions' WHERE id = 40`,
		`UPDATE orders SET status = 'cancelled' WHERE id = 41`,
		`INSERT INTO orders (id, customer_id, status, total) VALUES (62, 8, 'paid', 18)`,
		`DELETE FROM order_items WHERE order_id = 50 AND line = 3`,
	}},
}

func newDemoCommand(g *globals) *cobra.Command {
	var o demoOptions
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Replay the incident on a throwaway PostgreSQL and undo it",
		Long: `Start a throwaway PostgreSQL from the server binaries on this machine
($PGUNDO_PG_BINDIR, else /usr/lib/postgresql/*/bin, else pg_config), create a
small shop, run end-user sessions, then a hasty patch session that overwrites
customers' notes and destroys and re-creates orders with new keys, then more
end-user work. Then show the sessions, what the patch changed, the undo plan,
the undo, and prove every table equals a copy where the patch never ran.
It cleans up after itself (--keep leaves the server running).

--serve then serves the web console (see pgundo serve) on the demo's
database, with undo allowed, until Ctrl-C, and cleans up after that; its
address with the token is the last line of the demo's output.`,
		Example: `  pgundo demo
  pgundo demo --serve
  go run ./cmd/pgundo demo`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.serve && g.json {
				return usageErr(errors.New("--serve prints the console's address, not JSON: drop --json"))
			}
			if o.serve {
				if err := (serveOptions{listen: o.listen, statementTimeout: 1, undoTimeout: 1}).Validate(); err != nil {
					return err
				}
			}
			res, err := runDemo(cmd.Context(), g, o)
			if err != nil {
				return err
			}
			if g.json {
				if err := g.output(res, nil); err != nil {
					return err
				}
			}
			if !res.Identical {
				return refusedErr(errors.New("demo: the undone database differs from the copy where the patch never ran"))
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&o.keep, "keep", false, "leave the throwaway server running and print how to connect")
	cmd.Flags().BoolVar(&o.serve, "serve", false, "then serve the web console on the demo's database (undo allowed) until Ctrl-C")
	cmd.Flags().StringVar(&o.listen, "listen", "127.0.0.1:8080", "with --serve: HOST:PORT of the console (loopback only)")
	return cmd
}

func runDemo(ctx context.Context, g *globals, o demoOptions) (*demoResult, error) {
	start := time.Now()
	w := g.stdout
	if g.json {
		w = io.Discard
	}
	step := func(format string, args ...any) { fmt.Fprintf(w, "\n== "+format+"\n", args...) }
	fmt.Fprintln(g.stderr, "starting a throwaway PostgreSQL ...")
	cl, err := pgcluster.Start(ctx, pgcluster.Options{})
	if err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	if o.keep {
		defer fmt.Fprintf(g.stderr, "server kept running: psql '%s'  (stop: pg_ctl -D %s stop)\n", cl.ConnString("shop"), cl.DataDir())
	} else {
		defer cl.Stop(context.Background()) //nolint:errcheck // best effort cleanup
	}
	admin, err := pgx.Connect(ctx, cl.ConnString("postgres"))
	if err != nil {
		return nil, fmt.Errorf("demo: connect: %w", err)
	}
	for _, db := range []string{"shop", "shop_without_patch"} {
		if _, err := admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{db}.Sanitize()); err != nil {
			admin.Close(ctx)
			return nil, fmt.Errorf("demo: create database %s: %w", db, err)
		}
	}
	admin.Close(ctx)

	res := &demoResult{}
	// Both databases get the same schema, capture and end-user sessions; only
	// "shop" gets the patch.
	for _, db := range []string{"shop", "shop_without_patch"} {
		conn, err := pgx.Connect(ctx, cl.ConnString(db))
		if err != nil {
			return nil, fmt.Errorf("demo: %w", err)
		}
		if _, err := pgsql.Migrate(ctx, conn); err != nil {
			return nil, fmt.Errorf("demo: install: %w", err)
		}
		if _, err := conn.Exec(ctx, demoSchema); err != nil {
			return nil, fmt.Errorf("demo: create shop: %w", err)
		}
		if _, err := triggers.Track(ctx, conn, []string{"customers", "orders", "order_items"}); err != nil {
			return nil, fmt.Errorf("demo: track: %w", err)
		}
		conn.Close(ctx)
	}
	step("pgundo install && pgundo track customers orders order_items")
	for _, s := range demoSessions {
		for _, db := range []string{"shop", "shop_without_patch"} {
			if s.patch && db != "shop" {
				continue
			}
			cfg, err := pgx.ParseConfig(cl.ConnString(db))
			if err != nil {
				return nil, err
			}
			cfg.RuntimeParams["application_name"] = s.app
			conn, err := pgx.ConnectConfig(ctx, cfg)
			if err != nil {
				return nil, fmt.Errorf("demo: %w", err)
			}
			for _, q := range s.sql {
				if _, err := conn.Exec(ctx, q); err != nil {
					conn.Close(ctx)
					return nil, fmt.Errorf("demo: session %s: %s: %w", s.app, q, err)
				}
			}
			if s.patch {
				if err := conn.QueryRow(ctx, `SELECT pgundo._session()`).Scan(&res.PatchSession); err != nil {
					conn.Close(ctx)
					return nil, err
				}
			}
			conn.Close(ctx)
		}
		fmt.Fprintf(w, "%s session (%s): %d statements\n", s.app, s.title, len(s.sql))
		if s.patch {
			for _, q := range s.sql {
				fmt.Fprintf(w, "    %s\n", q)
			}
		}
	}

	conn, err := pgx.Connect(ctx, cl.ConnString("shop"))
	if err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	defer conn.Close(context.Background())
	step("pgundo sessions")
	sessions, err := history.Sessions(ctx, conn, history.SessionFilter{})
	if err != nil {
		return nil, err
	}
	if err := renderSessions(w, g.termWidth(w), sessions); err != nil {
		return nil, err
	}
	step("pgundo show %s   (the patch: customers' notes are gone, orders 15 and 30 re-created as 1015 and 1030)", res.PatchSession)
	detail, err := history.Show(ctx, conn, res.PatchSession, 40)
	if err != nil {
		return nil, err
	}
	if err := renderShow(w, g.palette(w), detail); err != nil {
		return nil, err
	}
	sel := undo.Selection{Sessions: []string{res.PatchSession}}
	step("pgundo undo %s --dry-run", res.PatchSession)
	plan, err := undo.MakePlan(ctx, conn, sel, undo.Options{})
	if err != nil {
		return nil, fmt.Errorf("demo: plan: %w", err)
	}
	renderPlan(w, g.palette(w), plan)
	step("pgundo undo %s --yes", res.PatchSession)
	applied, err := undo.Apply(ctx, conn, sel, undo.Options{}, plan)
	if err != nil {
		return nil, fmt.Errorf("demo: undo: %w", err)
	}
	res.Plan, res.UndoSession = applied, applied.UndoSession
	fmt.Fprintf(w, "undone: %d rows written in one transaction, recorded as session %s\n", applied.RowsChanged, applied.UndoSession)

	step("proof: every table equals the copy where the patch never ran")
	other, err := pgx.Connect(ctx, cl.ConnString("shop_without_patch"))
	if err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	defer other.Close(context.Background())
	res.Identical = true
	for _, tbl := range []string{"customers", "orders", "order_items"} {
		a, err := tableRows(ctx, conn, tbl)
		if err != nil {
			return nil, err
		}
		b, err := tableRows(ctx, other, tbl)
		if err != nil {
			return nil, err
		}
		same := slices.Equal(a, b)
		res.Identical = res.Identical && same
		res.Tables = append(res.Tables, demoTableCheck{Table: tbl, Rows: len(a), Identical: same})
		verdict := "identical"
		if !same {
			verdict = "DIFFERENT"
		}
		fmt.Fprintf(w, "%-12s %3d rows  %s\n", tbl, len(a), verdict)
	}
	res.Seconds = time.Since(start).Seconds()
	if res.Identical {
		fmt.Fprintf(w, "\nthe patch is undone exactly; the end users' later work is kept (%.1fs)\n", res.Seconds)
	}
	if o.serve {
		g.databaseURL = cl.ConnString("shop")
		so := serveOptions{listen: o.listen, allowUndo: true, statementTimeout: console.DefaultStatementTimeout, undoTimeout: console.DefaultUndoTimeout}
		if err := g.serve(ctx, so); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// tableRows returns a table's rows as text, sorted: two tables are equal
// when these lists are.
func tableRows(ctx context.Context, conn *pgx.Conn, table string) ([]string, error) {
	rows, err := conn.Query(ctx, fmt.Sprintf("SELECT t::text FROM %s t ORDER BY 1", pgx.Identifier{table}.Sanitize()))
	if err != nil {
		return nil, fmt.Errorf("demo: read %s: %w", table, err)
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}
