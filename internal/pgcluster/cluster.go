// Package pgcluster starts and stops throwaway PostgreSQL servers.
//
// A Cluster is a fresh data directory created with initdb inside a new
// temporary directory, served by a postgres process that listens on
// 127.0.0.1 and on a Unix socket in that temporary directory, with trust
// authentication for the "postgres" superuser. It is meant for tests and for
// `pgundo demo`; the defaults trade durability for speed (fsync=off etc.).
//
// The package never writes to stdout or stderr and never exits the process:
// everything is reported through returned errors, which include the tail of
// the initdb output or the server log when something goes wrong.
//
// PostgreSQL refuses to run as root. When the current process is root, the
// server binaries are run as the "postgres" OS user (looked up with os/user)
// through exec.Cmd credentials, and the temporary directory is chowned to it.
package pgcluster

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// Tunables.
const (
	// connectTimeout is how long Start and Restart keep retrying a real
	// pgx connection before giving up.
	connectTimeout = 30 * time.Second
	// pgCtlTimeout is passed to pg_ctl -t (seconds).
	pgCtlTimeout = 60
	// logTailLines is how many lines of output/log are quoted in errors.
	logTailLines = 30
	// portAttempts is how often Start retries with a new port when Port is 0
	// and the picked port turned out to be taken.
	portAttempts = 3
	// maxSocketPath is the longest Unix socket path Linux accepts (108 bytes
	// including the terminating NUL).
	maxSocketPath = 107
)

// DefaultSettings returns the server settings applied unless overridden via
// Options.Settings: fsync=off, synchronous_commit=off, full_page_writes=off
// (fast but not crash-safe), shared_buffers=128MB and max_connections=200.
// The returned map is a fresh copy.
func DefaultSettings() map[string]string {
	return map[string]string{
		"fsync":              "off",
		"synchronous_commit": "off",
		"full_page_writes":   "off",
		"shared_buffers":     "128MB",
		"max_connections":    "200",
	}
}

// Options configures Start. The zero value is valid and gives the defaults
// described on each field.
type Options struct {
	// BinDir is the directory holding initdb, pg_ctl and postgres.
	// Default: the result of FindBinDir.
	BinDir string

	// Settings are extra server settings passed as `-c name=value`. They are
	// merged over DefaultSettings (fsync=off, synchronous_commit=off,
	// full_page_writes=off, shared_buffers=128MB, max_connections=200); an
	// empty value removes a default so PostgreSQL's built-in default applies.
	// port, unix_socket_directories and listen_addresses are controlled by
	// the Cluster and must not be set here.
	Settings map[string]string

	// Port is the TCP port to listen on (on 127.0.0.1 only). Default 0 means
	// pick a free port by listening on 127.0.0.1:0 and closing the listener.
	Port int

	// TempDir is the parent directory in which the cluster's temporary
	// directory (data dir, socket dir and log file) is created.
	// Default: os.TempDir().
	TempDir string
}

// Cluster is a running (or stopped) throwaway PostgreSQL server. Its methods
// are safe for concurrent use.
type Cluster struct {
	binDir    string
	baseDir   string // the temp dir holding everything below
	dataDir   string
	socketDir string
	logFile   string
	port      int // fixed once Start returns
	settings  map[string]string
	cred      *syscall.Credential // nil unless running as root

	mu      sync.Mutex // guards running and removed
	running bool
	removed bool

	watchdog *watchdog
}

