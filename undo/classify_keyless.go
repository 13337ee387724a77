package undo

import (
	"context"
	"fmt"
	"sort"

	"github.com/jackc/pgx/v5"
)

// Step 3, classify, continued: skipping conflicts in a table without a
// primary key (planTable calls skipKeyless under --on-conflict skip).
//
// Without a key the plan nets row images as multisets: the rows the sessions
// left (to delete) and the rows they replaced (to insert back). That is
// exact when every row is undone, but a skipped conflict must leave a whole
// row alone: not delete the image the sessions left (someone changed it
// since) and not insert back the image it replaced either, or the table
// ends up with the restored row beside the changed one. The multiset no
// longer says which replaced image belongs to which left image; the log
// does: each change row pairs a row's image before and after one statement.
//
// skipKeyless follows those pairs through the selected statements, in
// order, into units: one per row the sessions touched, with the image
// before their first change (orig, none for a row they inserted) and the
// image they left (final, none for a row they deleted). Within a statement
// every old image is taken before any new one is made (a statement sees
// the table as it was before it). A later statement's old image is matched
// to an equal image the sessions made earlier where there is one; but an
// equal row that was there before looks the same, so such a unit is marked
// ambiguous: skipping it would be a guess, and is refused. So is skipping
// some but not all of several equal left images that replaced different
// rows. Otherwise conflicting units are skipped, and the rest re-netted and
// re-checked until every deletion finds its rows.
//
// Only plans with conflicts in skip mode take this path; it holds the
// table's selected change rows in memory.

// keylessUnit is one row the sessions touched: its image before them and
// the image they left; nil for none.
type keylessUnit struct {
	orig, final *string
	ambiguous   bool
	skipped     bool
}

// keylessUnits walks the selected change rows of t in statement order.
func (r *runner) keylessUnits(ctx context.Context, t *table) ([]*keylessUnit, error) {
	var units []*keylessUnit
	live := map[string][]*keylessUnit{} // image the sessions made -> units now showing it
	// Rows earlier undos left (pgundo_left) come first, as they were left.
	left, err := r.tx.Query(ctx, `SELECT old, new FROM pgundo_left WHERE relid = $1`, t.oid)
	if err != nil {
		return nil, fmt.Errorf("undo %s: read the rows earlier undos left: %w", t.name, err)
	}
	for left.Next() {
		u := &keylessUnit{}
		if err := left.Scan(&u.orig, &u.final); err != nil {
			left.Close()
			return nil, err
		}
		units = append(units, u)
		if u.final != nil {
			live[*u.final] = append(live[*u.final], u)
		}
	}
	left.Close()
	if err := left.Err(); err != nil {
		return nil, err
	}
	rows, err := r.tx.Query(ctx, `
		SELECT c.stmt_id, c.old, c.new
		  FROM pgundo_sel s JOIN pgundo.change c ON c.stmt_id = s.id
		 WHERE s.root = $1 AND c.stmt_id BETWEEN $2 AND $3
		 ORDER BY c.stmt_id`, t.oid, r.minStmt, r.maxStmt)
	if err != nil {
		return nil, fmt.Errorf("undo %s: read the log: %w", t.name, err)
	}
	defer rows.Close()
	type pair struct {
		u   *keylessUnit
		new *string
	}
	var stmt int64 = -1
	var pending []pair
	flush := func() {
		for _, p := range pending {
			u := p.u
			if u == nil {
				u = &keylessUnit{}
				units = append(units, u)
			}
			u.final = p.new
			if p.new != nil {
				live[*p.new] = append(live[*p.new], u)
			}
		}
		pending = pending[:0]
	}
	for rows.Next() {
		var id int64
		var old, new *string
		if err := rows.Scan(&id, &old, &new); err != nil {
			return nil, err
		}
		if id != stmt {
			flush()
			stmt = id
		}
		var u *keylessUnit
		if old != nil {
			if us := live[*old]; len(us) > 0 {
				u = us[len(us)-1]
				live[*old] = us[:len(us)-1]
				u.ambiguous = true
			} else {
				u = &keylessUnit{orig: old}
				units = append(units, u)
			}
		}
		pending = append(pending, pair{u, new})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("undo %s: read the log: %w", t.name, err)
	}
	flush()
	return units, nil
}

