package cli_test

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgundo/pgundo/cmd/cli"
	"github.com/pgundo/pgundo/internal/pgtest"
)

func TestServeRefusesNonLoopback(t *testing.T) {
	t.Parallel()
	for _, listen := range []string{"0.0.0.0:8080", ":8080", "192.0.2.1:8080", "[::]:8080", "example.com:80"} {
		// No database is needed to refuse: the URL points nowhere.
		r := run(t, "postgres://nobody@127.0.0.1:1/none", "serve", "--listen", listen)
		require.Equal(t, cli.ExitUsage, r.code, listen)
		require.Contains(t, r.stderr, "--listen "+listen+": the console shows production data", listen)
		require.Contains(t, r.stderr, "--tls-cert and --tls-key, or --insecure-listen", listen)
		require.Empty(t, r.stdout)
	}
	r := run(t, "postgres://nobody@127.0.0.1:1/none", "serve", "--listen", "127.0.0.1")
	require.Equal(t, cli.ExitUsage, r.code)
	require.Contains(t, r.stderr, "want HOST:PORT")
	r = run(t, "postgres://nobody@127.0.0.1:1/none", "serve", "--tls-cert", "c.pem")
	require.Equal(t, cli.ExitUsage, r.code)
	require.Contains(t, r.stderr, "give both")
}

func TestServeNotInstalled(t *testing.T) {
	t.Parallel()
	url, _ := setup(t, "")
	r := run(t, url, "serve", "--listen", "127.0.0.1:0")
	require.Equal(t, cli.ExitError, r.code)
	require.Contains(t, r.stderr, "pgundo is not installed in this database; run pgundo install")
	require.Empty(t, r.stdout)
}

// TestServeConsole starts pgundo serve, reads the address with its token
// from the first line of stdout, reads pages with it, and stops it with the
// context (Ctrl-C).
func TestServeConsole(t *testing.T) {
	t.Parallel()
	url, conn := setup(t, "CREATE TABLE a (id int PRIMARY KEY, v text)")
	require.Equal(t, 0, run(t, url, "install").code)
	require.Equal(t, 0, run(t, url, "track", "a").code)
	_, err := conn.Exec(context.Background(), "INSERT INTO a VALUES (1, 'x')")
	require.NoError(t, err)

	srv := startServe(t, url)
	base, token, getPage := srv.base, srv.token, srv.get
	m := []string{"", strings.TrimPrefix(base, "http://")}
	code, body := getPage("/", "")
	require.Equal(t, http.StatusUnauthorized, code)
	require.NotContains(t, body, "public.a")
	code, body = getPage("/", "Bearer "+token)
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, "<td>public.a</td>")
	require.Contains(t, body, "read only")
	code, body = getPage("/status", "Bearer "+token)
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, `<tr class="healthy"><td>public.a</td>`)

	stderr := srv.stop()
	require.Contains(t, stderr, "pgundo: console on http://"+m[1]+", read only")
	require.Contains(t, stderr, "pgundo: console stopped")
}

// served is a running pgundo serve.
type served struct {
	base, token string
	get         func(path, auth string) (int, string)
	stop        func() string // stops it (Ctrl-C) and returns its stderr
}

// startServe starts pgundo serve on url with args and reads the address
// with its token from the first line of stdout.
func startServe(t *testing.T, url string, args ...string) served {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	pr, pw := io.Pipe()
	var stderr bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- cli.Run(ctx, append([]string{"--database-url", url, "serve", "--listen", "127.0.0.1:0"}, args...), strings.NewReader(""), pw, &stderr)
		pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	require.NoError(t, err, stderr.String())
	go io.Copy(io.Discard, pr) //nolint:errcheck // drain
	m := regexp.MustCompile(`^http://(127\.0\.0\.1:\d+)/\?token=([0-9a-f]{32})\n$`).FindStringSubmatch(line)
	require.NotNil(t, m, "first line: %q", line)
	base := "http://" + m[1]
	get := func(path, auth string) (int, string) {
		req, err := http.NewRequest(http.MethodGet, base+path, nil)
		require.NoError(t, err)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		res, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		require.NoError(t, err)
		return res.StatusCode, string(b)
	}
	stop := func() string {
		cancel()
		stopped(t, done, &stderr, 10*time.Second, "pgundo serve")
		return stderr.String()
	}
	return served{base: base, token: m[2], get: get, stop: stop}
}

// stopped waits for a command cancelled to exit 0.
func stopped(t *testing.T, done <-chan int, stderr *bytes.Buffer, wait time.Duration, what string) {
	t.Helper()
	select {
	case c := <-done:
		require.Equal(t, 0, c, stderr.String())
	case <-time.After(wait):
		t.Fatal(what + " did not stop on cancel")
	}
}

