package bench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgundo/pgundo/internal/pgcluster"
)

// OLTPResult is one pgbench phase: a transaction script run by a number of
// clients, in every variant.
type OLTPResult struct {
	// Script names the transaction: "tpcb-like" (pgbench's default, run as a
	// custom script on pgbench tables in schema pgundo_bench) or
	// "single-update" (one UPDATE of one pgbench_accounts row, the
	// transaction's only statement).
	Script string `json:"script"`
	// Scale, Clients, Jobs and Seconds are pgbench's -s, -c, -j and -T.
	Scale   int `json:"scale"`
	Clients int `json:"clients"`
	Jobs    int `json:"jobs"`
	Seconds int `json:"seconds"`
	// SynchronousCommit is "off" when pgbench's sessions ran with
	// synchronous_commit off (the commit does not wait for its WAL flush),
	// else "server default".
	SynchronousCommit string `json:"synchronous_commit"`
	// Pgbench is the pgbench executable that ran.
	Pgbench string `json:"pgbench"`
	// Untracked, Pgundo, RowLevel and Floor are the variants' throughputs;
	// EMaj is E-Maj's, nil unless it was measured.
	Untracked Throughput  `json:"untracked"`
	Pgundo    Throughput  `json:"pgundo"`
	RowLevel  Throughput  `json:"rowlevel"`
	Floor     Throughput  `json:"floor"`
	EMaj      *Throughput `json:"emaj,omitempty"`
	// Goal is the smallest acceptable Pgundo.Ratio (PRODUCT.md), and
	// GoalMet whether it was met.
	Goal    float64 `json:"goal"`
	GoalMet bool    `json:"goal_met"`
	// FloorRatio is Pgundo's TPS ÷ Floor's; FloorGoal its smallest
	// acceptable value (0: none) and FloorGoalMet whether it was met (true
	// when there is no goal).
	FloorRatio   float64 `json:"floor_ratio"`
	FloorGoal    float64 `json:"floor_goal"`
	FloorGoalMet bool    `json:"floor_goal_met"`
}

// Throughput is one variant's pgbench measurement.
type Throughput struct {
	// TPS is the median of Runs, each pgbench's "tps" (without initial
	// connection time).
	TPS  float64   `json:"tps"`
	Runs []float64 `json:"runs"`
	// Ratio is TPS ÷ the untracked variant's TPS.
	Ratio float64 `json:"ratio"`
	// LogBytesPerRow is the median growth of the variant's log divided by
	// the row changes it recorded. 0 for the untracked variant.
	LogBytesPerRow float64 `json:"log_bytes_per_row"`
	// FoldMicrosPerRow (pgundo only) is the median time pgundo.fold took,
	// after the run, to move the run's journal rows into the log tables,
	// per row moved: capture's cost that the run's transactions did not
	// pay. FoldedLogBytesPerRow is LogBytesPerRow once folded.
	FoldMicrosPerRow     float64 `json:"fold_us_per_row,omitempty"`
	FoldedLogBytesPerRow float64 `json:"folded_log_bytes_per_row,omitempty"`
}

// The pgbench tables, in Schema, in the order pgbench -i creates them.
var pgbenchTables = []string{"pgbench_history", "pgbench_tellers", "pgbench_accounts", "pgbench_branches"}

// tpcbScript is pgbench's built-in tpcb-like script with schema-qualified
// table names and the scale written in.
func tpcbScript(scale int) string {
	return fmt.Sprintf(`\set aid random(1, %[1]d * 100000)
\set bid random(1, %[1]d)
\set tid random(1, %[1]d * 10)
\set delta random(-5000, 5000)
BEGIN;
UPDATE %[2]s SET abalance = abalance + :delta WHERE aid = :aid;
SELECT abalance FROM %[2]s WHERE aid = :aid;
UPDATE %[3]s SET tbalance = tbalance + :delta WHERE tid = :tid;
UPDATE %[4]s SET bbalance = bbalance + :delta WHERE bid = :bid;
INSERT INTO %[5]s (tid, bid, aid, delta, mtime) VALUES (:tid, :bid, :aid, :delta, CURRENT_TIMESTAMP);
END;
`, scale, ident("pgbench_accounts"), ident("pgbench_tellers"), ident("pgbench_branches"), ident("pgbench_history"))
}

