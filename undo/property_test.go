package undo_test

import (
	"errors"
	"flag"
	"fmt"
	"math/rand"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgundo/pgundo/undo"
)

// TestProperty generates random schemas and random sessions, undoes one
// session and checks the full contents of every table against an oracle:
//
//   - without conflicts, a database where the session never ran (checkUndo:
//     the two-database method, with the redo and the undo of the redo);
//   - with conflicts (a "conflicter" session changed rows the target changed,
//     after it), the default mode must refuse and change nothing, and
//     --on-conflict skip must leave exactly the rows the conflicter touched
//     as they are and undo every other row (per key: the row as it is where
//     the conflicter touched it, else as in a database where neither the
//     target nor the conflicter ran), or refuse with undo.ErrForeignKey when
//     that result would break the foreign key; then either the redo (undo
//     of the undo) must bring back the tables as they were before the undo,
//     or (even seeds) undoing the conflicter and then what is left of the
//     target must give the database where neither ran.
//
// The schema is a random subset of: a parent table p and a child c (ON
// DELETE/UPDATE CASCADE), a composite key with a text part and a generated
// column (ck), a text key with an identity column (tk, ALWAYS or BY
// DEFAULT), a list-partitioned table (pt, with or without a primary key,
// rows moved between partitions and written through a partition directly)
// and a table without a primary key with equal rows (kl); the conflicter
// writes only tables with a key. Statements are INSERT, UPDATE (also of keys),
// DELETE, INSERT ... ON CONFLICT DO UPDATE, TRUNCATE and MERGE (PostgreSQL
// 15+), alone or in explicit transactions with a rolled-back savepoint.
//
// Every statement names its rows by key, so a model in the generator knows
// which rows exist and who touched them: keys are split at random into the
// target's pool and the others' pool; before the target starts anyone may
// write anything; once it has, the target writes only its pool (a TRUNCATE
// takes the whole table, which the others then leave alone) and the others
// only theirs, so the only conflicts are the conflicter's. Values come from
// a counter and keys are explicit (no sequences, no now()).
//
// Budget: PGUNDO_PROP_CASES (or -prop.cases) cases, default 12, or cases
// until PGUNDO_PROP_DURATION (or -prop.duration) has passed. Seeds:
// PGUNDO_PROP_SEED (or -prop.seed) is the first case's seed, case i uses
// seed+i; default 1 for a fixed number of cases, the clock with a
// duration. A failing case logs its seed and its SQL; rerun it alone with
// -prop.seed N -prop.cases 1.
func TestProperty(t *testing.T) {
	cases, dur, seed := propBudget(t)
	version := queryOne[int](t, newWorld(t, scenario{}, nil).Conn, `SELECT current_setting('server_version_num')::int`)
	start := time.Now()
	var failed []int64
	n, kinds := 0, map[string]int{}
	for i := 0; ; i++ {
		if dur > 0 {
			if time.Since(start) >= dur {
				break
			}
		} else if i >= cases {
			break
		}
		s := seed + int64(i)
		if !t.Run(fmt.Sprintf("seed=%d", s), func(t *testing.T) { kinds[propCase(t, s, version)]++ }) {
			failed = append(failed, s)
		}
		n++
	}
	t.Logf("property: %d cases from seed %d in %s on server %d (%v); failed seeds: %v", n, seed, time.Since(start).Round(time.Second), version, kinds, failed)
}

var (
	propSeedFlag     = flag.Int64("prop.seed", 0, "TestProperty: first seed (default 1, or the clock with -prop.duration)")
	propCasesFlag    = flag.Int("prop.cases", 0, "TestProperty: number of cases (default 12)")
	propDurationFlag = flag.Duration("prop.duration", 0, "TestProperty: run cases for this long instead of a number of them")
	propKnownFlag    = flag.Bool("prop.known-bugs", false, "TestProperty: also generate the cases of known open bugs (default false: see propKnownBugs)")
)

// propKnownBugs says whether to generate the cases of known open bugs
// (-prop.known-bugs or PGUNDO_PROP_KNOWN_BUGS=1; default off, so that CI
// stays green until they are fixed). Found by this test:
//
//   - MERGE into the partitioned table: on PostgreSQL 15.18 a MERGE into a
//     partitioned table that both updates and inserts rows gets the
//     inserted row in its UPDATE trigger's NEW TABLE instead of the updated
//     one, so the capture logs a wrong after image and a later undo of the
//     session refuses with conflicts ("changed by another session in
//     between", "re-created since"), or with skip leaves the rows as they
//     are, although nobody else touched them (seed 1). A PostgreSQL bug: a
//     bare statement trigger sees the same.
//
// (A row deleted and inserted again under its key with another value of a
// GENERATED ALWAYS identity column, seeds 6 and 26, is fixed: the undo
// replaces such rows whole; always generated now.)
func propKnownBugs() bool {
	return *propKnownFlag || os.Getenv("PGUNDO_PROP_KNOWN_BUGS") == "1"
}

