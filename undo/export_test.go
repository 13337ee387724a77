package undo

// LiteralIDs exposes literalIDs to the external tests: sessions of more
// statements on a table than this take the fast path's other form.
const LiteralIDs = literalIDs

// AnnounceRows exposes announceRows: the fewest changes of a table for which
// the fast path announces its writes.
const AnnounceRows = announceRows
