// Command pgundo is an audit trail for PostgreSQL that you can rewind: see
// pgundo --help, and README.md.
package main

import (
	"os"

	"github.com/pgundo/pgundo/cmd/cli"
)

func main() {
	ctx, stop := cli.SignalContext()
	defer stop()
	os.Exit(cli.Run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