func propBudget(t *testing.T) (cases int, dur time.Duration, seed int64) {
	cases, dur = *propCasesFlag, *propDurationFlag
	if v := os.Getenv("PGUNDO_PROP_CASES"); v != "" && cases == 0 {
		n, err := strconv.Atoi(v)
		require.NoError(t, err, "PGUNDO_PROP_CASES")
		cases = n
	}
	if v := os.Getenv("PGUNDO_PROP_DURATION"); v != "" && dur == 0 {
		d, err := time.ParseDuration(v)
		require.NoError(t, err, "PGUNDO_PROP_DURATION")
		dur = d
	}
	if cases == 0 {
		cases = 12
	}
	seed = *propSeedFlag
	if v := os.Getenv("PGUNDO_PROP_SEED"); v != "" && seed == 0 {
		s, err := strconv.ParseInt(v, 10, 64)
		require.NoError(t, err, "PGUNDO_PROP_SEED")
		seed = s
	}
	if seed == 0 {
		seed = 1
		if dur > 0 {
			seed = time.Now().UnixNano() % 1_000_000_000
		}
	}
	return cases, dur, seed
}

// Roles of the session writing a statement.
const (
	roleBefore     = iota // setup and sessions before the target starts: anything
	roleTarget            // the session undone: its pool only (or TRUNCATE)
	roleOther             // others once the target started: their pool only
	roleConflict          // the conflicter: rows the target changed
	sessTarget     = 0
	sessConflict   = 1
	sessFirstOther = 2
)

// propKey is the model of one key of a keyed table.
type propKey struct {
	exists    bool
	pid, part int // c: the parent; pt: the partition
	tTouched  bool
	tFirst    bool // existed when the target first touched it
	tPart     int  // pt: its partition then
	tKeyMoved bool // the target changed this key (or moved it between partitions)
	cTouched  bool
}

// propGen generates one case and keeps its model.
type propGen struct {
	rng      *rand.Rand
	merge    bool
	has      map[string]bool
	order    map[string][]string // universe of keys per keyed table, in order
	keys     map[string]map[string]*propKey
	poolT    map[string]map[string]bool // key (kl: value of a) -> target's pool
	locked   map[string]bool            // tables the target truncated
	eligible map[string][]string        // keys the conflicter may touch
	role     int
	cnt      int
	ptParts  int
	always   bool // tk's identity is GENERATED ALWAYS
	known    bool // generate the cases of known bugs too (propKnownBugs)
	ptNoKey  bool // pt has no primary key
}

var propTables = []string{"p", "c", "ck", "tk", "pt", "kl"}

func newPropGen(seed int64, merge bool) *propGen {
	g := &propGen{
		rng: rand.New(rand.NewSource(seed)), merge: merge, has: map[string]bool{},
		order: map[string][]string{}, keys: map[string]map[string]*propKey{},
		poolT: map[string]map[string]bool{}, locked: map[string]bool{}, eligible: map[string][]string{},
	}
	for len(g.present()) < 2 {
		for _, tb := range propTables {
			g.has[tb] = g.rng.Intn(10) < 6
		}
		g.has["c"] = g.has["c"] && g.has["p"]
	}
	g.order["p"] = intKeys(1, 8)
	g.order["c"] = intKeys(101, 112)
	for a := 1; a <= 3; a++ {
		for _, b := range []string{"x", "y", "Y"} {
			g.order["ck"] = append(g.order["ck"], fmt.Sprintf("(%d,%s)", a, b))
		}
	}
	for i := 1; i <= 8; i++ {
		g.order["tk"] = append(g.order["tk"], fmt.Sprintf("k%d", i))
	}
	g.order["pt"] = intKeys(1, 8)
	g.order["kl"] = intKeys(1, 6)
	for _, tb := range propTables {
		g.keys[tb], g.poolT[tb] = map[string]*propKey{}, map[string]bool{}
		for _, k := range g.order[tb] {
			g.keys[tb][k] = &propKey{}
			g.poolT[tb][k] = g.rng.Intn(2) == 0
		}
	}
	g.always = g.rng.Intn(2) == 0
	g.ptParts = 3
	g.known = propKnownBugs()
	g.ptNoKey = g.rng.Intn(4) == 0
	return g
}

func intKeys(from, to int) []string {
	var out []string
	for i := from; i <= to; i++ {
		out = append(out, strconv.Itoa(i))
	}
	return out
}

func (g *propGen) present() []string {
	var out []string
	for _, tb := range propTables {
		if g.has[tb] {
			out = append(out, tb)
		}
	}
	return out
}

// setup is the schema (before tracking).
func (g *propGen) setup() string {
	var b strings.Builder
	if g.has["p"] {
		gen := ""
		if g.rng.Intn(2) == 0 {
			gen = ", g int GENERATED ALWAYS AS (v + id) STORED"
		}
		fmt.Fprintf(&b, "CREATE TABLE p (id int PRIMARY KEY, v int NOT NULL, note text NOT NULL%s);\n", gen)
	}
	if g.has["c"] {
		b.WriteString("CREATE TABLE c (id int PRIMARY KEY, pid int NOT NULL REFERENCES p ON DELETE CASCADE ON UPDATE CASCADE, v int NOT NULL);\n")
	}
	if g.has["ck"] {
		b.WriteString("CREATE TABLE ck (a int, b text, v int NOT NULL, g int GENERATED ALWAYS AS (v * 2 + a) STORED, PRIMARY KEY (a, b));\n")
	}
	if g.has["tk"] {
		kind := "BY DEFAULT"
		if g.always {
			kind = "ALWAYS"
		}
		fmt.Fprintf(&b, "CREATE TABLE tk (k text PRIMARY KEY, n int GENERATED %s AS IDENTITY, v int NOT NULL, note text NOT NULL);\n", kind)
	}
	if g.has["pt"] {
		if g.ptNoKey {
			b.WriteString("CREATE TABLE pt (k int, part int, v int NOT NULL) PARTITION BY LIST (part);\n")
		} else {
			b.WriteString("CREATE TABLE pt (k int, part int, v int NOT NULL, PRIMARY KEY (k, part)) PARTITION BY LIST (part);\n")
		}
		b.WriteString("CREATE TABLE pt_0 PARTITION OF pt FOR VALUES IN (0);\nCREATE TABLE pt_1 PARTITION OF pt FOR VALUES IN (1);\n")
		if g.rng.Intn(2) == 0 {
			b.WriteString("CREATE TABLE pt_2 PARTITION OF pt DEFAULT;\n")
		} else {
			b.WriteString("CREATE TABLE pt_2 PARTITION OF pt FOR VALUES IN (2);\n")
		}
	}
	if g.has["kl"] {
		b.WriteString("CREATE TABLE kl (a int NOT NULL, b text NOT NULL, v int NOT NULL);\n")
	}
	g.role = roleBefore
	for i := 0; i < 6; i++ {
		for _, tb := range g.present() {
			if s := g.insert(tb); s != "" {
				b.WriteString(s + ";\n")
			}
		}
	}
	return b.String()
}

