package rehearse

import (
	"fmt"
	"strings"
)

// Statement is one statement of a SQL script, as a rehearsal runs it.
type Statement struct {
	// Text is the statement from its first token to its end, without the
	// terminating semicolon; comments inside it are kept.
	Text string
	// Line is the 1-based line of the script where the statement starts.
	Line int
	// Words are the statement's first keywords and identifiers outside
	// strings, comments and parentheses, upper-cased (at most maxWords).
	Words []string
	// LastWord is its last such word, upper-cased.
	LastWord string
}

const maxWords = 16

// SyntaxError is a script that cannot be split: an unterminated quote or
// comment, or a psql meta-command.
type SyntaxError struct {
	// Line is the 1-based script line where the offending token starts.
	Line int
	// Msg says what is wrong, e.g. "unterminated string (opened with ')".
	Msg string
}

func (e *SyntaxError) Error() string { return fmt.Sprintf("line %d: %s", e.Line, e.Msg) }

// Split splits a SQL script into statements the way psql does:
// semicolons end statements except inside single-quoted strings (E'...' with
// backslash escapes, and plain ones too when standardStrings is false),
// double-quoted identifiers, dollar-quoted bodies ($$...$$, $tag$...$tag$),
// -- and nested /* */ comments, parentheses, and the BEGIN ... END body of
// CREATE [OR REPLACE] FUNCTION/PROCEDURE ... BEGIN ATOMIC. A backslash
// outside those is a psql meta-command, which a rehearsal cannot run: it is
// a *SyntaxError naming the line. Statements that are empty or only comments are
// dropped.
//
// Splitting here, rather than sending the whole script as one
// multi-statement query, is what lets Check refuse transaction control before
// anything runs, and name the failing statement and its line for errors that
// carry no position (constraint violations, errors raised in triggers).
func Split(src string, standardStrings bool) ([]Statement, error) {
	var out []Statement
	line := 1
	var (
		start      = -1 // byte offset of the current statement's first token
		startLine  int
		words      []string
		lastWord   string
		nwords     int
		parenDepth int
		beginDepth int
		isRoutine  bool // statement is CREATE [OR REPLACE] FUNCTION/PROCEDURE
	)
	begin := func(i int) {
		if start < 0 {
			start, startLine = i, line
		}
	}
	finish := func(end int) {
		if start >= 0 {
			out = append(out, Statement{Text: strings.TrimRight(src[start:end], " \t\r\n"), Line: startLine, Words: words, LastWord: lastWord})
		}
		start, words, lastWord, nwords, parenDepth, beginDepth, isRoutine = -1, nil, "", 0, 0, 0, false
	}
	// skipQuoted scans a quoted string or identifier opened at i (src[i] is
	// the quote) and returns the offset after its closing quote.
	skipQuoted := func(i int, q byte, backslash bool) (int, error) {
		open := line
		for j := i + 1; j < len(src); j++ {
			switch c := src[j]; {
			case c == '\n':
				line++
			case c == '\\' && backslash:
				if j+1 < len(src) && src[j+1] == '\n' {
					line++
				}
				j++
			case c == q:
				if j+1 < len(src) && src[j+1] == q {
					j++
					continue
				}
				return j + 1, nil
			}
		}
		what := "string"
		if q == '"' {
			what = "quoted identifier"
		}
		return 0, &SyntaxError{Line: open, Msg: fmt.Sprintf("unterminated %s (opened with %c)", what, q)}
	}
	for i := 0; i < len(src); {
		c := src[i]
		switch {
		case c == '\n':
			line++
			i++
		case c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v':
			i++
		case c == '-' && strings.HasPrefix(src[i:], "--"):
			for i < len(src) && src[i] != '\n' {
				i++
			}
		case c == '/' && strings.HasPrefix(src[i:], "/*"):
			open, depth := line, 0
			for {
				if i >= len(src) {
					return nil, &SyntaxError{Line: open, Msg: "unterminated /* comment"}
				}
				switch {
				case strings.HasPrefix(src[i:], "/*"):
					depth++
					i += 2
				case strings.HasPrefix(src[i:], "*/"):
					depth--
					i += 2
				default:
					if src[i] == '\n' {
						line++
					}
					i++
				}
				if depth == 0 {
					break
				}
			}
		case c == ';':
			if parenDepth == 0 && beginDepth == 0 {
				finish(i)
			}
			i++
		case c == '\\':
			end := i + 1
			for end < len(src) && isIdentChar(src[end]) {
				end++
			}
			return nil, &SyntaxError{Line: line, Msg: fmt.Sprintf("psql meta-command %s: try runs plain SQL only (remove it, or run the script under psql with pgundo run)", src[i:end])}
		case c == '\'':
			begin(i)
			backslash := !standardStrings
			if i > 0 && (src[i-1] == 'E' || src[i-1] == 'e') && (i < 2 || !isIdentChar(src[i-2])) {
				backslash = true
			}
			j, err := skipQuoted(i, '\'', backslash)
			if err != nil {
				return nil, err
			}
			i = j
		case c == '"':
			begin(i)
			j, err := skipQuoted(i, '"', false)
			if err != nil {
				return nil, err
			}
			i = j
		case c == '$':
			begin(i)
			tag, ok := dollarTag(src[i:])
			if !ok {
				i++ // a parameter ($1) or a lone $
				continue
			}
			open := line
			end := strings.Index(src[i+len(tag):], tag)
			if end < 0 {
				return nil, &SyntaxError{Line: open, Msg: fmt.Sprintf("unterminated dollar-quoted string (opened with %s)", tag)}
			}
			body := src[i : i+len(tag)+end+len(tag)]
			line += strings.Count(body, "\n")
			i += len(body)
		case c == '(' || c == '[':
			begin(i)
			parenDepth++
			i++
		case c == ')' || c == ']':
			begin(i)
			if parenDepth > 0 {
				parenDepth--
			}
			i++
		case isIdentStart(c):
			begin(i)
			j := i + 1
			for j < len(src) && (isIdentChar(src[j]) || src[j] == '$') {
				j++
			}
			w := strings.ToUpper(src[i:j])
			i = j
			if parenDepth > 0 {
				continue
			}
			nwords++
			lastWord = w
			if len(words) < maxWords {
				words = append(words, w)
			}
			// psql's heuristic for SQL-standard routine bodies: inside
			// CREATE [OR REPLACE] FUNCTION/PROCEDURE, BEGIN opens a block
			// that END closes (CASE too, once inside one), and semicolons
			// in it do not end the statement.
			if nwords == 3 || nwords == 5 {
				isRoutine = len(words) >= 2 && words[0] == "CREATE" &&
					(words[1] == "FUNCTION" || words[1] == "PROCEDURE" ||
						(len(words) >= 4 && words[1] == "OR" && words[2] == "REPLACE" && (words[3] == "FUNCTION" || words[3] == "PROCEDURE")))
			}
			if isRoutine {
				switch w {
				case "BEGIN":
					beginDepth++
				case "CASE":
					if beginDepth > 0 {
						beginDepth++
					}
				case "END":
					if beginDepth > 0 {
						beginDepth--
					}
				}
			}
		default:
			begin(i)
			i++
		}
	}
	finish(len(src))
	return out, nil
}

