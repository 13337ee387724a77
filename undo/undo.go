// Package undo plans and applies the undo of one or more recorded sessions.
//
// Semantics (see PRODUCT.md, "What undo a session means"): every row the
// selected sessions changed is put back exactly as it was before their first
// change, and nothing else is touched. A row whose current state is not what
// the sessions left is a conflict: by default the whole undo is refused.
//
// How, top to bottom, one file per step (run.go drives them, in one
// transaction of set-based statements fed from the log through temporary
// tables; nothing is loaded into Go memory but a keyless skip's rows):
//
//  1. Select and net (select.go): the selected statements go into pgundo_sel,
//     less those earlier undos undid, plus the rows they left. The log
//     holds, per changed row, the full row image before and after each
//     statement, as the row's text form. Summed per table, each image
//     counts +1 as an after image and -1 as a before image; intermediate
//     states cancel, leaving in pgundo_net the rows the sessions added
//     (positive) and removed (negative). Only the planned path nets.
//  2. The affected tables (tables.go): columns, key and partitions; refused
//     when the columns changed since capture. Application triggers and FK
//     actions are kept from firing with session_replication_role =
//     replica; pgundo's own capture triggers fire ALWAYS, so the undo is
//     itself recorded as a session.
//  3. Classify (classify.go, classify_keyless.go; planned path): with a
//     primary key the net images pair up by key into restores (UPDATE
//     back), deletions and re-insertions; without one they are multisets
//     of whole rows. Rows changed since are conflicts, refused, skipped or
//     merged (Options.OnConflict).
//  4. Apply, straight from the log (apply_straight.go) where every row was
//     changed once, tried first in a savepoint and needing neither net nor
//     classes; else planned row by row (apply_planned.go).
//  5. Check (check.go): the rows written read back as they were, and no
//     foreign key is broken.
//  6. Record (record.go): the undo's session is linked to what it undid in
//     pgundo.undo, then the transaction commits (Apply) or rolls back
//     (MakePlan, the dry run).
//
// WriteScript (script.go) writes the planned path out as a psql script
// instead. Every SQL builder lives in sqlbuild.go.
//
// The package never prints: it reports progress through Options.Progress.
package undo

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/pgundo/pgundo/internal/timefmt"
)

// ConflictMode says what to do with conflicting rows.
type ConflictMode string

// Conflict modes.
const (
	// Refuse changes nothing when any row conflicts (the default).
	Refuse ConflictMode = "refuse"
	// Skip undoes every row that does not conflict and reports the others.
	Skip ConflictMode = "skip"
	// Merge restores, column by column, only values still as the sessions
	// left them, keeping later edits of other columns of the same row.
	Merge ConflictMode = "merge"
)

// ParseConflictMode reads a --on-conflict value.
func ParseConflictMode(s string) (ConflictMode, error) {
	switch ConflictMode(s) {
	case "", Refuse:
		return Refuse, nil
	case Skip, Merge:
		return ConflictMode(s), nil
	}
	return "", fmt.Errorf("unknown conflict mode %q: use refuse, skip or merge", s)
}

// DefaultWorkMem is the work_mem an undo's transaction uses unless
// Options.WorkMem says otherwise: enough to keep a million-row session's
// joins in memory.
const DefaultWorkMem = "256MB"

// Selection chooses the sessions to undo. Sessions names them by id; the
// other fields select every session with at least one change matching all
// the set ones. At least one field must be set.
type Selection struct {
	Sessions []string
	// TxIDs selects the sessions of these transactions (xid8 values), and
	// only the changes made in those transactions.
	TxIDs []uint64
	Tag   string
	App   string
	User  string
	// Since and Until bound the time of the changes to undo (with App,
	// User or Tag).
	Since, Until *time.Time
}

// Empty reports whether nothing is selected.
func (s Selection) Empty() bool {
	return len(s.Sessions) == 0 && len(s.TxIDs) == 0 && s.Tag == "" && s.App == "" && s.User == ""
}