// Start creates a new cluster with initdb in a fresh temporary directory,
// starts it with pg_ctl and waits (up to ~30s) until a pgx connection to the
// "postgres" database succeeds. initdb runs with `-U postgres --auth=trust
// -E UTF8 --locale=C.UTF-8`, falling back to `--locale=C` if the C.UTF-8
// locale is unavailable.
//
// On failure the temporary directory is removed and the error contains the
// tail of the initdb output or the server log. Call Stop to shut the
// server down and remove its files.
//
// The server never outlives the current process: a small /bin/sh watchdog
// process (in its own process group) waits on a pipe and, if this process
// exits without calling Stop (crash, os.Exit, test timeout), stops the
// server with SIGQUIT (immediate shutdown) and removes the temporary
// directory.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	binDir := opts.BinDir
	if binDir == "" {
		d, err := FindBinDir()
		if err != nil {
			return nil, err
		}
		binDir = d
	} else if err := checkBinDir(binDir); err != nil {
		return nil, fmt.Errorf("pgcluster: Options.BinDir: %w", err)
	}

	settings := DefaultSettings()
	for k, v := range opts.Settings {
		switch strings.ToLower(k) {
		case "port", "unix_socket_directories", "listen_addresses":
			return nil, fmt.Errorf("pgcluster: setting %q is managed by pgcluster; use Options.Port instead or leave it out", k)
		}
		if v == "" {
			delete(settings, k)
		} else {
			settings[k] = v
		}
	}

	cred, pgUser, err := serverCredential()
	if err != nil {
		return nil, err
	}

	parent := opts.TempDir
	if parent == "" {
		parent = os.TempDir()
	}
	baseDir, err := os.MkdirTemp(parent, "pgundo-pg-")
	if err != nil {
		return nil, fmt.Errorf("pgcluster: create temp dir: %w", err)
	}
	if abs, err := filepath.Abs(baseDir); err == nil {
		baseDir = abs
	}
	c := &Cluster{
		binDir:    binDir,
		baseDir:   baseDir,
		dataDir:   filepath.Join(baseDir, "data"),
		socketDir: filepath.Join(baseDir, "sock"),
		logFile:   filepath.Join(baseDir, "postgres.log"),
		port:      opts.Port,
		settings:  settings,
		cred:      cred,
	}
	if err := c.start(ctx, pgUser, opts.Port == 0); err != nil {
		// A server may be up if e.g. ctx was cancelled while pg_ctl waited.
		if _, statErr := os.Stat(filepath.Join(c.dataDir, "postmaster.pid")); statErr == nil {
			stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			_ = c.pgCtlStop(stopCtx, "immediate")
			cancel()
		}
		_ = os.RemoveAll(baseDir)
		c.removed = true
		c.watchdog.release()
		return nil, err
	}
	return c, nil
}

// start does the work of Start after the struct is filled in.
func (c *Cluster) start(ctx context.Context, pgUser *user.User, pickPort bool) error {
	if n := len(filepath.Join(c.socketDir, ".s.PGSQL.65535")); n > maxSocketPath {
		return fmt.Errorf("pgcluster: socket path under %s would be %d bytes, longer than the %d allowed; use a shorter Options.TempDir", c.baseDir, n, maxSocketPath)
	}
	if err := os.Chmod(c.baseDir, 0o755); err != nil {
		return fmt.Errorf("pgcluster: chmod %s: %w", c.baseDir, err)
	}
	if err := os.Mkdir(c.socketDir, 0o755); err != nil {
		return fmt.Errorf("pgcluster: %w", err)
	}
	if c.cred != nil {
		if err := makeTraversable(filepath.Dir(c.baseDir), int(c.cred.Uid), int(c.cred.Gid)); err != nil {
			return err
		}
		if err := chownR(c.baseDir, int(c.cred.Uid), int(c.cred.Gid)); err != nil {
			return fmt.Errorf("pgcluster: chown %s to user %s: %w", c.baseDir, pgUser.Username, err)
		}
	}

	wd, err := startWatchdog(c.dataDir, c.baseDir)
	if err != nil {
		return err
	}
	c.watchdog = wd

	if err := c.checkRunnable(ctx); err != nil {
		return err
	}
	if err := c.initdb(ctx); err != nil {
		return err
	}

	for attempt := 1; ; attempt++ {
		if pickPort {
			p, err := freePort()
			if err != nil {
				return err
			}
			c.port = p
		}
		err := c.startServer(ctx)
		if err == nil {
			break
		}
		if !pickPort || attempt >= portAttempts || !c.logMentionsPortInUse() {
			return err
		}
	}
	c.running = true
	if err := c.waitReady(ctx); err != nil {
		_ = c.pgCtlStop(context.WithoutCancel(ctx), "immediate")
		c.running = false
		return err
	}
	return nil
}

