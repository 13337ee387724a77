package pgcluster

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// watchdogScript runs in /bin/sh with $1 = data dir and $2 = temp dir. It
// blocks reading stdin, a pipe whose write end only this process holds. A
// "q" line means the cluster was stopped normally; EOF means this process
// went away without Stop, so the server is shut down (SIGQUIT = immediate
// shutdown) and the temp dir removed.
const watchdogScript = `read -r cmd
[ "$cmd" = q ] && exit 0
pid=$(head -n 1 "$1/postmaster.pid" 2>/dev/null)
if [ -n "$pid" ]; then
	kill -QUIT "$pid" 2>/dev/null
	i=0
	while [ $i -lt 100 ] && kill -0 "$pid" 2>/dev/null; do sleep 0.1; i=$((i+1)); done
fi
rm -rf "$2"
`

type watchdog struct {
	w    *os.File
	done chan struct{}
}

// startWatchdog starts the watchdog process. It runs as the current user
// (root may signal the postgres-owned server and remove its files) in its
// own process group, so a terminal's Ctrl-C does not kill it before it can
// clean up.
func startWatchdog(dataDir, baseDir string) (*watchdog, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("pgcluster: watchdog pipe: %w", err)
	}
	cmd := exec.Command("/bin/sh", "-c", watchdogScript, "pgundo-pg-watchdog", dataDir, baseDir)
	cmd.Stdin = r
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		_ = r.Close()
		_ = w.Close()
		return nil, fmt.Errorf("pgcluster: start watchdog: %w", err)
	}
	_ = r.Close()
	wd := &watchdog{w: w, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(wd.done)
	}()
	return wd, nil
}

// release tells the watchdog the cluster was cleaned up normally and waits
// briefly for it to exit. Safe on a nil or already released watchdog.
func (wd *watchdog) release() {
	if wd == nil || wd.w == nil {
		return
	}
	_, _ = wd.w.WriteString("q\n")
	_ = wd.w.Close()
	wd.w = nil
	select {
	case <-wd.done:
	case <-time.After(5 * time.Second):
	}
}