func (g *propGen) val() int { g.cnt++; return g.cnt }

// allowed says whether the current role may write key k of table tb.
func (g *propGen) allowed(tb, k string) bool {
	switch g.role {
	case roleTarget:
		return g.poolT[tb][k]
	case roleOther:
		return !g.poolT[tb][k] && !g.locked[tb]
	}
	return true
}

// pick returns up to n keys of tb the role may write, existing or not as
// asked, in random order.
func (g *propGen) pick(tb string, exists bool, n int, ok func(k string) bool) []string {
	var out []string
	for _, i := range g.rng.Perm(len(g.order[tb])) {
		k := g.order[tb][i]
		if len(out) < n && g.allowed(tb, k) && g.keys[tb][k].exists == exists && (ok == nil || ok(k)) {
			out = append(out, k)
		}
	}
	return out
}

// pickAny returns up to n keys of tb the role may write, existing or not.
func (g *propGen) pickAny(tb string, n int) []string {
	var out []string
	for _, i := range g.rng.Perm(len(g.order[tb])) {
		k := g.order[tb][i]
		if len(out) < n && g.allowed(tb, k) {
			out = append(out, k)
		}
	}
	return out
}

// touch records that the current role is about to write key k of tb.
func (g *propGen) touch(tb, k string) {
	st := g.keys[tb][k]
	switch g.role {
	case roleTarget:
		if !st.tTouched {
			st.tTouched, st.tFirst, st.tPart = true, st.exists, st.part
		}
	case roleConflict:
		st.cTouched = true
	}
}

func (g *propGen) moved(tb, k string) {
	if g.role == roleTarget {
		g.keys[tb][k].tKeyMoved = true
	}
}

// delete removes key k of tb from the model, with the FK cascade.
func (g *propGen) delete(tb, k string) {
	if tb == "p" {
		id, _ := strconv.Atoi(k)
		for _, ck := range g.order["c"] {
			if st := g.keys["c"][ck]; st.exists && st.pid == id {
				g.touch("c", ck)
				st.exists = false
			}
		}
	}
	g.touch(tb, k)
	g.keys[tb][k].exists = false
}

// parentFor picks an existing parent for a new child with id k: one the
// role may write and in the same pool as the child, so that a child's pool
// is always its parent's.
func (g *propGen) parentFor(k string) (int, bool) {
	ps := g.pick("p", true, 1, func(pk string) bool { return g.poolT["p"][pk] == g.poolT["c"][k] })
	if len(ps) == 0 {
		return 0, false
	}
	id, _ := strconv.Atoi(ps[0])
	return id, true
}

// rowValues returns the VALUES tuple of a new row with key k of tb and
// records it in the model (the caller has touched it).
func (g *propGen) newRow(tb, k string) (string, bool) {
	st := g.keys[tb][k]
	v := g.val()
	switch tb {
	case "p":
		st.exists = true
		return fmt.Sprintf("(%s, %d, 'n%d')", k, v, v), true
	case "c":
		pid, ok := g.parentFor(k)
		if !ok {
			return "", false
		}
		st.exists, st.pid = true, pid
		return fmt.Sprintf("(%s, %d, %d)", k, pid, v), true
	case "ck":
		a, b := ckParts(k)
		st.exists = true
		return fmt.Sprintf("(%s, '%s', %d)", a, b, v), true
	case "tk":
		st.exists = true
		return fmt.Sprintf("('%s', %d, %d, 'n%d')", k, g.identity(k, v), v, v), true
	case "pt":
		if g.role != roleConflict { // the conflicter puts back the row deleted
			st.part = g.rng.Intn(g.ptParts)
		}
		st.exists = true
		if g.role == roleTarget && st.tFirst && st.part != st.tPart {
			// Another row to pgundo (the partition is part of the key).
			st.tKeyMoved = true
		}
		return fmt.Sprintf("(%s, %d, %d)", k, st.part, v), true
	}
	panic(tb)
}

func ckParts(k string) (string, string) {
	a, b, _ := strings.Cut(k[1:len(k)-1], ",")
	return a, b
}

