package history

// SetSummaryTailLimit sets the most statements above the summaries'
// watermark with which readers use them (0: never), and returns the
// previous limit.
func SetSummaryTailLimit(n int) int {
	old := summaryTailLimit
	summaryTailLimit = n
	return old
}

// SetAfterSummaryMark sets what runs right after a reader read the
// summaries' watermark (nil: nothing).
func SetAfterSummaryMark(f func()) {
	if f == nil {
		f = func() {}
	}
	afterSummaryMark = f
}