// Options tune an undo. The zero value refuses on conflict, applies, and
// reports no progress.
type Options struct {
	// OnConflict is Refuse (default), Skip or Merge.
	OnConflict ConflictMode
	// WorkMem is the work_mem the undo's transaction uses for its joins and
	// groupings; "" means DefaultWorkMem. The statements of an undo
	// straight from the log hash and sort nothing and run with 4MB
	// whatever this says (see streamWorkMem in apply_straight.go).
	WorkMem string
	// Progress, when set, receives one line per step (table planned,
	// table applied). It is called from the goroutine running the undo.
	Progress func(msg string)
	// Step, when set, receives the same steps as numbers, for a progress
	// bar: each table's rows to write once they are counted (Done 0), then
	// again once they are written (Done = Planned), in the undo's
	// transaction (a dry run rolls them back). Called from the goroutine
	// running the undo. Default nil.
	Step func(TableProgress)
	// AlwaysPlan makes Apply plan every row (net the images, classify,
	// write, check) even where the fast path would undo the sessions
	// straight from the log (see apply_straight.go). The result is the
	// same; default false. For comparisons and tests.
	AlwaysPlan bool
}

// TableProgress is how far an undo is with one table (see Options.Step).
type TableProgress struct {
	// Table is the schema-qualified table, as in TablePlan.
	Table string
	// Planned counts the rows to write; Done those written so far.
	Planned, Done int64
}

// TablePlan is what the undo does to one table.
type TablePlan struct {
	// Table is the schema-qualified table (a partitioned table stands for
	// all of its partitions).
	Table string `json:"table"`
	// Restore counts rows updated back to their earlier values, Reinsert rows
	// put back after the sessions deleted them, Delete rows the sessions
	// created that go away.
	Restore  int64 `json:"restore"`
	Reinsert int64 `json:"reinsert"`
	Delete   int64 `json:"delete"`
	// Merged counts rows restored column by column (--on-conflict merge).
	Merged int64 `json:"merged"`
	// Skipped counts conflicting rows left as they are (skip, merge).
	Skipped int64 `json:"skipped"`
	// KeyColumns is the primary key used to match rows; empty when the
	// table has none and rows are matched by their whole value.
	KeyColumns []string `json:"key_columns"`
}

// Conflict is a row whose current state is not what the sessions left.
type Conflict struct {
	Table string `json:"table"`
	// Key names the row: primary-key columns and values, or the whole row
	// for a table without a primary key.
	Key string `json:"key"`
	// Reason says how it differs: changed since, deleted since, re-created
	// since, changed in between the sessions' own changes.
	Reason string `json:"reason"`
	// Columns are the columns whose current value differs from what the
	// sessions left (for a changed row).
	Columns []string `json:"columns,omitempty"`
	// ChangedBy and ChangedAt name the latest other session that changed
	// the row since, from the log, when it is there.
	ChangedBy *string    `json:"changed_by"`
	ChangedAt *time.Time `json:"changed_at"`
	// Skipped is true when the conflict was left alone (skip, merge).
	Skipped bool `json:"skipped"`
}

// KeptColumn is one column that merge left alone because it was changed
// since.
type KeptColumn struct {
	Table  string `json:"table"`
	Key    string `json:"key"`
	Column string `json:"column"`
}

// Plan is the undo's plan, and after Apply also its result.
type Plan struct {
	// Sessions are the session ids being undone.
	Sessions []string `json:"sessions"`
	// Changes is the number of logged row changes of those sessions.
	Changes int64 `json:"changes"`
	// Tables is the work per table, in name order.
	Tables []TablePlan `json:"tables"`
	// Conflicts lists conflicting rows (all of them when refusing).
	Conflicts []Conflict `json:"conflicts"`
	// Kept lists columns merge left alone.
	Kept []KeptColumn `json:"kept_columns"`
	// Applied is true once the undo committed.
	Applied bool `json:"applied"`
	// UndoSession is the session id the undo was recorded under.
	UndoSession string `json:"undo_session,omitempty"`
	// RowsChanged totals the rows the undo wrote.
	RowsChanged int64 `json:"rows_changed"`
}