// serverCredential returns the credential to run server binaries with:
// nil when not root, the postgres user's uid/gid when root.
func serverCredential() (*syscall.Credential, *user.User, error) {
	if os.Geteuid() != 0 {
		return nil, nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, nil, fmt.Errorf("pgcluster: running as root, and PostgreSQL refuses to run as root, but there is no \"postgres\" OS user to run it as (%v); create one (e.g. useradd --system postgres) or run as a non-root user", err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, nil, fmt.Errorf("pgcluster: postgres user has non-numeric uid %q", u.Uid)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, nil, fmt.Errorf("pgcluster: postgres user has non-numeric gid %q", u.Gid)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, u, nil
}

// makeTraversable makes sure the user uid/gid can traverse dir and all its
// ancestors, adding the "others may search" bit (o+x, not o+r) where needed.
func makeTraversable(dir string, uid, gid int) error {
	for d := dir; ; d = filepath.Dir(d) {
		st, err := os.Stat(d)
		if err != nil {
			return fmt.Errorf("pgcluster: %w", err)
		}
		mode := st.Mode().Perm()
		ok := mode&0o001 != 0
		if sys, isSys := st.Sys().(*syscall.Stat_t); isSys && !ok {
			ok = (int(sys.Uid) == uid && mode&0o100 != 0) || (int(sys.Gid) == gid && mode&0o010 != 0)
		}
		if !ok {
			if err := os.Chmod(d, st.Mode()&(fs.ModePerm|fs.ModeSticky|fs.ModeSetuid|fs.ModeSetgid)|0o001); err != nil {
				return fmt.Errorf("pgcluster: the postgres user cannot enter %s and chmod o+x failed: %w", d, err)
			}
		}
		if parent := filepath.Dir(d); parent == d {
			return nil
		}
	}
}

func chownR(root string, uid, gid int) error {
	return filepath.WalkDir(root, func(path string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, uid, gid)
	})
}

// freePort asks the kernel for a free TCP port on 127.0.0.1.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pgcluster: pick a free port: %w", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		return 0, fmt.Errorf("pgcluster: pick a free port: %w", err)
	}
	return port, nil
}

// checkRunnable runs `postgres --version` as the user the server will run
// as, so that a bin directory that user cannot reach, or binaries whose
// shared libraries are missing, fail with a message saying so instead of an
// obscure initdb error.
func (c *Cluster) checkRunnable(ctx context.Context) error {
	out, err := c.run(ctx, "postgres", "--version")
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return fmt.Errorf("pgcluster: postgres --version: %w", ctx.Err())
	}
	who := "the current user"
	if c.cred != nil {
		who = "the postgres OS user (PostgreSQL refuses to run as root)"
	}
	return fmt.Errorf("pgcluster: %s cannot be run by %s: %v\n%s\n"+
		"the bin directory and every parent directory must be searchable by that user, and the shared libraries it needs must be present (check with: ldd %s)",
		filepath.Join(c.binDir, "postgres"), who, err, tail(strings.TrimSpace(out), logTailLines), filepath.Join(c.binDir, "postgres"))
}

func (c *Cluster) initdb(ctx context.Context) error {
	var lastOut string
	var lastErr error
	for _, locale := range []string{"C.UTF-8", "C"} {
		// initdb removes a data dir it created when it fails, but be sure.
		_ = os.RemoveAll(c.dataDir)
		out, err := c.run(ctx, "initdb",
			"-D", c.dataDir,
			"-U", "postgres",
			"--auth=trust",
			"-E", "UTF8",
			"--locale="+locale,
			"--no-sync",
		)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("pgcluster: initdb: %w", ctx.Err())
		}
		lastOut, lastErr = out, err
	}
	return fmt.Errorf("pgcluster: initdb in %s failed: %v\n--- initdb output (last %d lines) ---\n%s",
		c.dataDir, lastErr, logTailLines, tail(lastOut, logTailLines))
}

