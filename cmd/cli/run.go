package cli

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
)

type runOptions struct {
	tag string
}

// Validate checks the tag and that there is a command to run.
func (o runOptions) Validate(args []string) error {
	if o.tag == "" {
		return usageErr(errors.New("run needs --tag TAG: the label that pgundo sessions --tag and pgundo undo --tag select the command's changes by"))
	}
	if len(args) == 0 {
		return usageErr(errors.New("name the command to run after --: pgundo run --tag TAG -- COMMAND [ARGS...]"))
	}
	return nil
}

// RunResult is what pgundo run --json prints after the command ends.
type RunResult struct {
	Tag     string   `json:"tag"`
	Command []string `json:"command"`
	// ExitCode is the command's exit code (128+N when signal N ended it).
	ExitCode int `json:"exit_code"`
}

const runLong = `Run a command (a psql script, a Rails or Django console, a migration tool)
with every PostgreSQL connection it opens labelled with a tag, so that all it
changes in tracked tables, over any number of connections, is one unit:
pgundo sessions --tag TAG lists it, pgundo undo --tag TAG puts it all back.

The command inherits the environment with two additions:
  PGOPTIONS  gets "-c pgundo.tag=TAG" appended (spaces and backslashes in TAG
             escaped as libpq requires), so it wins over an earlier pgundo.tag;
  PGAPPNAME  is set to TAG unless it is already set.
Clients built on libpq (psql, psycopg, Ruby pg, ...) and pgx read both; a
connection string or URL that sets "options" or application_name itself takes
precedence over them. Clients that ignore PGOPTIONS (JDBC, for one) can run
SET pgundo.tag = 'TAG' instead. run does not connect to the database itself.

Standard input, output and error are the command's. SIGTERM and SIGHUP are
passed on to it; on a terminal, Ctrl-C and Ctrl-\ reach it directly (without
a terminal, SIGINT and SIGQUIT are passed on too).

Exit code: the command's own; 127 when it is not found, 126 when it cannot be
run, 128+N when signal N ended it; 2 for bad usage of run itself. With --json
a {tag, command, exit_code} object is printed on stdout after the command's
own output.`

func newRunCommand(g *globals) *cobra.Command {
	var o runOptions
	cmd := &cobra.Command{
		Use:   "run --tag TAG -- COMMAND [ARGS...]",
		Short: "Run a command with its PostgreSQL connections tagged, to undo it as one unit",
		Long:  runLong,
		Example: `  pgundo run --tag ticket-123 -- psql -X -v ON_ERROR_STOP=1 -f fix-notes.sql
  pgundo run --tag ticket-123 -- bin/rails runner script/fix_notes.rb
  pgundo run --tag 'incident 42' -- python manage.py shell
  pgundo sessions --tag ticket-123        # what it changed, per connection
  pgundo undo --tag ticket-123 --yes      # put all of it back`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.Validate(args); err != nil {
				return err
			}
			code, err := g.runTagged(o.tag, args)
			if err != nil {
				return err
			}
			res := RunResult{Tag: o.tag, Command: args, ExitCode: code}
			if g.json {
				if err := g.output(res, nil); err != nil {
					return err
				}
			}
			next := fmt.Sprintf("its changes to tracked tables: pgundo sessions --tag %s; undo them: pgundo undo --tag %s", shellQuote(o.tag), shellQuote(o.tag))
			if code != 0 {
				return &exitError{code: code, err: fmt.Errorf("run --tag %s: %s exited with status %d; %s", o.tag, args[0], code, next)}
			}
			fmt.Fprintf(g.stderr, "pgundo: run --tag %s: %s exited with status 0; %s\n", o.tag, args[0], next)
			return nil
		},
	}
	cmd.Flags().StringVar(&o.tag, "tag", "", "the tag for every connection of the command (required)")
	// Everything after the command name is the command's, flags included.
	cmd.Flags().SetInterspersed(false)
	return cmd
}

// runTagged runs args with the tag in its environment, passing signals on,
// and returns its exit code.
func (g *globals) runTagged(tag string, args []string) (int, error) {
	c := exec.Command(args[0], args[1:]...)
	// The command gets pgundo's own stdout (a terminal stays a terminal for
	// it), not Run's counting wrapper.
	c.Stdin, c.Stdout, c.Stderr = g.stdin, g.rawStdout(), g.stderr
	c.Env = runEnv(os.Environ(), tag)

	// While the command runs, its signals are its own business: Reset drops
	// every earlier handler (SignalContext's would exit pgundo on a second
	// Ctrl-C, orphaning an interactive console), and only ours is left.
	forwarded := []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT}
	sigs := make(chan os.Signal, 8)
	signal.Reset(forwarded...)
	signal.Notify(sigs, forwarded...)
	defer signal.Stop(sigs)
	if err := c.Start(); err != nil {
		code := 126
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, os.ErrNotExist) {
			code = 127
		}
		return 0, &exitError{code: code, err: fmt.Errorf("run --tag %s: cannot run %s: %w; nothing was run", tag, args[0], err)}
	}
	// On a terminal, Ctrl-C and Ctrl-\ go to the whole foreground process
	// group, the command included: passing them on would deliver them twice.
	tty := isTerminal(g.stdin)
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			select {
			case s := <-sigs:
				if tty && (s == syscall.SIGINT || s == syscall.SIGQUIT) {
					continue
				}
				_ = c.Process.Signal(s)
			case <-done:
				return
			}
		}
	}()
	err := c.Wait()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, nil
	case errors.As(err, &ee):
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal()), nil
		}
		return ee.ExitCode(), nil
	}
	return 0, fmt.Errorf("run --tag %s: %s: %w", tag, args[0], err)
}

// runEnv returns environ with "-c pgundo.tag=TAG" appended to PGOPTIONS and
// PGAPPNAME set to the tag unless it is set already.
func runEnv(environ []string, tag string) []string {
	out := make([]string, 0, len(environ)+2)
	var options string
	haveApp := false
	for _, kv := range environ {
		switch {
		case strings.HasPrefix(kv, "PGOPTIONS="):
			options = strings.TrimPrefix(kv, "PGOPTIONS=")
			continue
		case strings.HasPrefix(kv, "PGAPPNAME="):
			haveApp = kv != "PGAPPNAME="
			if !haveApp {
				continue
			}
		}
		out = append(out, kv)
	}
	opt := "-c pgundo.tag=" + escapeOption(tag)
	if strings.TrimSpace(options) != "" {
		opt = options + " " + opt
	}
	out = append(out, "PGOPTIONS="+opt)
	if !haveApp {
		out = append(out, "PGAPPNAME="+tag)
	}
	return out
}

// escapeOption escapes a value for PGOPTIONS, which the server splits at
// unescaped white space and where a backslash escapes the next character.
func escapeOption(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch r {
		case '\\', ' ', '\t', '\n', '\r', '\f', '\v':
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_.,:/@+=", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
