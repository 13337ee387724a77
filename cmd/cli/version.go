package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgundo/pgundo/internal/timefmt"
	pgsql "github.com/pgundo/pgundo/sql"
)

// versionInfo is what pgundo --version reports: the binary, and the schema
// version of the connected database when a connection is given.
type versionInfo struct {
	// Version is the main module's version as the Go toolchain stamped it:
	// a release tag (v1.2.3), a pseudo-version for a build from a
	// checkout (v0.0.0-20261204042000-eee43f585616, "+dirty" when the work
	// tree had changes), or "(devel)" when the toolchain stamped none (go
	// run, go test, -buildvcs=false).
	Version string `json:"version"`
	// Commit is the VCS revision the binary was built from; empty when
	// not stamped.
	Commit string `json:"commit,omitempty"`
	// CommitTime is that revision's commit time; nil when not stamped.
	CommitTime *time.Time `json:"commit_time,omitempty"`
	// Modified says the work tree had uncommitted changes at build time.
	Modified  bool   `json:"modified"`
	GoVersion string `json:"go_version"`
	// SchemaVersion is the newest schema version this binary installs.
	SchemaVersion int32 `json:"schema_version"`
	// Database is the connected database's side.
	Database databaseVersion `json:"database"`
}

// Database states in versionInfo.Database.State.
const (
	dbNoConnection = "no_connection" // no --database-url, DATABASE_URL or PG* variable
	dbUnreachable  = "unreachable"   // the connection failed (exit 1)
	dbNotInstalled = "not_installed" // no schema pgundo
	dbCurrent      = "current"       // installed at this binary's schema version
	dbOutdated     = "outdated"      // older: pgundo install upgrades it
	dbNewer        = "newer"         // installed by a newer pgundo
	dbUnreadable   = "unreadable"    // the role may not read pgundo.schema_version
)

// databaseVersion is the connected database's side of --version.
type databaseVersion struct {
	State         string `json:"state"`
	Database      string `json:"database,omitempty"`
	User          string `json:"user,omitempty"`
	ServerVersion string `json:"server_version,omitempty"`
	// SchemaVersion is the installed schema version (0: not installed);
	// null when it could not be read.
	SchemaVersion *int32 `json:"schema_version"`
	// Message says in words what State means and what to do.
	Message string `json:"message"`
}

// pgConnEnv are the libpq variables that name a server, a database or a
// user: with none of them (and no --database-url, no DATABASE_URL) no
// connection is given.
var pgConnEnv = []string{"PGHOST", "PGHOSTADDR", "PGPORT", "PGDATABASE", "PGUSER", "PGSERVICE"}

// connectionGiven reports whether --database-url, DATABASE_URL or a libpq
// PG* variable names a connection (empty values count as unset).
func (g *globals) connectionGiven() bool {
	if g.connString() != "" {
		return true
	}
	for _, v := range pgConnEnv {
		if os.Getenv(v) != "" {
			return true
		}
	}
	return false
}

// binaryVersion reads the version, commit and modified flag the Go
// toolchain stamped into the binary.
func binaryVersion(info *debug.BuildInfo, ok bool) versionInfo {
	v := versionInfo{Version: "(devel)", GoVersion: runtime.Version(), SchemaVersion: pgsql.Latest()}
	if !ok || info == nil {
		return v
	}
	if info.Main.Version != "" {
		v.Version = info.Main.Version
	}
	if info.GoVersion != "" {
		v.GoVersion = info.GoVersion
	}
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Commit = s.Value
		case "vcs.time":
			if t, err := time.Parse(time.RFC3339, s.Value); err == nil {
				t = t.UTC()
				v.CommitTime = &t
			}
		case "vcs.modified":
			v.Modified = s.Value == "true"
		}
	}
	return v
}