// serverOptions builds the string for `pg_ctl -o`; pg_ctl hands it to
// /bin/sh, so every value is single-quoted.
func (c *Cluster) serverOptions() string {
	parts := []string{
		"-p", shellQuote(strconv.Itoa(c.port)),
		"-k", shellQuote(c.socketDir),
		"-c", shellQuote("listen_addresses=127.0.0.1"),
	}
	for _, k := range slices.Sorted(maps.Keys(c.settings)) {
		parts = append(parts, "-c", shellQuote(k+"="+c.settings[k]))
	}
	return strings.Join(parts, " ")
}

func (c *Cluster) startServer(ctx context.Context) error {
	out, err := c.run(ctx, "pg_ctl",
		"-w", "-t", strconv.Itoa(pgCtlTimeout),
		"-D", c.dataDir,
		"-l", c.logFile,
		"-o", c.serverOptions(),
		"start",
	)
	if err != nil {
		return fmt.Errorf("pgcluster: pg_ctl start (port %d) failed: %v\n%s--- server log %s (last %d lines) ---\n%s",
			c.port, err, indentOutput(out), c.logFile, logTailLines, c.logTail())
	}
	return nil
}

func (c *Cluster) logMentionsPortInUse() bool {
	b, err := os.ReadFile(c.logFile)
	if err != nil {
		return false
	}
	s := string(b)
	return strings.Contains(s, "Address already in use") || strings.Contains(s, "could not bind")
}

// waitReady retries a pgx connection until it succeeds.
func (c *Cluster) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	var lastErr error
	for {
		attemptCtx, attemptCancel := context.WithTimeout(ctx, 5*time.Second)
		conn, err := pgx.Connect(attemptCtx, c.ConnString("postgres"))
		if err == nil {
			var one int
			err = conn.QueryRow(attemptCtx, "select 1").Scan(&one)
			_ = conn.Close(context.WithoutCancel(attemptCtx))
		}
		attemptCancel()
		if err == nil {
			return nil
		}
		lastErr = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("pgcluster: server did not accept connections within %s (%v): %v\n--- server log %s (last %d lines) ---\n%s",
				connectTimeout, ctx.Err(), lastErr, c.logFile, logTailLines, c.logTail())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// run executes one of the server binaries, as the postgres user when the
// current process is root, and returns its combined output.
func (c *Cluster) run(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(c.binDir, name), args...)
	cmd.Dir = c.baseDir
	cmd.Env = serverEnv()
	cmd.Stdin = nil
	cmd.WaitDelay = 5 * time.Second
	if c.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// serverEnv is the current environment without PG* variables, which could
// change what the server binaries do (PGDATA, PGPORT, ...).
func serverEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PG") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// ConnString returns a libpq keyword/value connection string for database
// dbname ("postgres" if empty) that connects over the Unix socket as the
// postgres superuser: host=<socket dir> port=<port> user=postgres
// dbname=<dbname> sslmode=disable. It works with pgx.Connect and psql.
func (c *Cluster) ConnString(dbname string) string {
	if dbname == "" {
		dbname = "postgres"
	}
	return strings.Join([]string{
		"host=" + quoteConnValue(c.socketDir),
		"port=" + strconv.Itoa(c.port),
		"user=postgres",
		"dbname=" + quoteConnValue(dbname),
		"sslmode=disable",
	}, " ")
}

// Port returns the TCP port the server listens on (on 127.0.0.1); the Unix
// socket in SocketDir uses the same port number.
func (c *Cluster) Port() int { return c.port }

// SocketDir returns the directory holding the server's Unix socket.
func (c *Cluster) SocketDir() string { return c.socketDir }

// BinDir returns the directory of the PostgreSQL binaries used by the cluster
// (it usually also holds psql and pgbench).
func (c *Cluster) BinDir() string { return c.binDir }

// DataDir returns the cluster's data directory.
func (c *Cluster) DataDir() string { return c.dataDir }

// LogFile returns the path of the server log file.
func (c *Cluster) LogFile() string { return c.logFile }

// Stop shuts the server down with `pg_ctl stop -m fast` (if it is running)
// and removes the cluster's temporary directory. It is idempotent: calling
// it again, or after StopImmediate, is fine. If the server cannot be stopped
// the directory is kept and an error returned.
func (c *Cluster) Stop(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.removed {
		return nil
	}
	if c.running {
		if err := c.pgCtlStop(ctx, "fast"); err != nil {
			return err
		}
		c.running = false
	} else if c.serverRunning(ctx) {
		// E.g. started by hand after StopImmediate; be safe.
		if err := c.pgCtlStop(ctx, "fast"); err != nil {
			return err
		}
	}
	if err := os.RemoveAll(c.baseDir); err != nil {
		return fmt.Errorf("pgcluster: remove %s: %w", c.baseDir, err)
	}
	c.removed = true
	c.watchdog.release()
	return nil
}

// StopImmediate shuts the server down with `pg_ctl stop -m immediate`
// (simulating a crash: no shutdown checkpoint) and keeps the data directory,
// so the cluster can be started again with Restart. It is a no-op when the
// server is not running. Stop must still be called to remove the files.
func (c *Cluster) StopImmediate() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.running || c.removed {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), (pgCtlTimeout+10)*time.Second)
	defer cancel()
	if err := c.pgCtlStop(ctx, "immediate"); err != nil {
		return err
	}
	c.running = false
	return nil
}

