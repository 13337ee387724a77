package pgcluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const watchdogHelperEnv = "PGCLUSTER_TEST_WATCHDOG_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(watchdogHelperEnv) == "1" {
		watchdogHelper()
	}
	os.Exit(m.Run())
}

// watchdogHelper runs in a child process of TestWatchdogCleansUpAfterExit:
// it starts a cluster and exits abruptly without calling Stop.
func watchdogHelper() {
	c, err := Start(context.Background(), Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	fmt.Printf("BASEDIR=%s\n", filepath.Dir(c.DataDir()))
	os.Exit(0) // no Stop: the watchdog must clean up
}

// processesMentioning lists PIDs whose command line contains s.
func processesMentioning(s string) []string {
	var pids []string
	cmdlines, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range cmdlines {
		b, err := os.ReadFile(f)
		if err == nil && strings.Contains(string(b), s) {
			pids = append(pids, filepath.Base(filepath.Dir(f)))
		}
	}
	return pids
}

func TestWatchdogCleansUpAfterExit(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), watchdogHelperEnv+"=1")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	var base string
	for _, line := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(line, "BASEDIR="); ok {
			base = v
		}
	}
	if base == "" {
		t.Fatalf("helper printed no BASEDIR: %s", out)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, err := os.Stat(base)
		pids := processesMentioning(base)
		if errors.Is(err, os.ErrNotExist) && len(pids) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("20s after the owning process exited: stat %s: %v; processes still using it: %v", base, err, pids)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