var propCols = map[string]string{"p": "(id, v, note)", "c": "(id, pid, v)", "ck": "(a, b, v)", "tk": "(k, n, v, note)", "pt": "(k, part, v)", "kl": "(a, b, v)"}
var propKeyCols = map[string]string{"p": "id", "c": "id", "ck": "a, b", "tk": "k", "pt": "k, part"}

// where is the condition naming keys ks of tb.
func (g *propGen) where(tb string, ks []string) string {
	var parts []string
	for _, k := range ks {
		switch tb {
		case "ck":
			a, b := ckParts(k)
			parts = append(parts, fmt.Sprintf("(%s, '%s')", a, b))
		case "tk":
			parts = append(parts, "'"+k+"'")
		default:
			parts = append(parts, k)
		}
	}
	col := map[string]string{"p": "id", "c": "id", "ck": "(a, b)", "tk": "k", "pt": "k"}[tb]
	return fmt.Sprintf("%s IN (%s)", col, strings.Join(parts, ", "))
}

func (g *propGen) overriding(tb string) string {
	if tb == "tk" && g.always {
		return " OVERRIDING SYSTEM VALUE"
	}
	return ""
}

func (g *propGen) insert(tb string) string {
	if tb == "kl" {
		return g.klInsert()
	}
	var vals []string
	for _, k := range g.pick(tb, false, 1+g.rng.Intn(3), nil) {
		g.touch(tb, k)
		if v, ok := g.newRow(tb, k); ok {
			vals = append(vals, v)
		}
	}
	if len(vals) == 0 {
		return ""
	}
	return fmt.Sprintf("INSERT INTO %s %s%s VALUES %s", tb, propCols[tb], g.overriding(tb), strings.Join(vals, ", "))
}

// stmt returns a random statement of the current role, "" when the one
// drawn cannot be made.
func (g *propGen) stmt() string {
	var tbs []string
	for _, tb := range g.present() {
		if g.role != roleOther || !g.locked[tb] {
			tbs = append(tbs, tb)
		}
	}
	if len(tbs) == 0 {
		return ""
	}
	tb := tbs[g.rng.Intn(len(tbs))]
	if tb == "kl" {
		return g.klStmt()
	}
	switch op := g.rng.Intn(20); {
	case op < 4:
		return g.insert(tb)
	case op < 8:
		ks := g.pick(tb, true, 1+g.rng.Intn(3), nil)
		if len(ks) == 0 {
			return ""
		}
		target := tb
		if tb == "pt" && g.rng.Intn(2) == 0 {
			// Through a partition directly: only the keys in it.
			part := g.keys[tb][ks[0]].part
			ks = slices.DeleteFunc(ks, func(k string) bool { return g.keys[tb][k].part != part })
			target = fmt.Sprintf("pt_%d", part)
		}
		for _, k := range ks {
			g.touch(tb, k)
		}
		d := g.val()
		set := fmt.Sprintf("v = v + %d", d)
		if tb == "p" || tb == "tk" {
			set += ", note = note || 'u'"
		}
		return fmt.Sprintf("UPDATE %s SET %s WHERE %s", target, set, g.where(tb, ks))
	case op < 10:
		return g.keyChange(tb)
	case op < 13:
		ks := g.pick(tb, true, 1+g.rng.Intn(2), nil)
		if len(ks) == 0 {
			return ""
		}
		for _, k := range ks {
			g.delete(tb, k)
		}
		return fmt.Sprintf("DELETE FROM %s WHERE %s", tb, g.where(tb, ks))
	case op < 15:
		return g.upsert(tb)
	case op < 18:
		if !g.merge || tb == "pt" && !g.known {
			return ""
		}
		return g.mergeStmt(tb)
	default:
		if g.role != roleBefore && g.role != roleTarget || g.rng.Intn(3) != 0 {
			return ""
		}
		return g.truncate(tb)
	}
}

func (g *propGen) truncate(tb string) string {
	tabs := []string{tb}
	if (tb == "p" || tb == "c") && g.has["c"] {
		tabs = []string{"p", "c"}
		if tb == "c" {
			tabs = []string{"c"}
		}
	}
	for _, x := range tabs {
		if x == "kl" {
			continue
		}
		for _, k := range g.order[x] {
			if g.keys[x][k].exists {
				g.delete(x, k)
			}
		}
	}
	if g.role == roleTarget {
		g.locked[tb] = true
		if tb == "p" || tb == "c" {
			g.locked["p"], g.locked["c"] = true, true
		}
	}
	return "TRUNCATE " + strings.Join(tabs, ", ")
}

// keyChange changes one key (pt: moves a row to another partition).
func (g *propGen) keyChange(tb string) string {
	old := g.pick(tb, true, 1, nil)
	if len(old) == 0 || tb == "c" {
		return ""
	}
	o := old[0]
	if tb == "pt" {
		st := g.keys[tb][o]
		g.touch(tb, o)
		g.moved(tb, o)
		st.part = (st.part + 1 + g.rng.Intn(g.ptParts-1)) % g.ptParts
		return fmt.Sprintf("UPDATE pt SET part = %d WHERE k = %s", st.part, o)
	}
	nw := g.pick(tb, false, 1, func(k string) bool {
		if g.poolT[tb][k] != g.poolT[tb][o] {
			return false
		}
		if tb == "ck" {
			a1, _ := ckParts(k)
			a2, _ := ckParts(o)
			return a1 == a2
		}
		return true
	})
	if len(nw) == 0 {
		return ""
	}
	n := nw[0]
	g.touch(tb, o)
	g.touch(tb, n)
	g.moved(tb, o)
	g.moved(tb, n)
	g.keys[tb][o].exists, g.keys[tb][n].exists = false, true
	switch tb {
	case "p":
		oi, _ := strconv.Atoi(o)
		ni, _ := strconv.Atoi(n)
		for _, ck := range g.order["c"] {
			if st := g.keys["c"][ck]; st.exists && st.pid == oi {
				g.touch("c", ck)
				st.pid = ni
			}
		}
		return fmt.Sprintf("UPDATE p SET id = %s WHERE id = %s", n, o)
	case "ck":
		_, b := ckParts(n)
		return fmt.Sprintf("UPDATE ck SET b = '%s' WHERE %s", b, g.where(tb, old))
	case "tk":
		return fmt.Sprintf("UPDATE tk SET k = '%s' WHERE k = '%s'", n, o)
	}
	panic(tb)
}