// TestServeAuditor: an auditor role (pgundo grant auditor) gets a read-only
// console of what its views hold, with no undo anywhere, even with
// --allow-undo.
func TestServeAuditor(t *testing.T) {
	t.Parallel()
	// In a schema the auditor may not use: the views still read.
	url, conn := setup(t, "CREATE SCHEMA app; CREATE TABLE app.a (id int PRIMARY KEY, v text)")
	aud := newRole(t, url, conn, "saud_")
	require.Equal(t, 0, run(t, url, "install").code)
	require.Equal(t, 0, run(t, url, "track", "app.a").code)
	pgtest.Exec(t, conn, "INSERT INTO app.a VALUES (1, 'x'); UPDATE app.a SET v = 'y' WHERE id = 1")
	require.Equal(t, 0, run(t, url, "grant", "auditor", aud).code)

	srv := startServe(t, asUser(t, url, aud), "--allow-undo")
	auth := "Bearer " + srv.token
	code, body := srv.get("/", auth)
	require.Equal(t, http.StatusOK, code, body)
	require.Contains(t, body, "<td>app.a</td>")
	require.Contains(t, body, "read only (auditor)")
	require.NotContains(t, body, "/plan/")
	id := regexp.MustCompile(`<tr data-session="([^"]+)">`).FindStringSubmatch(body)
	require.NotNil(t, id)
	code, body = srv.get("/session/"+id[1], auth)
	require.Equal(t, http.StatusOK, code, body)
	require.Contains(t, body, `<td class="num">1</td><td class="num">1</td><td class="num">0</td>`)
	require.Contains(t, body, `<td class="old">x</td><td class="new">y</td>`)
	require.NotContains(t, body, "/plan/")
	require.NotContains(t, body, `name="confirm"`)
	for _, p := range []string{"/status", "/activity", "/plan/" + id[1], "/history?table=app.a&key=1"} {
		code, body = srv.get(p, auth)
		require.Equal(t, http.StatusForbidden, code, p)
		require.Contains(t, body, "not available to an auditor role", p)
	}
	stderr := srv.stop()
	require.Contains(t, stderr, "--allow-undo ignored: an auditor role cannot undo")
	require.Contains(t, stderr, "read only as an auditor")
}

func TestServeTokenFromEnv(t *testing.T) {
	// Not parallel: it sets an environment variable.
	url, _ := setup(t, "")
	require.Equal(t, 0, run(t, url, "install").code)
	t.Setenv(cli.TokenEnv, "my-own-token")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan int, 1)
	go func() {
		done <- cli.Run(ctx, []string{"--database-url", url, "serve", "--listen", "127.0.0.1:0", "--allow-undo"}, strings.NewReader(""), pw, io.Discard)
		pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	require.NoError(t, err)
	go io.Copy(io.Discard, pr) //nolint:errcheck // drain
	require.Regexp(t, `^http://127\.0\.0\.1:\d+/\?token=my-own-token\n$`, line)
	cancel()
	require.Equal(t, 0, <-done)
}

func TestServeHelp(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	code := cli.Run(context.Background(), []string{"serve", "--help"}, strings.NewReader(""), &out, &out)
	require.Equal(t, 0, code)
	for _, want := range []string{"Examples:", "pgundo serve --listen 127.0.0.1:9000 --allow-undo", "default 127.0.0.1:8080", cli.TokenEnv} {
		require.Contains(t, out.String(), want)
	}
}

// TestServeDemo runs pgundo demo --serve: the console on the demo's
// database lists its sessions, the patch undone.
func TestServeDemo(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	var stderr bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- cli.Run(ctx, []string{"demo", "--serve", "--listen", "127.0.0.1:0"}, strings.NewReader(""), pw, &stderr)
		pw.Close()
	}()
	sc := bufio.NewScanner(pr)
	var base, token string
	var out strings.Builder
	for sc.Scan() {
		out.WriteString(sc.Text() + "\n")
		if m := regexp.MustCompile(`^(http://127\.0\.0\.1:\d+)/\?token=([0-9a-f]{32})$`).FindStringSubmatch(sc.Text()); m != nil {
			base, token = m[1], m[2]
			break
		}
	}
	require.NotEmpty(t, base, "no console address in the demo's output:\n%s\n%s", out.String(), stderr.String())
	require.Contains(t, out.String(), "the patch is undone exactly")
	go io.Copy(io.Discard, pr) //nolint:errcheck // drain
	req, err := http.NewRequest(http.MethodGet, base+"/?app=psql", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	body, err := io.ReadAll(res.Body)
	res.Body.Close()
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, res.StatusCode)
	require.Equal(t, 1, strings.Count(string(body), "<tr data-session="), string(body))
	require.Contains(t, string(body), `<span class="undone">undone</span>`)
	require.Contains(t, string(body), "undo allowed")
	cancel()
	stopped(t, done, &stderr, 30*time.Second, "pgundo demo --serve")
}
