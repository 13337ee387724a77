package cli

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/pgundo/pgundo/audit"
	"github.com/pgundo/pgundo/internal/timefmt"
)

type verifyOptions struct {
	noSeal bool
}

func newVerifyCommand(g *globals) *cobra.Command {
	var o verifyOptions
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Check the log against its seals: prove it was not edited, deleted from or added to",
		Long: `Check that the log holds exactly what capture wrote.

Seals: every statement logged, with its session and all its row changes, is
hashed into a digest, and the digests are sealed in a SHA-256 chain, off the
capture path (writers never wait for it). verify first seals what was logged
since the last run (statements of transactions still open wait for the next
run; --no-seal skips this), then recomputes every seal and every sealed
statement's digest, and lists each statement whose log rows were edited,
deleted or inserted outside capture since they were sealed.

It prints the newest seal's hash: keep it outside the database (a ticket, a
log line). Whoever can write pgundo's schema (its owner, a superuser) could
rewrite the whole chain consistently; a chain that no longer leads to a hash
you kept proves it. Run verify regularly (e.g. from cron), so that little is
ever unsealed. Statements removed by pgundo prune are not reported.

Exit codes: 0 the log matches its seals, 1 error, 3 tampering found (the first
bad entry is named).`,
		Example: `  pgundo verify
  pgundo verify --json | jq .head_hash
  pgundo verify --no-seal        # check only, write nothing`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			conn, err := g.connectInstalled(ctx)
			if err != nil {
				return err
			}
			defer conn.Close(context.Background())
			done := g.working("sealing and checking the log")
			res, err := audit.Verify(ctx, conn, o.noSeal)
			done()
			if err != nil {
				return err
			}
			if err := g.output(res, func(w io.Writer) error { return renderVerify(w, res) }); err != nil {
				return err
			}
			if !res.OK {
				p := res.Problems[0]
				where := fmt.Sprintf("statement %d", p.Statement)
				if p.Table != "" {
					where += fmt.Sprintf(" (%s, session %s, %s)", p.Table, p.Session, timefmt.Format(*p.At))
				}
				return refusedErr(fmt.Errorf("verify: the log does not match its seals: %d problems, the first at %s: %s (%s); restore the log from a backup to investigate, and do not trust undo or history for these entries",
					len(res.Problems), where, p.Kind, p.Detail))
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&o.noSeal, "no-seal", false, "check only: do not seal what was logged since the last run")
	return cmd
}

func renderVerify(w io.Writer, res *audit.VerifyResult) error {
	if res.NewlySealed > 0 {
		fmt.Fprintf(w, "sealed %d new statements\n", res.NewlySealed)
	}
	for i, p := range res.Problems {
		if i == 20 {
			fmt.Fprintf(w, "... and %d more\n", len(res.Problems)-20)
			break
		}
		desc := fmt.Sprintf("statement %d: %s: %s", p.Statement, p.Kind, p.Detail)
		if p.Table != "" {
			desc += fmt.Sprintf(" [%s, session %s, %s]", p.Table, p.Session, timefmt.Format(*p.At))
		}
		fmt.Fprintln(w, desc)
	}
	status := "ok: every sealed statement matches its seal"
	if !res.OK {
		status = fmt.Sprintf("TAMPERED: %d problems", len(res.Problems))
	}
	fmt.Fprintf(w, "%s; %d statements in %d seals checked, %d logged since the last seal\n", status, res.Sealed, res.Seals, res.Unsealed)
	if res.Head != "" {
		fmt.Fprintf(w, "head: seal %d, hash %s\n", res.HeadSeal, res.Head)
	}
	return nil
}