// Restart starts the server again on the same data directory and port and
// waits until it accepts connections. If it is still running it is first
// stopped with `pg_ctl stop -m fast`. It fails after Stop, which removes the
// data directory.
func (c *Cluster) Restart(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.removed {
		return errors.New("pgcluster: Restart after Stop: the cluster's data directory has been removed")
	}
	if c.running {
		if err := c.pgCtlStop(ctx, "fast"); err != nil {
			return err
		}
		c.running = false
	}
	if err := c.startServer(ctx); err != nil {
		return err
	}
	c.running = true
	return c.waitReady(ctx)
}

func (c *Cluster) pgCtlStop(ctx context.Context, mode string) error {
	out, err := c.run(ctx, "pg_ctl", "-w", "-t", strconv.Itoa(pgCtlTimeout), "-D", c.dataDir, "-m", mode, "stop")
	if err == nil {
		return nil
	}
	if ctx.Err() == nil && !c.serverRunning(ctx) {
		// Already gone (e.g. killed by a signal): that is what we wanted.
		return nil
	}
	return fmt.Errorf("pgcluster: pg_ctl stop -m %s failed: %v\n%s--- server log %s (last %d lines) ---\n%s",
		mode, err, indentOutput(out), c.logFile, logTailLines, c.logTail())
}

// serverRunning asks pg_ctl status; exit code 3 means no server is running.
func (c *Cluster) serverRunning(ctx context.Context) bool {
	_, err := c.run(ctx, "pg_ctl", "-D", c.dataDir, "status")
	if err == nil {
		return true
	}
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) && exitErr.ExitCode() == 3 {
		return false
	}
	// Unknown (e.g. data dir unreadable): assume it may be running.
	return true
}

func (c *Cluster) logTail() string {
	b, err := os.ReadFile(c.logFile)
	if err != nil {
		return fmt.Sprintf("(could not read log: %v)", err)
	}
	return tail(string(b), logTailLines)
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return "(empty)"
	}
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func indentOutput(out string) string {
	out = strings.TrimSpace(out)
	if out == "" {
		return ""
	}
	return "--- pg_ctl output ---\n" + tail(out, logTailLines) + "\n"
}

// shellQuote quotes s for /bin/sh.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// quoteConnValue quotes a libpq keyword/value connection string value when
// needed.
func quoteConnValue(s string) string {
	if s != "" && !strings.ContainsAny(s, " \t\n\r\\'") {
		return s
	}
	r := strings.NewReplacer(`\`, `\\`, `'`, `\'`)
	return "'" + r.Replace(s) + "'"
}