// singleScript is one single-row UPDATE of pgbench_accounts per transaction.
func singleScript(scale int) string {
	return fmt.Sprintf(`\set aid random(1, %[1]d * 100000)
\set delta random(-5000, 5000)
UPDATE %[2]s SET abalance = abalance + :delta WHERE aid = :aid;
`, scale, ident("pgbench_accounts"))
}

// oltpPhase is one pgbench phase to measure.
type oltpPhase struct {
	script    string // name
	body      string // pgbench script
	clients   int
	jobs      int
	asyncCmt  bool // run with synchronous_commit off
	goal      float64
	floorGoal float64
}

// oltpPhases are the pgbench phases of Capture: tpcb-like at 1 client and
// at opts.Clients, then single-update at 1 client, synchronous_commit off.
func oltpPhases(opts CaptureOptions) []oltpPhase {
	tpcb := tpcbScript(opts.OLTPScale)
	ph := []oltpPhase{{script: "tpcb-like", body: tpcb, clients: 1, jobs: 1, goal: GoalTPS, floorGoal: GoalFloor}}
	if opts.Clients != 1 {
		ph = append(ph, oltpPhase{script: "tpcb-like", body: tpcb, clients: opts.Clients, jobs: opts.Jobs, goal: GoalTPS, floorGoal: GoalFloor})
	}
	return append(ph, oltpPhase{script: "single-update", body: singleScript(opts.OLTPScale), clients: 1, jobs: 1, asyncCmt: true, goal: GoalSingle})
}

// measureOLTP runs one pgbench phase in every variant, opts.Repeat times,
// the variants interleaved.
func (e *env) measureOLTP(ctx context.Context, pgbench string, ph oltpPhase, opts CaptureOptions) (*OLTPResult, error) {
	script, err := os.CreateTemp("", "pgundo-bench-*.sql")
	if err != nil {
		return nil, fmt.Errorf("write pgbench script: %w", err)
	}
	defer os.Remove(script.Name())
	if _, err := script.WriteString(ph.body); err != nil {
		script.Close()
		return nil, fmt.Errorf("write pgbench script: %w", err)
	}
	if err := script.Close(); err != nil {
		return nil, fmt.Errorf("write pgbench script: %w", err)
	}
	res := &OLTPResult{Script: ph.script, Scale: opts.OLTPScale, Clients: ph.clients, Jobs: ph.jobs,
		Seconds: opts.OLTPSeconds, SynchronousCommit: "server default", Pgbench: pgbench, Goal: ph.goal, FloorGoal: ph.floorGoal}
	if ph.asyncCmt {
		res.SynchronousCommit = "off"
	}
	runs := map[Variant][]float64{}
	perRow := map[Variant][]float64{}
	var foldUS, foldedPerRow []float64
	for r := 0; r < opts.Repeat; r++ {
		for _, v := range e.rotate(r) {
			run, err := e.runOLTP(ctx, v, pgbench, script.Name(), ph, opts)
			if err != nil {
				return nil, fmt.Errorf("OLTP %s at %d clients, %s variant: %w", ph.script, ph.clients, v, err)
			}
			runs[v] = append(runs[v], run.tps)
			perRow[v] = append(perRow[v], run.bytesPerRow)
			msg := fmt.Sprintf("oltp %s %d clients %s run %d/%d: %.0f tps", ph.script, ph.clients, v, r+1, opts.Repeat, run.tps)
			if v != Untracked {
				msg += fmt.Sprintf(", log %.0f bytes/row", run.bytesPerRow)
			}
			if v == Pgundo {
				foldUS = append(foldUS, run.foldUS)
				foldedPerRow = append(foldedPerRow, run.foldedBytesPerRow)
				msg += fmt.Sprintf(" (%.0f once folded; the fold took %.1f µs/row)", run.foldedBytesPerRow, run.foldUS)
			}
			e.progress(msg)
		}
	}
	base := median(runs[Untracked])
	tp := func(v Variant) Throughput {
		t := Throughput{TPS: median(runs[v]), Runs: runs[v], LogBytesPerRow: median(perRow[v])}
		t.Ratio = ratio(t.TPS, base)
		return t
	}
	res.Untracked, res.Pgundo, res.RowLevel, res.Floor = tp(Untracked), tp(Pgundo), tp(RowLevel), tp(Floor)
	if e.emaj {
		t := tp(EMaj)
		res.EMaj = &t
	}
	res.Pgundo.FoldMicrosPerRow, res.Pgundo.FoldedLogBytesPerRow = median(foldUS), median(foldedPerRow)
	res.GoalMet = res.Pgundo.Ratio >= res.Goal
	res.FloorRatio = ratio(res.Pgundo.TPS, res.Floor.TPS)
	res.FloorGoalMet = res.FloorGoal == 0 || res.FloorRatio >= res.FloorGoal
	return res, nil
}

