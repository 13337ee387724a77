package undo

// LiteralIDs exposes literalIDs to the external tests: sessions of more
// statements on a table than this take the fast path's other form.
const LiteralIDs = literalIDs