// existingTuple is the VALUES tuple an upsert or merge gives for an
// existing row (its key, and for c and pt its parent or partition).
func (g *propGen) existingTuple(tb, k string, v int) string {
	st := g.keys[tb][k]
	switch tb {
	case "p":
		return fmt.Sprintf("(%s, %d, 'n%d')", k, v, v)
	case "c":
		return fmt.Sprintf("(%s, %d, %d)", k, st.pid, v)
	case "ck":
		a, b := ckParts(k)
		return fmt.Sprintf("(%s, '%s', %d)", a, b, v)
	case "tk":
		return fmt.Sprintf("('%s', %d, %d, 'n%d')", k, g.identity(k, v), v, v)
	case "pt":
		return fmt.Sprintf("(%s, %d, %d)", k, st.part, v)
	}
	panic(tb)
}

// identity is tk's identity value for a new row: v (another each time a
// key comes back).
func (g *propGen) identity(_ string, v int) int {
	return v
}

func (g *propGen) upsert(tb string) string {
	if tb == "pt" && g.ptNoKey {
		return "" // no unique index to infer
	}
	var vals []string
	for _, k := range g.pickAny(tb, 1+g.rng.Intn(2)) {
		if g.keys[tb][k].exists {
			g.touch(tb, k)
			vals = append(vals, g.existingTuple(tb, k, g.val()))
			continue
		}
		g.touch(tb, k)
		if v, ok := g.newRow(tb, k); ok {
			vals = append(vals, v)
		}
	}
	if len(vals) == 0 {
		return ""
	}
	return fmt.Sprintf("INSERT INTO %s AS t %s%s VALUES %s ON CONFLICT (%s) DO UPDATE SET v = t.v + EXCLUDED.v",
		tb, propCols[tb], g.overriding(tb), strings.Join(vals, ", "), propKeyCols[tb])
}

// mergeStmt: matched rows whose source v is a multiple of 3 are deleted,
// other matched rows updated, the rest inserted.
func (g *propGen) mergeStmt(tb string) string {
	var vals []string
	for _, k := range g.pickAny(tb, 1+g.rng.Intn(3)) {
		st := g.keys[tb][k]
		g.touch(tb, k)
		if !st.exists {
			if v, ok := g.newRow(tb, k); ok {
				vals = append(vals, v)
			}
			continue
		}
		v := g.val()
		vals = append(vals, g.existingTuple(tb, k, v))
		if v%3 == 0 {
			g.delete(tb, k)
		}
	}
	if len(vals) == 0 {
		return ""
	}
	on := map[string]string{"p": "t.id = s.id", "c": "t.id = s.id", "ck": "t.a = s.a AND t.b = s.b", "tk": "t.k = s.k", "pt": "t.k = s.k"}[tb]
	cols := strings.Trim(propCols[tb], "()")
	var svals []string
	for _, c := range strings.Split(cols, ", ") {
		svals = append(svals, "s."+c)
	}
	return fmt.Sprintf("MERGE INTO %s t USING (VALUES %s) s%s ON %s WHEN MATCHED AND s.v %% 3 = 0 THEN DELETE WHEN MATCHED THEN UPDATE SET v = t.v + s.v WHEN NOT MATCHED THEN INSERT %s%s VALUES (%s)",
		tb, strings.Join(vals, ", "), propCols[tb], on, propCols[tb], g.overriding(tb), strings.Join(svals, ", "))
}

// klAs returns up to n values of kl.a the role may write.
func (g *propGen) klAs(n int) []string {
	return g.pickAny("kl", n)
}

func (g *propGen) klInsert() string {
	var vals []string
	for _, a := range g.klAs(1 + g.rng.Intn(2)) {
		row := fmt.Sprintf("(%s, '%s', %d)", a, []string{"x", "y"}[g.rng.Intn(2)], 1+g.rng.Intn(2))
		vals = append(vals, row)
		if g.rng.Intn(3) == 0 {
			vals = append(vals, row) // an equal row
		}
	}
	if len(vals) == 0 {
		return ""
	}
	return "INSERT INTO kl (a, b, v) VALUES " + strings.Join(vals, ", ")
}