// oltpRun is one pgbench run of one variant.
type oltpRun struct {
	tps, bytesPerRow float64
	// pgundo only: the fold after the run, in µs per row moved, and the
	// log bytes per row change once folded.
	foldUS, foldedBytesPerRow float64
}

// runOLTP builds fresh pgbench tables, attaches variant v's capture, settles
// and runs pgbench. It returns the TPS and the log bytes per row change, and
// for pgundo what folding the run's journal took.
func (e *env) runOLTP(ctx context.Context, v Variant, pgbench, script string, ph oltpPhase, opts CaptureOptions) (oltpRun, error) {
	var run oltpRun
	if err := e.buildPgbench(ctx, opts.OLTPScale); err != nil {
		return run, err
	}
	if err := e.attach(ctx, v, pgbenchTables...); err != nil {
		return run, err
	}
	if err := e.emptyLogs(ctx); err != nil {
		return run, err
	}
	if err := e.settle(ctx, pgbenchTables...); err != nil {
		return run, err
	}
	before, err := e.logBytes(ctx, v)
	if err != nil {
		return run, err
	}
	if run.tps, err = e.pgbench(ctx, pgbench, script, ph, opts); err != nil {
		return run, err
	}
	after, err := e.logBytes(ctx, v)
	if err != nil {
		return run, err
	}
	var changes int64
	switch v {
	case Pgundo:
		err = e.conn.QueryRow(ctx, "SELECT coalesce(sum(rows), 0)::bigint FROM pgundo.stmt").Scan(&changes)
	case RowLevel:
		err = e.conn.QueryRow(ctx, "SELECT count(*) FROM "+RowLevelLog).Scan(&changes)
	case Floor:
		err = e.conn.QueryRow(ctx, "SELECT count(*) FROM "+FloorLog).Scan(&changes)
	case EMaj:
		changes, err = e.emajChanges(ctx)
	}
	if err != nil {
		return run, fmt.Errorf("count logged changes: %w", err)
	}
	run.bytesPerRow = ratio(float64(after-before), float64(changes))
	if v == Pgundo {
		start := time.Now()
		var moved int64
		if err := e.conn.QueryRow(ctx, "SELECT pgundo.fold()").Scan(&moved); err != nil {
			return run, fmt.Errorf("fold the journal: %w", err)
		}
		run.foldUS = ratio(float64(time.Since(start).Microseconds()), float64(moved))
		// VACUUM gives the emptied journal's pages back (truncates them).
		if _, err := e.conn.Exec(ctx, "VACUUM pgundo.journal"); err != nil {
			return run, fmt.Errorf("vacuum the journal: %w", err)
		}
		folded, err := e.logBytes(ctx, v)
		if err != nil {
			return run, err
		}
		run.foldedBytesPerRow = ratio(float64(folded-before), float64(changes))
	}
	if err := e.detach(ctx, v, pgbenchTables...); err != nil {
		return run, err
	}
	return run, nil
}

