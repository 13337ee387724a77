package cli

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestRunEnv(t *testing.T) {
	env := runEnv([]string{"HOME=/root", "PGOPTIONS=-c statement_timeout=5s", "PGAPPNAME=console"}, `a b\c`)
	require.Equal(t, []string{"HOME=/root", "PGAPPNAME=console", `PGOPTIONS=-c statement_timeout=5s -c pgundo.tag=a\ b\\c`}, env)
	env = runEnv([]string{"PGAPPNAME="}, "t-1")
	require.Equal(t, []string{"PGOPTIONS=-c pgundo.tag=t-1", "PGAPPNAME=t-1"}, env)
	require.Equal(t, "x\\\ty\\\nz", escapeOption("x\ty\nz"))
}
