package undo

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestLiveAlias: the live table's alias is cur unless a column has that
// exact name (then the first of cur_1, cur_2, ... no column has).
func TestLiveAlias(t *testing.T) {
	require.Equal(t, "cur", liveAlias([]column{{name: "id"}, {name: "cur_img"}}))
	require.Equal(t, "cur_1", liveAlias([]column{{name: "cur"}}))
	require.Equal(t, "cur_2", liveAlias([]column{{name: "cur"}, {name: "cur_1"}}))
	require.Equal(t, "cur", liveAlias([]column{{name: "Cur"}}))
}