// buildPgbench (re)creates the pgbench tables in Schema and fills them as
// `pgbench -i -s scale` does (server-side generation, then primary keys).
func (e *env) buildPgbench(ctx context.Context, scale int) error {
	for _, t := range pgbenchTables {
		if _, err := e.conn.Exec(ctx, "DROP TABLE IF EXISTS "+ident(t)); err != nil {
			return fmt.Errorf("drop %s: %w", ident(t), err)
		}
	}
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{"CREATE TABLE " + ident("pgbench_history") + " (tid int, bid int, aid int, delta int, mtime timestamp, filler char(22))", nil},
		{"CREATE TABLE " + ident("pgbench_tellers") + " (tid int NOT NULL, bid int, tbalance int, filler char(84))", nil},
		{"CREATE TABLE " + ident("pgbench_accounts") + " (aid int NOT NULL, bid int, abalance int, filler char(84))", nil},
		{"CREATE TABLE " + ident("pgbench_branches") + " (bid int NOT NULL, bbalance int, filler char(88))", nil},
		{"INSERT INTO " + ident("pgbench_branches") + " (bid, bbalance) SELECT bid, 0 FROM generate_series(1, $1::int) bid", []any{scale}},
		{"INSERT INTO " + ident("pgbench_tellers") + " (tid, bid, tbalance) SELECT tid, (tid - 1) / 10 + 1, 0 FROM generate_series(1, $1::int * 10) tid", []any{scale}},
		{"INSERT INTO " + ident("pgbench_accounts") + " (aid, bid, abalance, filler) SELECT aid, (aid - 1) / 100000 + 1, 0, '' FROM generate_series(1, $1::int * 100000) aid", []any{scale}},
		{"ALTER TABLE " + ident("pgbench_branches") + " ADD PRIMARY KEY (bid)", nil},
		{"ALTER TABLE " + ident("pgbench_tellers") + " ADD PRIMARY KEY (tid)", nil},
		{"ALTER TABLE " + ident("pgbench_accounts") + " ADD PRIMARY KEY (aid)", nil},
	} {
		if _, err := e.conn.Exec(ctx, q.sql, q.args...); err != nil {
			return fmt.Errorf("build pgbench tables: %w", err)
		}
	}
	return nil
}

var tpsLine = regexp.MustCompile(`(?m)^tps = ([0-9.]+) \((?:without initial connection time|excluding connections establishing)\)`)

// pgbench runs pgbench once and returns its TPS.
func (e *env) pgbench(ctx context.Context, pgbench, script string, ph oltpPhase, opts CaptureOptions) (float64, error) {
	args := []string{"--no-vacuum",
		"-c", strconv.Itoa(ph.clients), "-j", strconv.Itoa(ph.jobs),
		"-T", strconv.Itoa(opts.OLTPSeconds), "-f", script}
	cmd := exec.CommandContext(ctx, pgbench, args...)
	cmd.Env = libpqEnv(e.cfg)
	if ph.asyncCmt {
		cmd.Env = withOption(cmd.Env, "-c synchronous_commit=off")
	}
	cmd.WaitDelay = 10 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		return 0, fmt.Errorf("%s %s: %w\n%s", pgbench, strings.Join(args, " "), err, tail(stderr.String()+stdout.String(), 15))
	}
	m := tpsLine.FindStringSubmatch(stdout.String())
	if m == nil {
		return 0, fmt.Errorf("%s printed no tps line:\n%s", pgbench, tail(stdout.String()+stderr.String(), 15))
	}
	return strconv.ParseFloat(m[1], 64)
}

// libpqEnv is the environment for a libpq client (pgbench) that connects
// where cfg does: the current environment with PGHOST, PGPORT, PGUSER,
// PGDATABASE, PGPASSWORD, PGSSLMODE and PGAPPNAME set from cfg (the password
// goes through the environment, never the command line) and PGSERVICE
// removed. Other PG* variables (PGSSLROOTCERT, PGOPTIONS, ...) pass through;
// TLS files named only in a connection string do not.
func libpqEnv(cfg *pgx.ConnConfig) []string {
	var env []string
	for _, kv := range os.Environ() {
		switch k, _, _ := strings.Cut(kv, "="); k {
		case "PGHOST", "PGHOSTADDR", "PGPORT", "PGUSER", "PGDATABASE", "PGPASSWORD", "PGPASSFILE",
			"PGSSLMODE", "PGREQUIRESSL", "PGAPPNAME", "PGSERVICE", "PGSERVICEFILE":
			continue
		}
		env = append(env, kv)
	}
	env = append(env,
		"PGHOST="+cfg.Host,
		"PGPORT="+strconv.Itoa(int(cfg.Port)),
		"PGUSER="+cfg.User,
		"PGDATABASE="+cfg.Database,
		"PGSSLMODE="+sslMode(cfg),
		"PGAPPNAME=pgundo-bench")
	if cfg.Password != "" {
		env = append(env, "PGPASSWORD="+cfg.Password)
	}
	return env
}