func (g *propGen) klStmt() string {
	as := g.klAs(1)
	if len(as) == 0 {
		return ""
	}
	a := as[0]
	switch op := g.rng.Intn(10); {
	case op < 3:
		return g.klInsert()
	case op < 6:
		return fmt.Sprintf("UPDATE kl SET v = v + 1 WHERE a = %s", a)
	case op < 8:
		return fmt.Sprintf("DELETE FROM kl WHERE a = %s AND b = '%s'", a, []string{"x", "y"}[g.rng.Intn(2)])
	case op < 9:
		if !g.merge {
			return ""
		}
		return fmt.Sprintf("MERGE INTO kl t USING (VALUES (%s, %d)) s(a, v) ON t.a = s.a WHEN MATCHED AND t.b = 'y' THEN DELETE WHEN MATCHED THEN UPDATE SET v = t.v + s.v WHEN NOT MATCHED THEN INSERT (a, b, v) VALUES (s.a, 'x', s.v)", a, 1+g.rng.Intn(2))
	default:
		if g.role != roleBefore && g.role != roleTarget || g.rng.Intn(2) != 0 {
			return ""
		}
		if g.role == roleTarget {
			g.locked["kl"] = true
		}
		return "TRUNCATE kl"
	}
}

// one returns a statement of the current role (tries a few draws).
func (g *propGen) one() string {
	for range 20 {
		if s := g.stmt(); s != "" {
			return s
		}
	}
	return ""
}

// script returns one step's SQL for the target: a statement, or a few in
// an explicit transaction, maybe with a rolled-back savepoint.
func (g *propGen) script() string {
	if g.role != roleTarget || g.rng.Intn(4) != 0 {
		return g.one()
	}
	var parts []string
	for range 2 + g.rng.Intn(2) {
		if s := g.one(); s != "" {
			parts = append(parts, s)
		}
	}
	if len(parts) == 0 {
		return ""
	}
	if g.rng.Intn(2) == 0 {
		tb := g.present()[g.rng.Intn(len(g.present()))]
		junk := "DELETE FROM " + tb
		if tb == "kl" || tb == "pt" {
			junk = "UPDATE " + tb + " SET v = v + 1000"
		}
		parts = append(parts[:len(parts)/2], append([]string{"SAVEPOINT sp", junk, "ROLLBACK TO SAVEPOINT sp"}, parts[len(parts)/2:]...)...)
	}
	return "BEGIN; " + strings.Join(parts, "; ") + "; COMMIT"
}

// conflictStmt is a statement of the conflicter: it changes rows the
// target changed (not keys the target changed, nor rows the target
// created and deleted again), so each is a conflict.
func (g *propGen) conflictStmt() string {
	var tbs []string
	for _, tb := range g.present() {
		if len(g.eligible[tb]) > 0 {
			tbs = append(tbs, tb)
		}
	}
	if len(tbs) == 0 {
		return ""
	}
	tb := tbs[g.rng.Intn(len(tbs))]
	i := g.rng.Intn(len(g.eligible[tb]))
	k := g.eligible[tb][i]
	// Each row is changed once (counting cascades), so that none ends as
	// the target left it, which would be no conflict.
	g.eligible[tb] = slices.Delete(g.eligible[tb], i, i+1)
	st := g.keys[tb][k]
	if !st.exists {
		g.touch(tb, k)
		if tb == "c" {
			// Re-create it under a parent of the target's pool.
			g.role = roleTarget
			pid, ok := g.parentFor(k)
			g.role = roleConflict
			if !ok {
				st.cTouched = false
				return ""
			}
			st.exists, st.pid = true, pid
			v := g.val()
			return fmt.Sprintf("INSERT INTO c (id, pid, v) VALUES (%s, %d, %d)", k, pid, v)
		}
		v, _ := g.newRow(tb, k)
		return fmt.Sprintf("INSERT INTO %s %s%s VALUES %s", tb, propCols[tb], g.overriding(tb), v)
	}
	if g.rng.Intn(3) == 0 && !g.childTouched(tb, k) {
		g.delete(tb, k)
		g.eligible["c"] = slices.DeleteFunc(g.eligible["c"], func(c string) bool { return g.keys["c"][c].cTouched })
		return fmt.Sprintf("DELETE FROM %s WHERE %s", tb, g.where(tb, []string{k}))
	}
	g.touch(tb, k)
	return fmt.Sprintf("UPDATE %s SET v = v + %d WHERE %s", tb, g.val(), g.where(tb, []string{k}))
}

// propCaseData is one generated case.
type propCaseData struct {
	sc       scenario
	conflict bool
	opts     undo.Options
}