// databaseSide connects (when a connection is given) and reads the
// server's and pgundo's schema versions. A failed connection is returned
// as the error, with the state filled in.
func (g *globals) databaseSide(ctx context.Context, latest int32) (databaseVersion, error) {
	if !g.connectionGiven() {
		return databaseVersion{State: dbNoConnection,
			Message: "no connection given (--database-url, DATABASE_URL or the PG* variables): give one to see the database's pgundo schema version"}, nil
	}
	conn, err := g.connect(ctx)
	if err != nil {
		return databaseVersion{State: dbUnreachable, Message: err.Error()}, err
	}
	defer conn.Close(context.Background())
	d := databaseVersion{Database: conn.Config().Database, User: conn.Config().User}
	if err := conn.QueryRow(ctx, `SELECT current_database(), current_user, current_setting('server_version')`).Scan(&d.Database, &d.User, &d.ServerVersion); err != nil {
		d.State, d.Message = dbUnreachable, err.Error()
		return d, err
	}
	v, err := pgsql.InstalledVersion(ctx, conn)
	var pgErr *pgconn.PgError
	switch {
	case errors.As(err, &pgErr) && pgErr.Code == pgerrcode.InsufficientPrivilege:
		d.State = dbUnreadable
		d.Message = fmt.Sprintf("role %s may not read %s (pgundo's owner may)", d.User, pgsql.VersionTable)
		return d, nil
	case err != nil:
		d.State, d.Message = dbUnreachable, fmt.Sprintf("read %s: %v", pgsql.VersionTable, err)
		return d, fmt.Errorf("database %s: read %s: %w", d.Database, pgsql.VersionTable, err)
	}
	d.SchemaVersion = &v
	switch {
	case v == 0:
		d.State, d.Message = dbNotInstalled, "pgundo is not installed; run pgundo install"
	case v < latest:
		d.State, d.Message = dbOutdated, fmt.Sprintf("schema version %d, older than this pgundo's %d; run pgundo install to upgrade", v, latest)
	case v > latest:
		d.State, d.Message = dbNewer, fmt.Sprintf("schema version %d, installed by a newer pgundo than this one (%d); use that pgundo", v, latest)
	default:
		d.State, d.Message = dbCurrent, fmt.Sprintf("schema version %d, current", v)
	}
	return d, nil
}

// runVersion prints the binary's version and the database's schema
// version. Without a connection it says so and succeeds; a connection
// given that fails is reported in the result and exits 1.
func (g *globals) runVersion(ctx context.Context) error {
	info, ok := debug.ReadBuildInfo()
	v := binaryVersion(info, ok)
	d, connErr := g.databaseSide(ctx, v.SchemaVersion)
	v.Database = d
	if err := g.output(v, func(w io.Writer) error { return renderVersion(w, v) }); err != nil {
		return err
	}
	if connErr != nil {
		return connErr
	}
	return nil
}

// renderVersion writes v for people:
//
//	pgundo v0.0.0-20261204042000-eee43f585616+dirty
//	commit eee43f585616ab040f8d63df598b7c56eece2bc6 (2026-12-04 04:20:00.000000 UTC), modified
//	go1.26.8; schema version 6
//	database shop (user alice, PostgreSQL 15.8): schema version 6, current
func renderVersion(w io.Writer, v versionInfo) error {
	fmt.Fprintf(w, "pgundo %s\n", v.Version)
	switch {
	case v.Commit == "":
		fmt.Fprintln(w, "commit unknown (built without VCS information)")
	default:
		line := "commit " + v.Commit
		if v.CommitTime != nil {
			line += " (" + timefmt.Format(*v.CommitTime) + ")"
		}
		if v.Modified {
			line += ", modified"
		}
		fmt.Fprintln(w, line)
	}
	fmt.Fprintf(w, "%s; schema version %d\n", v.GoVersion, v.SchemaVersion)
	d := v.Database
	switch d.State {
	case dbNoConnection, dbUnreachable:
		_, err := fmt.Fprintf(w, "database: %s\n", d.Message)
		return err
	}
	_, err := fmt.Fprintf(w, "database %s (user %s, PostgreSQL %s): %s\n", d.Database, d.User, d.ServerVersion, d.Message)
	return err
}