// ConflictError is returned when conflicts refuse the undo; nothing was
// changed.
type ConflictError struct {
	Plan *Plan
}

func (e *ConflictError) Error() string {
	n := len(e.Plan.Conflicts)
	var b strings.Builder
	fmt.Fprintf(&b, "undo of %s refused: %d conflict", strings.Join(e.Plan.Sessions, ", "), n)
	if n != 1 {
		b.WriteString("s")
	}
	b.WriteString(" (rows changed since by someone else):")
	for i, c := range e.Plan.Conflicts {
		if i == 10 {
			fmt.Fprintf(&b, "\n  ... and %d more (--json lists all)", n-10)
			break
		}
		b.WriteString("\n  ")
		b.WriteString(c.String())
	}
	b.WriteString("\nnothing was changed; undo the later sessions first, or use --on-conflict skip (undo the rest) or --on-conflict merge (keep later column edits)")
	return b.String()
}

// String renders a conflict on one line.
func (c Conflict) String() string {
	s := fmt.Sprintf("conflict: %s %s: %s", c.Table, c.Key, c.Reason)
	if len(c.Columns) > 0 {
		s += " (columns " + strings.Join(c.Columns, ", ") + ")"
	}
	if c.ChangedBy != nil {
		s += " by session " + *c.ChangedBy
		if c.ChangedAt != nil {
			s += " at " + timefmt.Format(*c.ChangedAt)
		}
	}
	return s
}

// Errors for selections that cannot be undone.
var (
	// ErrNothingSelected: the selection matched no logged change.
	ErrNothingSelected = errors.New("no logged changes match")
	// ErrAlreadyUndone: everything selected was undone before.
	ErrAlreadyUndone = errors.New("already undone")
	// ErrSchemaChanged: a table's columns changed since capture.
	ErrSchemaChanged = errors.New("table changed since capture")
	// ErrPlanChanged: the data changed between the shown plan and the apply.
	ErrPlanChanged = errors.New("the data changed since the plan was made")
	// ErrReplicaRole: the role may not set session_replication_role.
	ErrReplicaRole = errors.New("cannot keep application triggers from firing")
	// ErrAlwaysTriggers: an application trigger on an affected table fires
	// even under session_replication_role = replica (ENABLE ALWAYS or
	// ENABLE REPLICA), so it would rewrite restored values or write
	// elsewhere.
	ErrAlwaysTriggers = errors.New("application triggers fire during the undo")
	// ErrPruned: a selected session lost some of its changes to pgundo prune.
	ErrPruned = errors.New("partly pruned")
	// ErrForeignKey: the undo would leave rows that reference rows it
	// removes, or restore rows whose referenced rows are gone.
	ErrForeignKey = errors.New("the undo would break a foreign key")
	// ErrNoKeyToMerge: --on-conflict merge met a conflicting row in a
	// table without a primary key, where no live row can be told to be
	// the one to merge into.
	ErrNoKeyToMerge = errors.New("cannot merge rows of a table without a primary key")
	// ErrAmbiguousRow: --on-conflict skip would have to skip a row of a
	// table without a primary key whose history the log cannot tell apart
	// from an equal row's, so which rows to leave would be a guess.
	ErrAmbiguousRow = errors.New("cannot tell equal rows apart")
	// ErrUndoneTogether: an earlier undo left rows (skipped conflicts) of
	// changes it undid together with changes not selected now.
	ErrUndoneTogether = errors.New("left by an undo of more changes")
)

// RefusedError wraps a refusal on purpose (already undone, schema changed,
// plan changed) with its detail; errors.Is matches the sentinel.
type RefusedError struct {
	Kind   error
	Detail string
}

func (e *RefusedError) Error() string { return e.Detail }
func (e *RefusedError) Unwrap() error { return e.Kind }