// dollarTag returns the opening dollar quote at the start of s ($$ or
// $tag$), if there is one.
func dollarTag(s string) (string, bool) {
	if len(s) < 2 || s[0] != '$' {
		return "", false
	}
	if s[1] == '$' {
		return "$$", true
	}
	if !isIdentStart(s[1]) {
		return "", false
	}
	for j := 2; j < len(s); j++ {
		switch {
		case s[j] == '$':
			return s[:j+1], true
		case !isIdentChar(s[j]):
			return "", false
		}
	}
	return "", false
}

func isIdentStart(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= 0x80
}

func isIdentChar(c byte) bool { return isIdentStart(c) || c >= '0' && c <= '9' }

// Refusal says why a rehearsal cannot run the statement inside its
// transaction, or "" when it can: transaction control, and what cannot run
// in a transaction block (VACUUM, CREATE INDEX CONCURRENTLY, ...) or needs
// psql (COPY FROM STDIN).
func (s Statement) Refusal() string {
	w := func(i int) string {
		if i < len(s.Words) {
			return s.Words[i]
		}
		return ""
	}
	has := func(word string) bool {
		for _, x := range s.Words {
			if x == word {
				return true
			}
		}
		return s.LastWord == word
	}
	const txControl = "try runs the whole script in one transaction of its own (rolled back, or committed with --commit); remove the script's transaction control"
	switch w(0) {
	case "BEGIN", "START", "COMMIT", "END", "ROLLBACK", "ABORT", "SAVEPOINT", "RELEASE":
		return w(0) + " manages transactions: " + txControl
	case "PREPARE":
		if w(1) == "TRANSACTION" {
			return "PREPARE TRANSACTION manages transactions: " + txControl
		}
	case "VACUUM":
		return "VACUUM cannot run inside a transaction block; run it on its own after the patch"
	case "ALTER":
		if w(1) == "SYSTEM" {
			return "ALTER SYSTEM cannot run inside a transaction block; run it on its own"
		}
		if w(1) == "TABLE" && s.LastWord == "CONCURRENTLY" && has("DETACH") {
			return "DETACH PARTITION ... CONCURRENTLY cannot run inside a transaction block; run it on its own"
		}
		if w(1) == "SUBSCRIPTION" {
			return "ALTER SUBSCRIPTION cannot be rehearsed inside a transaction; run it on its own"
		}
	case "CREATE", "DROP":
		switch w(1) {
		case "DATABASE", "TABLESPACE", "SUBSCRIPTION":
			return w(0) + " " + w(1) + " cannot run inside a transaction block; run it on its own"
		case "INDEX", "UNIQUE":
			if has("CONCURRENTLY") {
				return w(0) + " INDEX CONCURRENTLY cannot run inside a transaction block; run it on its own after the patch (or drop CONCURRENTLY to rehearse it)"
			}
		}
	case "REINDEX":
		if has("CONCURRENTLY") || w(1) == "SYSTEM" || w(1) == "DATABASE" {
			return "REINDEX " + w(1) + " cannot run inside a transaction block; run it on its own"
		}
	case "CLUSTER":
		if len(s.Words) == 1 {
			return "CLUSTER without a table cannot run inside a transaction block; name the table, or run it on its own"
		}
	case "DISCARD":
		if w(1) == "ALL" {
			return "DISCARD ALL cannot run inside a transaction block; remove it"
		}
	case "COPY":
		if has("STDIN") || has("STDOUT") {
			return "COPY ... FROM STDIN / TO STDOUT needs psql's data stream, which try does not provide; use INSERT ... VALUES, or run the script under psql with pgundo run"
		}
	}
	return ""
}

// Summary is the statement's first line, shortened to 80 bytes, with " ..."
// when anything was left out; for messages.
func (s Statement) Summary() string {
	first, _, more := strings.Cut(s.Text, "\n")
	first = strings.TrimSpace(first)
	if len(first) > 80 {
		first, more = first[:77], true
	}
	if more {
		first += " ..."
	}
	return first
}

// LineOf returns the script line of the 1-based character position pos in
// the statement (PostgreSQL's error position counts characters); the
// statement's first line when pos is 0 or less.
func (s Statement) LineOf(pos int) int {
	if pos <= 0 {
		return s.Line
	}
	n := 0
	for i := range s.Text {
		n++
		if n >= pos {
			return s.Line + strings.Count(s.Text[:i], "\n")
		}
	}
	return s.Line + strings.Count(s.Text, "\n")
}