// skipKeyless replaces t's plan (pgundo_c, classified by classifyKeyless,
// with conflicts) by one that skips whole rows; see above.
func (r *runner) skipKeyless(ctx context.Context, t *table) error {
	units, err := r.keylessUnits(ctx, t)
	if err != nil {
		return err
	}
	have, err := r.keylessHave(ctx, t, units)
	if err != nil {
		return err
	}
	for {
		net := map[string]int64{}
		byFinal := map[string][]*keylessUnit{}
		for _, u := range units {
			if u.skipped {
				continue
			}
			if u.final != nil {
				net[*u.final]++
				byFinal[*u.final] = append(byFinal[*u.final], u)
			}
			if u.orig != nil {
				net[*u.orig]--
			}
		}
		short := []string{}
		for img, n := range net {
			if n > 0 && have[img] < n {
				short = append(short, img)
			}
		}
		if len(short) == 0 {
			return r.writeKeylessPlan(ctx, t, units, net, have)
		}
		sort.Strings(short)
		for _, img := range short {
			cands := byFinal[img]
			s := net[img] - have[img]
			origs := map[string]bool{}
			for _, u := range cands {
				origs[imgOr(u.orig, "(inserted)")] = true
			}
			for _, u := range cands[:s] {
				if u.ambiguous || (len(origs) > 1 && int(s) < len(cands)) {
					return &RefusedError{Kind: ErrAmbiguousRow, Detail: fmt.Sprintf(
						"undo %[1]s: %[1]s has no primary key, and the row %[2]s that the sessions left was changed or deleted since; "+
							"the log cannot tell which row that was (the sessions changed an equal row more than once, or left several equal rows that were different rows before), "+
							"so skipping it would be a guess; nothing was changed. Resolve that row by hand, or undo without --on-conflict skip to see every conflict",
						t.name, img)}
				}
				u.skipped = true
			}
		}
	}
}

func imgOr(p *string, none string) string {
	if p == nil {
		return none
	}
	return *p
}

// keylessHave counts, per image a unit shows, the equal rows the table
// holds now.
func (r *runner) keylessHave(ctx context.Context, t *table, units []*keylessUnit) (map[string]int64, error) {
	seen := map[string]bool{}
	var imgs []string
	for _, u := range units {
		for _, p := range []*string{u.orig, u.final} {
			if p != nil && !seen[*p] {
				seen[*p] = true
				imgs = append(imgs, *p)
			}
		}
	}
	have := map[string]int64{}
	rows, err := r.tx.Query(ctx, fmt.Sprintf(`
		SELECT %[2]s::text, count(*) FROM %[1]s %[2]s WHERE %[2]s::text = ANY ($1::text[]) GROUP BY 1`, t.ident, t.cur), imgs)
	if err != nil {
		return nil, fmt.Errorf("undo %s: count current rows: %w", t.name, err)
	}
	defer rows.Close()
	for rows.Next() {
		var img string
		var n int64
		if err := rows.Scan(&img, &n); err != nil {
			return nil, err
		}
		have[img] = n
	}
	return have, rows.Err()
}

// writeKeylessPlan refills pgundo_c from the units left to undo (net
// counts, D or I) and the skipped ones (S, one row per image they left).
func (r *runner) writeKeylessPlan(ctx context.Context, t *table, units []*keylessUnit, net, have map[string]int64) error {
	if _, err := r.tx.Exec(ctx, `TRUNCATE pgundo_c`); err != nil {
		return err
	}
	type pair struct{ final, orig string }
	skipped := map[pair]int64{}
	noOrig := map[pair]bool{}
	for _, u := range units {
		if u.skipped && u.final != nil {
			k := pair{*u.final, imgOr(u.orig, "")}
			skipped[k]++
			noOrig[k] = u.orig == nil
		}
	}
	var plan [][]any
	for img, n := range net {
		switch {
		case n > 0:
			plan = append(plan, []any{img, n, have[img], "D", nil})
		case n < 0:
			plan = append(plan, []any{img, n, have[img], "I", nil})
		}
	}
	for i := range plan {
		plan[i] = append(plan[i], nil)
	}
	for k, n := range skipped {
		reason := "changed or deleted since"
		if h := have[k.final]; h > 0 {
			reason = fmt.Sprintf("only %d of the %d equal rows left remain", h, h+n)
		}
		var orig any = k.orig
		if noOrig[k] {
			orig = nil
		}
		plan = append(plan, []any{k.final, n, have[k.final], "S", reason, orig})
	}
	_, err := r.tx.CopyFrom(ctx, pgx.Identifier{"pgundo_c"}, []string{"pgundo_img", "cnt", "have", "action", "reason", "orig"}, pgx.CopyFromRows(plan))
	if err != nil {
		return fmt.Errorf("undo %s: write the plan: %w", t.name, err)
	}
	return nil
}

// refuseKeylessMerge is merge's answer to a conflict in a table without a
// primary key.
func refuseKeylessMerge(t *table, n int64, example string) error {
	more := ""
	if n > 1 {
		more = fmt.Sprintf(" and %d more", n-1)
	}
	return &RefusedError{Kind: ErrNoKeyToMerge, Detail: fmt.Sprintf(
		"undo %[1]s: %[1]s has no primary key, so --on-conflict merge cannot tell which live row to merge the row %[2]s%[3]s into (changed or deleted since); nothing was changed. "+
			"Use --on-conflict skip to leave those rows as they are and undo the rest, or run without --on-conflict to list the conflicts",
		t.name, example, more)}
}
