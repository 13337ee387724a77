package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgundo/pgundo/cmd/cli"
	pgsql "github.com/pgundo/pgundo/sql"
)

// versionJSON is pgundo --version --json.
type versionJSON struct {
	Version       string     `json:"version"`
	Commit        string     `json:"commit"`
	CommitTime    *time.Time `json:"commit_time"`
	Modified      bool       `json:"modified"`
	GoVersion     string     `json:"go_version"`
	SchemaVersion int32      `json:"schema_version"`
	Database      struct {
		State         string `json:"state"`
		Database      string `json:"database"`
		User          string `json:"user"`
		ServerVersion string `json:"server_version"`
		SchemaVersion *int32 `json:"schema_version"`
		Message       string `json:"message"`
	} `json:"database"`
}

// runNoURL runs pgundo in-process without --database-url.
func runNoURL(args ...string) result {
	var out, errb bytes.Buffer
	code := cli.Run(context.Background(), args, strings.NewReader(""), &out, &errb)
	return result{code, out.String(), errb.String()}
}

// TestVersionWithoutConnection: with no --database-url, DATABASE_URL or
// PG* variable, --version says so and succeeds. (Not parallel: it clears
// the environment.)
func TestVersionWithoutConnection(t *testing.T) {
	for _, v := range []string{"DATABASE_URL", "PGHOST", "PGHOSTADDR", "PGPORT", "PGDATABASE", "PGUSER", "PGSERVICE"} {
		t.Setenv(v, "")
	}
	r := runNoURL("--version")
	require.Equal(t, 0, r.code, r.stderr)
	require.Empty(t, r.stderr)
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	require.Len(t, lines, 4, r.stdout)
	require.True(t, strings.HasPrefix(lines[0], "pgundo "), lines[0])
	require.Equal(t, fmt.Sprintf("%s; schema version %d", lines[2][:strings.Index(lines[2], ";")], pgsql.Latest()), lines[2])
	require.Equal(t, "database: no connection given (--database-url, DATABASE_URL or the PG* variables): give one to see the database's pgundo schema version", lines[3])

	r = runNoURL("--version", "--json")
	require.Equal(t, 0, r.code, r.stderr)
	var v versionJSON
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &v), r.stdout)
	require.Equal(t, "no_connection", v.Database.State)
	require.Nil(t, v.Database.SchemaVersion)
	require.Equal(t, pgsql.Latest(), v.SchemaVersion)

	// A PG* variable is a connection given: a server that is not there is
	// an error (exit 1), reported in the result and on stderr.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	require.NoError(t, l.Close())
	t.Setenv("PGHOST", "127.0.0.1")
	t.Setenv("PGPORT", fmt.Sprint(port))
	r = runNoURL("--version", "--json")
	require.Equal(t, 1, r.code, r.stderr)
	v = versionJSON{}
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &v), r.stdout)
	require.Equal(t, "unreachable", v.Database.State)
	require.Contains(t, v.Database.Message, fmt.Sprintf("cannot connect to PostgreSQL at 127.0.0.1:%d", port))
	require.Contains(t, r.stderr, fmt.Sprintf("pgundo: cannot connect to PostgreSQL at 127.0.0.1:%d", port))
}

// TestVersionDatabase: with a connection, --version gives the database's
// pgundo schema version: not installed, outdated, current.
func TestVersionDatabase(t *testing.T) {
	t.Parallel()
	url, conn := setup(t, "")
	var db, user, server string
	require.NoError(t, conn.QueryRow(context.Background(), `SELECT current_database(), current_user, current_setting('server_version')`).Scan(&db, &user, &server))
	latest := pgsql.Latest()
	check := func(state string, schema int32, msg string) {
		t.Helper()
		r := run(t, url, "--version", "--json")
		require.Equal(t, 0, r.code, r.stderr)
		var v versionJSON
		require.NoError(t, json.Unmarshal([]byte(r.stdout), &v), r.stdout)
		require.Equal(t, state, v.Database.State)
		require.Equal(t, &schema, v.Database.SchemaVersion)
		require.Equal(t, msg, v.Database.Message)
		require.Equal(t, []string{db, user, server}, []string{v.Database.Database, v.Database.User, v.Database.ServerVersion})
		r = run(t, url, "--version")
		require.Equal(t, 0, r.code, r.stderr)
		require.True(t, strings.HasSuffix(r.stdout, fmt.Sprintf("\ndatabase %s (user %s, PostgreSQL %s): %s\n", db, user, server, msg)), r.stdout)
	}
	check("not_installed", 0, "pgundo is not installed; run pgundo install")
	_, err := pgsql.MigrateTo(context.Background(), conn, latest-1)
	require.NoError(t, err)
	check("outdated", latest-1, fmt.Sprintf("schema version %d, older than this pgundo's %d; run pgundo install to upgrade", latest-1, latest))
	r := run(t, url, "install")
	require.Equal(t, 0, r.code, r.stderr)
	check("current", latest, fmt.Sprintf("schema version %d, current", latest))
}

