package cli

import (
	"bufio"
	"io"
	"strings"
)

// streamWriter writes records as a query streams them, in one of the
// stream formats of log and asof: a JSON array, NDJSON, CSV with a header
// line, or an aligned table for people (blockTable). Each of the first ten
// records is flushed at once, then every batch records (and every table
// block), so that a reader of a pipe sees output while the query runs.
// Nothing is written before start: the first record, or end, calls it.
type streamWriter struct {
	w         *bufio.Writer
	format    string
	csvHeader []string
	tab       blockTable
	batch     int64
	// n counts the records written.
	n       int64
	started bool
}

func newStreamWriter(out io.Writer, format string, csvHeader, tableCols []string, batch int64) streamWriter {
	w := bufio.NewWriterSize(out, 64<<10)
	return streamWriter{w: w, format: format, csvHeader: csvHeader, tab: blockTable{w: w, cols: tableCols}, batch: batch}
}

// start writes what comes before the first record: a JSON array's bracket,
// a CSV header. The table format's header goes with the first block.
func (s *streamWriter) start() {
	if s.started {
		return
	}
	s.started = true
	switch s.format {
	case formatJSON:
		s.w.WriteString("[")
	case formatCSV:
		writeCSVLine(s.w, strPtrs(s.csvHeader))
	}
}

// record counts a record written and flushes as the type comment says.
func (s *streamWriter) record() error {
	s.n++
	if s.n <= 10 || s.n%s.batch == 0 {
		return s.flush()
	}
	return nil
}

// writeJSON writes one JSON value, written by value, as the next element of
// the array (json) or on a line of its own (ndjson).
func (s *streamWriter) writeJSON(value func(w *bufio.Writer) error) error {
	s.start()
	if s.format == formatJSON {
		if s.n > 0 {
			s.w.WriteString(",")
		}
		s.w.WriteString("\n  ")
	}
	if err := value(s.w); err != nil {
		return err
	}
	if s.format == formatNDJSON {
		s.w.WriteString("\n")
	}
	return s.record()
}

// writeCSV writes one CSV record (see writeCSVLine).
func (s *streamWriter) writeCSV(fields []*string) error {
	s.start()
	writeCSVLine(s.w, fields)
	return s.record()
}

// writeCells queues one line of the table format, flushing when a block was
// laid out.
func (s *streamWriter) writeCells(cells []string) error {
	s.start()
	s.n++
	if s.tab.add(cells) {
		return s.flush()
	}
	return nil
}

func (s *streamWriter) flush() error { return s.w.Flush() }

// end closes a JSON array and flushes. The table format's last block and
// trailer are the caller's, written before end.
func (s *streamWriter) end() error {
	s.start()
	if s.format == formatJSON {
		if s.n > 0 {
			s.w.WriteString("\n")
		}
		s.w.WriteString("]\n")
	}
	return s.flush()
}

func strPtrs(ss []string) []*string {
	out := make([]*string, len(ss))
	for i := range ss {
		out[i] = &ss[i]
	}
	return out
}

// writeCSVLine writes one CSV record as PostgreSQL's COPY ... CSV does: a nil
// field is empty, an empty string is "", and a field with a comma, a double
// quote or a line break is quoted with doubled quotes.
func writeCSVLine(w *bufio.Writer, fields []*string) {
	for i, f := range fields {
		if i > 0 {
			w.WriteByte(',')
		}
		if f == nil {
			continue
		}
		v := *f
		if v == "" || strings.ContainsAny(v, ",\"\r\n") || (len(fields) == 1 && v == `\.`) {
			w.WriteByte('"')
			w.WriteString(strings.ReplaceAll(v, `"`, `""`))
			w.WriteByte('"')
			continue
		}
		w.WriteString(v)
	}
	w.WriteByte('\n')
}