func genPropCase(seed int64, version int) (propCaseData, *propGen) {
	g := newPropGen(seed, version >= 150000)
	sc := scenario{Setup: g.setup(), Target: sessTarget}
	others := 1 + g.rng.Intn(3)
	other := func() int { return sessFirstOther + g.rng.Intn(others) }
	add := func(s int, sql string) {
		if sql != "" {
			sc.Steps = append(sc.Steps, step{S: s, SQL: sql})
		}
	}
	g.role = roleBefore
	for range g.rng.Intn(5) {
		add(other(), g.one())
	}
	nT, nO := 2+g.rng.Intn(6), g.rng.Intn(7)
	for nT > 0 || nO > 0 {
		if nT > 0 && (nO == 0 || g.rng.Intn(nT+nO) < nT) {
			g.role = roleTarget
			add(sessTarget, g.script())
			nT--
		} else {
			g.role = roleOther
			add(other(), g.one())
			nO--
		}
	}
	if !slices.ContainsFunc(sc.Steps, func(s step) bool { return s.S == sessTarget }) {
		g.role = roleTarget
		for range 10 {
			if s := g.insert(g.present()[g.rng.Intn(len(g.present()))]); s != "" {
				add(sessTarget, s)
				break
			}
		}
	}
	d := propCaseData{}
	if g.rng.Intn(5) < 2 {
		for _, tb := range g.present() {
			if !g.keyed(tb) {
				continue
			}
			for _, k := range g.order[tb] {
				if st := g.keys[tb][k]; st.tTouched && !st.tKeyMoved && (st.tFirst || st.exists) {
					g.eligible[tb] = append(g.eligible[tb], k)
				}
			}
		}
		nC, nO := 1+g.rng.Intn(3), g.rng.Intn(4)
		for nC > 0 || nO > 0 {
			if nC > 0 && (nO == 0 || g.rng.Intn(nC+nO) < nC) {
				g.role = roleConflict
				if s := g.conflictStmt(); s != "" {
					add(sessConflict, s)
					d.conflict = true
				}
				nC--
			} else {
				g.role = roleOther
				add(other(), g.one())
				nO--
			}
		}
	}
	if !d.conflict {
		switch g.rng.Intn(4) {
		case 1:
			d.opts.OnConflict = undo.Skip
		case 2:
			d.opts.OnConflict = undo.Merge
		case 3:
			d.opts.AlwaysPlan = true
		}
	}
	d.sc = sc
	d.sc.Apps = []string{"target", "conflicter"}
	return d, g
}

func (d propCaseData) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "-- setup (before tracking every table)\n%s", d.sc.Setup)
	fmt.Fprintf(&b, "-- steps (session 0 is undone; session 1 is the conflicter)\n")
	for _, s := range d.sc.Steps {
		fmt.Fprintf(&b, "-- s%d\n%s;\n", s.S, s.SQL)
	}
	fmt.Fprintf(&b, "-- conflict case: %v; options %+v\n", d.conflict, d.opts)
	return b.String()
}

// propCase runs one case and says which kind it was: "undo" (no
// conflict), "skip" (conflicts: refused, skipped, redone), "skip-left"
// (refused, skipped, the rest undone) or "skip-fk" (refused, skip refused
// for the foreign key, the conflicter and the target undone).
func propCase(t *testing.T, seed int64, version int) string {
	d, g := genPropCase(seed, version)
	t.Cleanup(func() {
		if t.Failed() {
			known := ""
			if g.known {
				known = " -prop.known-bugs"
			}
			t.Logf("seed %d (server %d) failed; reproduce with -run 'TestProperty' -prop.seed %d -prop.cases 1%s\n%s", seed, version, seed, known, d)
		}
	})
	if !d.conflict {
		sc := d.sc
		sc.Opts = d.opts
		checkUndo(t, sc)
		return "undo"
	}
	return propConflictCase(t, g, d, seed%2 == 0)
}

// keyedRow is a row of a keyed table with where it lives.
type keyedRow struct{ leaf, row, pid string }

var propKeyExpr = map[string]string{"p": "x.id::text", "c": "x.id::text", "ck": "'(' || x.a || ',' || x.b || ')'", "tk": "x.k", "pt": "x.k::text"}

// keyedRows reads a keyed table's rows by key (the snapshot's settings
// are pinned on w.Conn by w.tables()).
func keyedRows(t *testing.T, w *world, tb string) map[string]keyedRow {
	t.Helper()
	pid := "''"
	if tb == "c" {
		pid = "x.pid::text"
	}
	rows, err := w.Conn.Query(ctxT(t), fmt.Sprintf(`
		SELECT %s, (SELECT quote_ident(n.nspname) || '.' || quote_ident(r.relname) FROM pg_class r JOIN pg_namespace n ON n.oid = r.relnamespace WHERE r.oid = x.tableoid),
		       x::text, %s FROM public.%s x`, propKeyExpr[tb], pid, tb))
	require.NoError(t, err)
	out := map[string]keyedRow{}
	for rows.Next() {
		var k string
		var r keyedRow
		require.NoError(t, rows.Scan(&k, &r.leaf, &r.row, &r.pid))
		_, dup := out[k]
		require.False(t, dup, "%s: key %s twice", tb, k)
		out[k] = r
	}
	require.NoError(t, rows.Err())
	return out
}

var propLeaves = map[string][]string{"pt": {"public.pt_0", "public.pt_1", "public.pt_2"}}

