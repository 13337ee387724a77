package history

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// ParseImage splits a row image (the row's text form, as record_out writes
// it: "(1,,\"a b\")") into its fields, in column order. A nil field is SQL
// NULL; an empty string is an empty value. It follows record_in's rules:
// fields are separated by commas, double quotes may surround any part of a
// field, "" inside quotes and a backslash anywhere escape the next character.
func ParseImage(img string) ([]*string, error) {
	if len(img) < 2 || img[0] != '(' || img[len(img)-1] != ')' {
		return nil, fmt.Errorf("not a row image: %.40q", img)
	}
	body := img[1 : len(img)-1]
	var fields []*string
	var b strings.Builder
	quoted, inQuotes, touched := false, false, false
	flush := func() {
		if !touched && !quoted {
			fields = append(fields, nil)
		} else {
			s := b.String()
			fields = append(fields, &s)
		}
		b.Reset()
		quoted, touched = false, false
	}
	for i := 0; i < len(body); i++ {
		ch := body[i]
		switch {
		case ch == '\\':
			if i+1 >= len(body) {
				return nil, fmt.Errorf("row image ends in a backslash: %.40q", img)
			}
			i++
			b.WriteByte(body[i])
			touched = true
		case inQuotes && ch == '"':
			if i+1 < len(body) && body[i+1] == '"' {
				b.WriteByte('"')
				i++
			} else {
				inQuotes = false
			}
		case ch == '"':
			inQuotes, quoted = true, true
		case !inQuotes && ch == ',':
			flush()
		default:
			b.WriteByte(ch)
			touched = true
		}
	}
	if inQuotes {
		return nil, fmt.Errorf("row image has an unterminated quote: %.40q", img)
	}
	flush()
	return fields, nil
}

// shapes knows the columns of captured tables as they were when each
// statement was logged (pgundo.shape), to name the fields of row images.
type shapes struct {
	db    DBTX
	byRel map[uint32][]shapeAt
}

type shapeAt struct {
	since   int64
	columns []string
}

func newShapes(db DBTX) *shapes { return &shapes{db: db, byRel: map[uint32][]shapeAt{}} }

// columns returns the column names of table relid for statement stmtID: the
// newest shape recorded before it, else the table's columns now.
func (s *shapes) columns(ctx context.Context, relid uint32, stmtID int64) ([]string, error) {
	list, ok := s.byRel[relid]
	if !ok {
		rows, err := s.db.Query(ctx, `
			SELECT since_stmt, columns::text[] FROM pgundo.shape WHERE relid = $1
			UNION ALL
			SELECT -1, coalesce(array_agg(attname::text ORDER BY attnum), '{}') FROM pg_attribute
			 WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped HAVING count(*) > 0
			ORDER BY 1`, relid)
		if err != nil {
			return nil, fmt.Errorf("read the columns of table %d: %w", relid, err)
		}
		for rows.Next() {
			var sa shapeAt
			if err := rows.Scan(&sa.since, &sa.columns); err != nil {
				rows.Close()
				return nil, err
			}
			list = append(list, sa)
		}
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("read the columns of table %d: %w", relid, err)
		}
		s.byRel[relid] = list
	}
	var best []string
	for _, sa := range list {
		if sa.since < stmtID {
			best = sa.columns
		}
	}
	if best == nil && len(list) > 0 {
		best = list[len(list)-1].columns
	}
	return best, nil
}

// errShape is returned when an image has a different number of fields than
// the table had columns.
var errShape = errors.New("the row image does not match the table's recorded columns")

// namedFields parses img and pairs its fields with cols.
func namedFields(img *string, cols []string) ([]*string, error) {
	if img == nil {
		return nil, nil
	}
	f, err := ParseImage(*img)
	if err != nil {
		return nil, err
	}
	if len(f) != len(cols) {
		return nil, errShape
	}
	return f, nil
}

// DiffImages is diffColumns, for readers of the views (pgundo.changes):
// cols are the table's column names in order.
func DiffImages(cols []string, old, new *string) []ColumnChange { return diffColumns(cols, old, new) }

// diffColumns compares two images field by field: for an update the columns
// whose value changed, for an insert or delete (one image nil) every column.
// When the images cannot be read against cols it returns nil.
func diffColumns(cols []string, old, new *string) []ColumnChange {
	of, err1 := namedFields(old, cols)
	nf, err2 := namedFields(new, cols)
	if err1 != nil || err2 != nil {
		return nil
	}
	out := []ColumnChange{}
	for i, c := range cols {
		var o, n *string
		if of != nil {
			o = of[i]
		}
		if nf != nil {
			n = nf[i]
		}
		if of != nil && nf != nil && eqPtr(o, n) {
			continue
		}
		out = append(out, ColumnChange{Column: c, Old: o, New: n})
	}
	return out
}

func eqPtr(a, b *string) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return *a == *b
}
