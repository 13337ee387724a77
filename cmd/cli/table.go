package cli

import (
	"bufio"
	"io"
	"slices"
	"strings"
	"unicode/utf8"

	"golang.org/x/term"
)

// tableBlock is how many rows a blockTable lays out at a time.
const tableBlock = 500

// blockTable lays out a streamed table for people: columns as wide as their
// widest value so far, two spaces apart, tableBlock rows at a time, so that
// a listing of millions of rows is aligned without being held in memory.
// The header comes first, and again above a block that needs wider columns
// than the rows before it. Cells must hold no ANSI colour codes (widths are
// counted in runes).
type blockTable struct {
	w    *bufio.Writer
	cols []string
	// block holds the rows waiting to be laid out; widths the column
	// widths printed so far (nil before the first block).
	block  [][]string
	widths []int
}

// add queues one row and lays out the block when it is full; it says
// whether it wrote a block.
func (t *blockTable) add(cells []string) bool {
	t.block = append(t.block, cells)
	if len(t.block) < tableBlock {
		return false
	}
	t.writeBlock()
	return true
}

// flush lays out the rows still waiting, and the header alone when no row
// came at all.
func (t *blockTable) flush() {
	if len(t.block) > 0 || t.widths == nil {
		t.writeBlock()
	}
}

func (t *blockTable) writeBlock() {
	need := make([]int, len(t.cols))
	for i, c := range t.cols {
		need[i] = utf8.RuneCountInString(c)
		if t.widths != nil {
			need[i] = max(need[i], t.widths[i])
		}
	}
	for _, cells := range t.block {
		for i, c := range cells {
			need[i] = max(need[i], utf8.RuneCountInString(c))
		}
	}
	if t.widths == nil || !slices.Equal(need, t.widths) {
		t.widths = need
		t.writeLine(t.cols)
	}
	for _, cells := range t.block {
		t.writeLine(cells)
	}
	t.block = t.block[:0]
}

// writeLine writes one row, padded to the widths, with no padding after its
// last non-empty cell.
func (t *blockTable) writeLine(cells []string) {
	last := len(cells) - 1
	for last > 0 && cells[last] == "" {
		last--
	}
	for i := 0; i <= last; i++ {
		t.w.WriteString(cells[i])
		if i < last {
			t.w.WriteString(strings.Repeat(" ", t.widths[i]-utf8.RuneCountInString(cells[i])+2))
		}
	}
	t.w.WriteByte('\n')
}

// termWidth returns the width in columns of the terminal w writes to, or 0
// (no limit) when w is not a terminal: output piped to a file or another
// program is never shortened.
func (g *globals) termWidth(w io.Writer) int {
	f, ok := fileOf(w)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return 0
	}
	width, _, err := term.GetSize(int(f.Fd()))
	if err != nil {
		return 0
	}
	return width
}