// withOption returns env with opt appended to PGOPTIONS (set if absent).
func withOption(env []string, opt string) []string {
	out := make([]string, 0, len(env)+1)
	val := opt
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PGOPTIONS="); ok {
			if v != "" {
				val = v + " " + opt
			}
			continue
		}
		out = append(out, kv)
	}
	return append(out, "PGOPTIONS="+val)
}

// sslMode maps pgx's TLS set-up back to a libpq sslmode.
func sslMode(cfg *pgx.ConnConfig) string {
	var plainFallback, tlsFallback bool
	for _, f := range cfg.Fallbacks {
		if f.Host == cfg.Host && f.Port == cfg.Port {
			plainFallback = plainFallback || f.TLSConfig == nil
			tlsFallback = tlsFallback || f.TLSConfig != nil
		}
	}
	tls := cfg.TLSConfig
	switch {
	case tls == nil && tlsFallback:
		return "allow"
	case tls == nil:
		return "disable"
	case plainFallback:
		return "prefer"
	case tls.InsecureSkipVerify && tls.VerifyPeerCertificate == nil:
		return "require"
	case tls.InsecureSkipVerify:
		return "verify-ca"
	default:
		return "verify-full"
	}
}

// PgbenchNotFoundError is returned by FindPgbench: no pgbench executable was
// found in any of the places it looked.
type PgbenchNotFoundError struct {
	// Looked lists the places searched.
	Looked []string
}

func (e *PgbenchNotFoundError) Error() string {
	return "pgbench not found (looked in: " + strings.Join(e.Looked, ", ") +
		"); install the PostgreSQL client programs (Debian/Ubuntu: apt-get install postgresql-client), " +
		"give its path with --pgbench, or skip the OLTP phase with --oltp-seconds 0"
}

// FindPgbench locates a pgbench executable, preferring one of the server's
// major version (serverMajor, e.g. 15; 0 if unknown). It looks, in order,
// in $PGUNDO_PG_BINDIR, /usr/lib/postgresql/<serverMajor>/bin, the
// directory `pg_config --bindir` names, $PATH, and the highest-version
// /usr/lib/postgresql/*/bin. When none has it the error is a
// *PgbenchNotFoundError.
func FindPgbench(serverMajor int) (string, error) {
	var looked []string
	try := func(dir string) (string, bool) {
		p := filepath.Join(dir, "pgbench")
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, true
		}
		looked = append(looked, dir)
		return "", false
	}
	if d := os.Getenv(pgcluster.BinDirEnv); d != "" {
		if p, ok := try(d); ok {
			return p, nil
		}
	}
	if serverMajor > 0 {
		if p, ok := try(fmt.Sprintf("/usr/lib/postgresql/%d/bin", serverMajor)); ok {
			return p, nil
		}
	}
	if pgConfig, err := exec.LookPath("pg_config"); err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		out, err := exec.CommandContext(ctx, pgConfig, "--bindir").Output()
		cancel()
		if err == nil {
			if p, ok := try(strings.TrimSpace(string(out))); ok {
				return p, nil
			}
		}
	}
	if p, err := exec.LookPath("pgbench"); err == nil {
		return p, nil
	}
	looked = append(looked, "$PATH")
	if d, err := pgcluster.FindBinDir(); err == nil {
		if p, ok := try(d); ok {
			return p, nil
		}
	}
	return "", &PgbenchNotFoundError{Looked: dedupe(looked)}
}

func dedupe(xs []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, x := range xs {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