// TestVersionStampedCommit: a binary built from a git checkout reports the
// commit it was built from, and says "modified" (and the "+dirty"
// version) when the work tree had changes. The build happens in a fresh
// clone of this repository's HEAD (go stamps no VCS information from a
// git worktree, whose .git is a file).
func TestVersionStampedCommit(t *testing.T) {
	t.Parallel()
	gitBin, err := exec.LookPath("git")
	require.NoError(t, err, "git is needed to check the stamped commit")
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	}
	dir := filepath.Join(t.TempDir(), "src")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmdOut := func(name string, args ...string) string {
		t.Helper()
		c := exec.CommandContext(ctx, name, args...)
		c.Dir = dir
		out, err := c.CombinedOutput()
		require.NoError(t, err, "%s %v: %s", name, args, out)
		return strings.TrimSpace(string(out))
	}
	top, err := exec.CommandContext(ctx, gitBin, "rev-parse", "--show-toplevel").Output()
	require.NoError(t, err, "this test runs in a git checkout of pgundo")
	out, err := exec.CommandContext(ctx, gitBin, "clone", "-q", "--no-hardlinks", strings.TrimSpace(string(top)), dir).CombinedOutput()
	require.NoError(t, err, "git clone: %s", out)
	head := cmdOut(gitBin, "rev-parse", "HEAD")

	version := func() versionJSON {
		t.Helper()
		bin := filepath.Join(t.TempDir(), "pgundo")
		cmdOut(goBin, "build", "-buildvcs=true", "-o", bin, "./cmd/pgundo")
		c := exec.CommandContext(ctx, bin, "--version", "--json")
		c.Env = append(os.Environ(), "DATABASE_URL=", "PGHOST=", "PGHOSTADDR=", "PGPORT=", "PGDATABASE=", "PGUSER=", "PGSERVICE=")
		stdout, err := c.Output()
		require.NoError(t, err)
		var v versionJSON
		require.NoError(t, json.Unmarshal(stdout, &v), string(stdout))
		require.Equal(t, "no_connection", v.Database.State)
		return v
	}
	// Untagged, go stamps a pseudo-version ending in the commit's prefix;
	// tagged vX.Y.Z, the tag.
	want := "-" + head[:12]
	if tag := cmdOut(gitBin, "tag", "--points-at", "HEAD", "--list", "v*"); tag != "" {
		want = strings.Fields(tag)[0]
	}
	v := version()
	require.Equal(t, head, v.Commit)
	require.False(t, v.Modified)
	ct, err := time.Parse(time.RFC3339, cmdOut(gitBin, "log", "-1", "--format=%cI"))
	require.NoError(t, err)
	require.NotNil(t, v.CommitTime)
	require.True(t, ct.Equal(*v.CommitTime), "commit time %v, git says %v", v.CommitTime, ct)
	require.True(t, strings.HasSuffix(v.Version, want), "version %s, want it to end in %s", v.Version, want)

	require.NoError(t, os.WriteFile(filepath.Join(dir, "README.md"), []byte("changed\n"), 0o644))
	v = version()
	require.Equal(t, head, v.Commit)
	require.True(t, v.Modified)
	require.True(t, strings.HasSuffix(v.Version, want+"+dirty"), "version %s, want it to end in %s+dirty", v.Version, want)
}
