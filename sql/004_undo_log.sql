-- pgundo undo's own log, version 4.
--
-- An undo that puts rows back straight from the log (undo's fast path)
-- already holds both images of every row it writes: the row as the sessions
-- left it (checked under lock before the write) and as it was before them
-- (checked after). It logs its statements itself, from those images, instead
-- of having capture print every row it wrote a second time and pair the
-- images up again: capture would write the same rows.
--
-- To keep capture from logging such a statement twice, the undo inserts its
-- own transaction id and the table it writes into pgundo.quiet (only
-- pgundo's owner can) and sets pgundo.quiet = 'on' around the statements it
-- logs itself; it deletes the row again right after them. Capture skips a
-- statement only when both hold for the table the statement names: the
-- setting alone, which any session can set, costs it one index probe and
-- changes nothing, and a write to another tracked table that those
-- statements cause (a CHECK constraint calling a function that writes, say)
-- is still captured.
--
-- tern runs this file through text/template: the capture functions are
-- templates in shared/capture_v1.sql (001's, with the quiet check); keep
-- other double braces out of it.

CREATE TABLE pgundo.quiet (
    xid   xid8 NOT NULL,
    relid oid NOT NULL,
    PRIMARY KEY (xid, relid)
);
COMMENT ON TABLE pgundo.quiet IS 'Transactions of undos in progress that log their own statements (pgundo undo fast path); empty at rest.';
REVOKE ALL ON pgundo.quiet FROM PUBLIC;

-- The capture functions of 001, unchanged but for the check at the top
-- (quiet_v4).

{{template "capture_one_side_v1" (dict "create" "CREATE OR REPLACE" "name" "insert" "op" "I" "rows" "pgundo_new" "side" "new" "quiet" true)}}

{{template "capture_one_side_v1" (dict "create" "CREATE OR REPLACE" "name" "delete" "op" "D" "rows" "pgundo_old" "side" "old" "quiet" true)}}

{{template "capture_update_v1" (dict "create" "CREATE OR REPLACE" "quiet" true)}}
