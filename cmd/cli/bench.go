package cli

import "github.com/spf13/cobra"

func newBenchCommand(g *globals) *cobra.Command {
	return &cobra.Command{Use: "bench", Short: "Measure pgundo's overhead (see bench capture)", Hidden: true}
}