// propConflictCase checks a case with conflicts: refused by default, the
// oracle under skip, then either the redo (undo of the skip undo) or, with
// left, the rest: undoing the conflicter and then what is left of the
// target gives B (neither ran). When skip must refuse for the foreign key,
// the rest is undoing the conflicter and then the whole target.
func propConflictCase(t *testing.T, g *propGen, d propCaseData, left bool) string {
	sc := d.sc
	a := newWorld(t, sc, nil)
	a.run(sc.Steps, nil)
	pre := a.tables()
	preKeyed := map[string]map[string]keyedRow{}
	for _, tb := range g.present() {
		if g.keyed(tb) {
			preKeyed[tb] = keyedRows(t, a, tb)
		}
	}
	undos := queryOne[int64](t, a.Conn, `SELECT count(*) FROM pgundo.undo`)
	sel := undo.Selection{Sessions: []string{a.IDs[sessTarget]}}

	// Default mode: refused, nothing changed.
	_, err := undo.Apply(ctxT(t), a.undoConn(), sel, undo.Options{}, nil)
	var ce *undo.ConflictError
	require.ErrorAs(t, err, &ce, "the default mode must refuse an undo with conflicts")
	requireSameTables(t, pre, a.tables(), "after the refused undo vs before it")
	require.Equal(t, undos, queryOne[int64](t, a.Conn, `SELECT count(*) FROM pgundo.undo`), "undos recorded after a refused undo")

	// The oracle for skip: per key, the row as the conflicter left it
	// (pre) where it touched it, else as in B (neither target nor
	// conflicter ran); tables the conflicter did not touch as in B.
	b := newWorld(t, sc, nil)
	b.run(sc.Steps, func(s step) bool { return s.S == sessTarget || s.S == sessConflict })
	want := b.tables()
	merged := map[string]map[string]keyedRow{}
	for _, tb := range g.present() {
		if !g.keyed(tb) {
			continue // the conflicter leaves it alone: as in B
		}
		bk := keyedRows(t, b, tb)
		m := map[string]keyedRow{}
		for _, k := range g.order[tb] {
			src := bk
			if g.keys[tb][k].cTouched {
				src = preKeyed[tb]
			}
			if r, ok := src[k]; ok {
				m[k] = r
			}
		}
		for k := range bk {
			require.Contains(t, g.keys[tb], k, "%s: key %s outside the model in B", tb, k)
		}
		merged[tb] = m
		leaves := propLeaves[tb]
		if leaves == nil {
			leaves = []string{"public." + tb}
		}
		for _, l := range leaves {
			want[l] = []string{}
		}
		for _, r := range m {
			want[r.leaf] = append(want[r.leaf], r.row)
		}
		for _, l := range leaves {
			slices.Sort(want[l])
		}
	}
	fkBroken := ""
	if g.has["c"] {
		for k, r := range merged["c"] {
			if _, ok := merged["p"][r.pid]; !ok {
				fkBroken = fmt.Sprintf("c %s -> p %s", k, r.pid)
			}
		}
	}

	plan, err := undo.Apply(ctxT(t), a.undoConn(), sel, undo.Options{OnConflict: undo.Skip}, nil)
	if fkBroken != "" {
		require.ErrorIs(t, err, undo.ErrForeignKey, "skip would leave %s: the undo must refuse", fkBroken)
		requireSameTables(t, pre, a.tables(), "after the undo refused for the foreign key vs before it")
		propUndoRest(t, a, b, sel)
		return "skip-fk"
	}
	require.NoError(t, err, "undo with skip")
	require.NotEmpty(t, plan.Conflicts, "skip: the conflicts reported")
	requireSameTables(t, want, a.tables(), "A after undo --on-conflict skip vs the oracle (rows the conflicter touched as they were, the rest as in B)")
	if left {
		propUndoRest(t, a, b, sel)
		return "skip-left"
	}

	if plan.RowsChanged == 0 {
		// Every row conflicted: the undo wrote nothing, so there is
		// nothing to redo (undoing it finds no changes).
		_, err = undo.Apply(ctxT(t), a.undoConn(), undo.Selection{Sessions: []string{plan.UndoSession}}, undo.Options{}, nil)
		var nf *undo.NotFoundError
		require.ErrorAs(t, err, &nf, "undo of an undo that wrote nothing")
		return "skip"
	}
	// Redo: the undo of the undo brings back the tables as before it.
	_, err = undo.Apply(ctxT(t), a.undoConn(), undo.Selection{Sessions: []string{plan.UndoSession}}, undo.Options{}, nil)
	require.NoError(t, err, "redo: undo of the undo %s", plan.UndoSession)
	requireSameTables(t, pre, a.tables(), "after the redo (undo of the skip undo) vs before the undo")
	return "skip"
}

// propUndoRest undoes the conflicter, then what is left of the target (sel),
// or both together where the first is refused for the foreign key: A must
// then equal B, where neither ran.
func propUndoRest(t *testing.T, a, b *world, sel undo.Selection) {
	t.Helper()
	_, err := undo.Apply(ctxT(t), a.undoConn(), undo.Selection{Sessions: []string{a.IDs[sessConflict]}}, undo.Options{}, nil)
	if errors.Is(err, undo.ErrForeignKey) {
		// Rows the skip put back reference rows the conflicter created
		// (it re-created a parent the target deleted): undoing the
		// conflicter alone is rightly refused; undo both together.
		both := undo.Selection{Sessions: append([]string{a.IDs[sessConflict]}, sel.Sessions...)}
		_, err = undo.Apply(ctxT(t), a.undoConn(), both, undo.Options{}, nil)
		require.NoError(t, err, "undo of the conflicter and what is left of the target together")
	} else {
		require.NoError(t, err, "undo of the conflicter")
		_, err = undo.Apply(ctxT(t), a.undoConn(), sel, undo.Options{}, nil)
		require.NoError(t, err, "undo of what is left of the target, after the conflicter's undo")
	}
	requireSameTables(t, b.tables(), a.tables(), "A after undoing the conflicter and the rest of the target vs B (neither ran)")
}

// childTouched says whether p row k has a child the conflicter changed
// (deleting k would change it a second time).
func (g *propGen) childTouched(tb, k string) bool {
	if tb != "p" {
		return false
	}
	id, _ := strconv.Atoi(k)
	for _, c := range g.order["c"] {
		if st := g.keys["c"][c]; st.exists && st.pid == id && st.cTouched {
			return true
		}
	}
	return false
}

// keyed says whether table tb has a primary key.
func (g *propGen) keyed(tb string) bool { return tb != "kl" && !(tb == "pt" && g.ptNoKey) }
