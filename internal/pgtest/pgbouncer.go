package pgtest

import (
	"context"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// PgBouncerEnv names the environment variable that, when set, is the path of
// the pgbouncer executable StartPgBouncer runs. Default: pgbouncer on $PATH,
// else /usr/sbin/pgbouncer (where Debian's package puts it).
const PgBouncerEnv = "PGUNDO_PGBOUNCER"

// BouncerOptions configures StartPgBouncer. The zero value gives
// transaction pooling with 2 server connections per database and user.
type BouncerOptions struct {
	// PoolMode is pool_mode: session, transaction (default) or statement.
	PoolMode string
	// PoolSize is default_pool_size (default 2).
	PoolSize int
	// IgnoreStartupParameters lists startup parameters PgBouncer accepts
	// from clients and drops (ignore_startup_parameters).
	IgnoreStartupParameters []string
	// Aliases are extra [databases] entries, name -> settings such as
	// "dbname=shop connect_query='SET ...'"; host, port and user of the
	// server are added.
	Aliases map[string]string
}

// Bouncer is a running PgBouncer in front of the server Run provides.
type Bouncer struct {
	port int
	dir  string
	cmd  *exec.Cmd
	done chan struct{}
}

// PgBouncerPath returns the pgbouncer executable to run, or an error saying
// how to install it.
func PgBouncerPath() (string, error) {
	if p := os.Getenv(PgBouncerEnv); p != "" {
		if _, err := exec.LookPath(p); err != nil {
			return "", fmt.Errorf("%s=%s cannot be run (%v); install pgbouncer (Debian/Ubuntu: apt-get install -y pgbouncer) or fix %s", PgBouncerEnv, p, err, PgBouncerEnv)
		}
		return p, nil
	}
	if p, err := exec.LookPath("pgbouncer"); err == nil {
		return p, nil
	}
	if _, err := os.Stat("/usr/sbin/pgbouncer"); err == nil {
		return "/usr/sbin/pgbouncer", nil
	}
	return "", fmt.Errorf("pgbouncer not found (looked at $%s, pgbouncer on $PATH, /usr/sbin/pgbouncer); install it (Debian/Ubuntu: apt-get install -y pgbouncer) or set %s", PgBouncerEnv, PgBouncerEnv)
}

// StartPgBouncer starts PgBouncer (as the postgres OS user when root: it
// refuses to run as root) in front of the server Run provides, with trust
// authentication for any user, listening on 127.0.0.1 on a free port. Every
// database name is passed through to the server ("* ="). It is stopped when
// the test ends. A missing pgbouncer binary fails the test; it never skips.
func StartPgBouncer(t testing.TB, opts BouncerOptions) *Bouncer {
	t.Helper()
	bin, err := PgBouncerPath()
	if err != nil {
		t.Fatalf("pgtest.StartPgBouncer: %v", err)
		return nil
	}
	server, err := pgconn.ParseConfig(mustEnv(t).admin)
	if err != nil {
		t.Fatalf("pgtest.StartPgBouncer: parse the server's connection string: %v", err)
	}
	if opts.PoolMode == "" {
		opts.PoolMode = "transaction"
	}
	if opts.PoolSize == 0 {
		opts.PoolSize = 2
	}
	dir, err := os.MkdirTemp("", "pgundo-pgbouncer-")
	if err != nil {
		t.Fatalf("pgtest.StartPgBouncer: %v", err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("pgtest.StartPgBouncer: running as root, and PgBouncer refuses to, but there is no postgres OS user to run it as: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatalf("pgtest.StartPgBouncer: %v", err)
		}
	}

	target := fmt.Sprintf("host=%s port=%d user=%s", confValue(server.Host), server.Port, confValue(server.User))
	if server.Password != "" {
		target += " password=" + confValue(server.Password)
	}
	var dbs []string
	for _, name := range slices.Sorted(maps.Keys(opts.Aliases)) {
		dbs = append(dbs, fmt.Sprintf("%s = %s %s", name, target, opts.Aliases[name]))
	}
	dbs = append(dbs, "* = "+target)

	for attempt := 1; ; attempt++ {
		b, err := startBouncer(t, bin, dir, cred, dbs, opts)
		if err == nil {
			t.Cleanup(b.stop)
			return b
		}
		if attempt == 3 || !strings.Contains(err.Error(), "in use") {
			t.Fatalf("pgtest.StartPgBouncer: %v", err)
		}
	}
}

// confValue quotes a value for pgbouncer.ini's libpq-style database lines.
func confValue(s string) string {
	if s != "" && !strings.ContainsAny(s, " '\\=") {
		return s
	}
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

func startBouncer(t testing.TB, bin, dir string, cred *syscall.Credential, dbs []string, opts BouncerOptions) (*Bouncer, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()

	logFile := filepath.Join(dir, "pgbouncer.log")
	_ = os.Remove(logFile)
	ini := fmt.Sprintf(`[databases]
%s

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
auth_type = trust
auth_file = %s
pool_mode = %s
default_pool_size = %d
max_client_conn = 200
admin_users = postgres
logfile = %s
ignore_startup_parameters = %s
`, strings.Join(dbs, "\n"), port, filepath.Join(dir, "users.txt"), opts.PoolMode, opts.PoolSize, logFile, strings.Join(opts.IgnoreStartupParameters, ","))
	for name, body := range map[string]string{"pgbouncer.ini": ini, "users.txt": `"postgres" ""` + "\n"} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			return nil, err
		}
		if cred != nil {
			_ = os.Chown(p, int(cred.Uid), int(cred.Gid))
		}
	}
	if cred != nil {
		// The log file is created by pgbouncer itself.
		_ = os.Chown(dir, int(cred.Uid), int(cred.Gid))
	}

	cmd := exec.Command(bin, filepath.Join(dir, "pgbouncer.ini"))
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	b := &Bouncer{port: port, dir: dir, cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(b.done) }()

	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case <-b.done:
			return nil, fmt.Errorf("pgbouncer exited at start (%v); its log:\n%s", cmd.ProcessState, b.Log())
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		conn, err := pgx.Connect(ctx, b.ConnString("pgbouncer")+" default_query_exec_mode=simple_protocol")
		cancel()
		if err == nil {
			_ = conn.Close(context.Background())
			return b, nil
		}
		if time.Now().After(deadline) {
			b.stop()
			return nil, fmt.Errorf("pgbouncer did not accept connections on port %d within 15s (%v); its log:\n%s", port, err, b.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ConnString returns a keyword/value connection string to database dbname
// through PgBouncer (user postgres). pgx's default of preparing and caching
// statements does not fit transaction pooling (a statement prepared on one
// server connection is gone on the next); add
// " default_query_exec_mode=simple_protocol" (or exec) for pgx clients.
func (b *Bouncer) ConnString(dbname string) string {
	return fmt.Sprintf("host=127.0.0.1 port=%d user=postgres dbname=%s sslmode=disable", b.port, quoteConnValue(dbname))
}

// Port returns the port PgBouncer listens on (127.0.0.1).
func (b *Bouncer) Port() int { return b.port }

// Log returns PgBouncer's log so far.
func (b *Bouncer) Log() string {
	out, err := os.ReadFile(filepath.Join(b.dir, "pgbouncer.log"))
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	return string(out)
}

func (b *Bouncer) stop() {
	select {
	case <-b.done:
		return
	default:
	}
	_ = b.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-b.done:
	case <-time.After(5 * time.Second):
		_ = b.cmd.Process.Kill()
		<-b.done
	}
}
