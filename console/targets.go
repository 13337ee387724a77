package console

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	"github.com/pgundo/pgundo/undo"
)

// A plan page plans, and its Undo undoes, one target: a session (by id, as
// pgundo undo SESSION), every change carrying a tag (pgundo undo --tag), or
// one transaction (pgundo undo --tx). The undo package selects all three
// (undo.Selection); the console gives each the same plan page, script
// download and guarded Undo, at these addresses:
//
//	session  /plan/ID            /plan/ID/undo.sql            POST /undo/ID
//	tag      /plan?tag=TAG       /plan/undo.sql?tag=TAG       POST /undo?tag=TAG
//	tx       /plan?tx=XID        /plan/undo.sql?tx=XID        POST /undo?tx=XID

// Target kinds.
const (
	bySession = "session"
	byTag     = "tag"
	byTx      = "tx"
)

// target is what a plan page plans and an undo undoes.
type target struct {
	// Kind is bySession, byTag or byTx.
	Kind string
	// Value is the session id, the tag, or the transaction id (decimal).
	Value string
	xid   uint64
}

func sessionTarget(id string) target { return target{Kind: bySession, Value: id} }

// queryTarget reads the target of /plan, /plan/undo.sql and POST /undo
// from ?tag= or ?tx= (exactly one of them).
func queryTarget(r *http.Request) (target, error) {
	q := r.URL.Query()
	tag, tx := q.Get("tag"), q.Get("tx")
	switch {
	case q.Has("tag") && q.Has("tx"):
		return target{}, badRequest{errors.New("give a tag or a transaction (tx), not both")}
	case q.Has("tag"):
		if tag == "" {
			return target{}, badRequest{errors.New("an empty tag: give the tag whose changes to undo (the sessions page lists them)")}
		}
		return target{Kind: byTag, Value: tag}, nil
	case q.Has("tx"):
		x, err := strconv.ParseUint(tx, 10, 64)
		if err != nil {
			return target{}, badRequest{fmt.Errorf("tx %q: a transaction id is a number (the session page shows each change's xid)", tx)}
		}
		return target{Kind: byTx, Value: strconv.FormatUint(x, 10), xid: x}, nil
	}
	return target{}, badRequest{errors.New("say what to plan: /plan/SESSION, /plan?tag=TAG or /plan?tx=XID")}
}

// key identifies the target among the kept dry runs and running undos.
func (t target) key() string { return t.Kind + "\x00" + t.Value }

// selection is what the undo package selects for the target.
func (t target) selection() undo.Selection {
	switch t.Kind {
	case byTag:
		return undo.Selection{Tag: t.Value}
	case byTx:
		return undo.Selection{TxIDs: []uint64{t.xid}}
	}
	return undo.Selection{Sessions: []string{t.Value}}
}

// Label names the target in a sentence: session ID, tag "T", transaction X.
func (t target) Label() string {
	switch t.Kind {
	case byTag:
		return "tag " + strconv.Quote(t.Value)
	case byTx:
		return "transaction " + t.Value
	}
	return "session " + t.Value
}

// Noun is what the person types to confirm: the session id, the tag, the
// transaction id.
func (t target) Noun() string {
	switch t.Kind {
	case byTag:
		return "tag"
	case byTx:
		return "transaction id"
	}
	return "session id"
}

// Command is the pgundo command line that undoes the target.
func (t target) Command() string {
	switch t.Kind {
	case byTag:
		if strings.HasPrefix(t.Value, "-") {
			return "pgundo undo --tag=" + argQuote(t.Value)
		}
		return "pgundo undo --tag " + argQuote(t.Value)
	case byTx:
		return "pgundo undo --tx " + t.Value
	}
	return "pgundo undo " + t.Value
}

var plainArg = regexp.MustCompile(`^[A-Za-z0-9_.,:/=+@%-]+$`)

// argQuote quotes a command-line argument for a POSIX shell when it needs
// it.
func argQuote(s string) string {
	if plainArg.MatchString(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func (t target) query() string {
	return url.Values{t.Kind: {t.Value}}.Encode()
}

// PlanURL is the target's plan page.
func (t target) PlanURL() string {
	if t.Kind == bySession {
		return "/plan/" + url.PathEscape(t.Value)
	}
	return "/plan?" + t.query()
}

// SQLURL downloads the target's undo as a SQL script.
func (t target) SQLURL() string {
	if t.Kind == bySession {
		return t.PlanURL() + "/undo.sql"
	}
	return "/plan/undo.sql?" + t.query()
}

// UndoURL is where the Undo form posts.
func (t target) UndoURL() string {
	if t.Kind == bySession {
		return "/undo/" + url.PathEscape(t.Value)
	}
	return "/undo?" + t.query()
}

// BackURL and BackText lead back to where the target came from: the
// session, or the sessions with the tag.
func (t target) BackURL() string {
	switch t.Kind {
	case byTag:
		return link("/", "tag", t.Value)
	case byTx:
		return ""
	}
	return "/session/" + url.PathEscape(t.Value)
}

// BackText is the text of the link to BackURL.
func (t target) BackText() string {
	if t.Kind == byTag {
		return "the sessions with this tag"
	}
	return "back to the session"
}

// filename is the script's download name.
func (t target) filename() string {
	name := t.Value
	if t.Kind != bySession {
		name = t.Kind + "-" + name
	}
	return "pgundo-undo-" + safeName.ReplaceAllString(name, "_") + ".sql"
}

// typedMatches reports whether what was typed to confirm is the target
// (spaces around it aside, unless they are the tag's own).
func (t target) typedMatches(typed string) bool {
	return typed == t.Value || strings.TrimSpace(typed) == t.Value
}
