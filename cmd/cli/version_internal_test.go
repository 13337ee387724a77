package cli

import (
	"bytes"
	"runtime"
	"runtime/debug"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	pgsql "github.com/pgundo/pgundo/sql"
)

// TestBinaryVersion: what the Go toolchain stamps (a tag, a pseudo-version
// with +dirty, nothing at all) is reported as stamped, and printed one way.
func TestBinaryVersion(t *testing.T) {
	commitTime := time.Date(2026, 12, 4, 4, 20, 0, 0, time.UTC)
	latest := pgsql.Latest()
	for _, tc := range []struct {
		name  string
		info  *debug.BuildInfo
		ok    bool
		want  versionInfo
		human string
	}{{
		name: "release",
		info: &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "github.com/pgundo/pgundo", Version: "v1.4.0"},
			Settings: []debug.BuildSetting{{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: "eee43f585616ab040f8d63df598b7c56eece2bc6"},
				{Key: "vcs.time", Value: "2026-12-04T04:20:00Z"}, {Key: "vcs.modified", Value: "false"}}},
		ok:   true,
		want: versionInfo{Version: "v1.4.0", Commit: "eee43f585616ab040f8d63df598b7c56eece2bc6", CommitTime: &commitTime, GoVersion: "go1.26.8", SchemaVersion: latest},
		human: "pgundo v1.4.0\ncommit eee43f585616ab040f8d63df598b7c56eece2bc6 (2026-12-04 04:20:00.000000 UTC)\n" +
			"go1.26.8; schema version " + itoa(latest) + "\n",
	}, {
		name: "dirty checkout",
		info: &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "github.com/pgundo/pgundo", Version: "v0.0.0-20261204042000-eee43f585616+dirty"},
			Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "eee43f585616ab040f8d63df598b7c56eece2bc6"},
				{Key: "vcs.time", Value: "2026-12-04T05:20:00+01:00"}, {Key: "vcs.modified", Value: "true"}}},
		ok: true,
		want: versionInfo{Version: "v0.0.0-20261204042000-eee43f585616+dirty", Commit: "eee43f585616ab040f8d63df598b7c56eece2bc6",
			CommitTime: &commitTime, Modified: true, GoVersion: "go1.26.8", SchemaVersion: latest},
		human: "pgundo v0.0.0-20261204042000-eee43f585616+dirty\ncommit eee43f585616ab040f8d63df598b7c56eece2bc6 (2026-12-04 04:20:00.000000 UTC), modified\n" +
			"go1.26.8; schema version " + itoa(latest) + "\n",
	}, {
		name:  "go run without VCS stamping",
		info:  &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "github.com/pgundo/pgundo", Version: "(devel)"}},
		ok:    true,
		want:  versionInfo{Version: "(devel)", GoVersion: "go1.26.8", SchemaVersion: latest},
		human: "pgundo (devel)\ncommit unknown (built without VCS information)\ngo1.26.8; schema version " + itoa(latest) + "\n",
	}, {
		name:  "no build information",
		want:  versionInfo{Version: "(devel)", GoVersion: runtime.Version(), SchemaVersion: latest},
		human: "pgundo (devel)\ncommit unknown (built without VCS information)\n" + runtime.Version() + "; schema version " + itoa(latest) + "\n",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			got := binaryVersion(tc.info, tc.ok)
			require.Equal(t, tc.want, got)
			got.Database = databaseVersion{State: dbNoConnection, Message: "no connection given"}
			var b bytes.Buffer
			require.NoError(t, renderVersion(&b, got))
			require.Equal(t, tc.human+"database: no connection given\n", b.String())
		})
	}
}

func itoa(n int32) string { return strconv.Itoa(int(n)) }
