package pgcluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// BinDirEnv is the environment variable that, when set, names the directory
// holding the PostgreSQL server binaries (initdb, pg_ctl, postgres).
const BinDirEnv = "PGUNDO_PG_BINDIR"

// requiredBinaries are the executables a usable server bin directory must hold.
var requiredBinaries = []string{"initdb", "pg_ctl", "postgres"}

// FindBinDir locates the directory holding the PostgreSQL server binaries.
//
// The search order is:
//  1. $PGUNDO_PG_BINDIR, if set; it must contain initdb, pg_ctl and postgres,
//     otherwise an error naming the directory and the missing binaries is
//     returned (no further fallback happens);
//  2. the highest-version /usr/lib/postgresql/<major>/bin that contains
//     initdb, pg_ctl and postgres (majors compared numerically, so 10 > 9.6);
//  3. the output of `pg_config --bindir`, if pg_config is on $PATH and that
//     directory holds the server binaries;
//  4. the directory of initdb found on $PATH.
//
// If nothing is found the error says which places were searched and how to
// install the binaries or point PGUNDO_PG_BINDIR at them.
func FindBinDir() (string, error) {
	return defaultFinder().find()
}

// finder holds the environment FindBinDir consults, so tests can fake it.
type finder struct {
	getenv   func(string) string
	globRoot string // normally /usr/lib/postgresql
	lookPath func(string) (string, error)
	// pgConfigBinDir runs `<pgConfig> --bindir`.
	pgConfigBinDir func(pgConfig string) (string, error)
}

func defaultFinder() finder {
	return finder{
		getenv:   os.Getenv,
		globRoot: "/usr/lib/postgresql",
		lookPath: exec.LookPath,
		pgConfigBinDir: func(pgConfig string) (string, error) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, pgConfig, "--bindir").Output()
			if err != nil {
				return "", err
			}
			return strings.TrimSpace(string(out)), nil
		},
	}
}

func (f finder) find() (string, error) {
	if dir := f.getenv(BinDirEnv); dir != "" {
		if err := checkBinDir(dir); err != nil {
			return "", fmt.Errorf("%s is set to %q but %w", BinDirEnv, dir, err)
		}
		return dir, nil
	}

	var looked []string

	// 2. /usr/lib/postgresql/*/bin, highest major first.
	pattern := filepath.Join(f.globRoot, "*", "bin")
	matches, _ := filepath.Glob(pattern)
	type candidate struct {
		dir     string
		version []int
	}
	var cands []candidate
	for _, m := range matches {
		if checkBinDir(m) != nil {
			continue
		}
		v, ok := parseVersion(filepath.Base(filepath.Dir(m)))
		if !ok {
			continue
		}
		cands = append(cands, candidate{m, v})
	}
	if len(cands) > 0 {
		best := cands[0]
		for _, c := range cands[1:] {
			if compareVersions(c.version, best.version) > 0 {
				best = c
			}
		}
		return best.dir, nil
	}
	looked = append(looked, pattern)

	// 3. pg_config --bindir.
	if pgConfig, err := f.lookPath("pg_config"); err == nil {
		dir, err := f.pgConfigBinDir(pgConfig)
		switch {
		case err != nil:
			looked = append(looked, fmt.Sprintf("`%s --bindir` (failed: %v)", pgConfig, err))
		case checkBinDir(dir) != nil:
			looked = append(looked, fmt.Sprintf("`%s --bindir` = %s", pgConfig, dir))
		default:
			return dir, nil
		}
	} else {
		looked = append(looked, "pg_config --bindir (pg_config not on PATH)")
	}

	// 4. initdb on PATH.
	if initdb, err := f.lookPath("initdb"); err == nil {
		dir := filepath.Dir(initdb)
		if checkBinDir(dir) == nil {
			return dir, nil
		}
		looked = append(looked, dir+" (initdb from PATH)")
	} else {
		looked = append(looked, "initdb on PATH")
	}

	return "", errors.New("no PostgreSQL server binaries found (looked in: " +
		strings.Join(looked, ", ") +
		"); install them (Debian/Ubuntu: apt-get install -y postgresql) or set " +
		BinDirEnv + " to the directory holding initdb and pg_ctl.")
}

// checkBinDir reports which of the required binaries dir lacks.
func checkBinDir(dir string) error {
	st, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("directory %s cannot be used: %w", dir, err)
	}
	if !st.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	var missing []string
	for _, name := range requiredBinaries {
		if !isExecutable(filepath.Join(dir, name)) {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("directory %s is missing %s (it must contain %s)",
			dir, strings.Join(missing, ", "), strings.Join(requiredBinaries, ", "))
	}
	return nil
}

func isExecutable(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0
}

// parseVersion parses "15", "9.6" or "17beta1" into numeric components.
func parseVersion(s string) ([]int, bool) {
	var out []int
	for _, part := range strings.Split(s, ".") {
		end := 0
		for end < len(part) && part[end] >= '0' && part[end] <= '9' {
			end++
		}
		if end == 0 {
			break
		}
		n, err := strconv.Atoi(part[:end])
		if err != nil {
			return nil, false
		}
		out = append(out, n)
		if end != len(part) {
			break
		}
	}
	return out, len(out) > 0
}

func compareVersions(a, b []int) int {
	for i := 0; i < len(a) || i < len(b); i++ {
		var x, y int
		if i < len(a) {
			x = a[i]
		}
		if i < len(b) {
			y = b[i]
		}
		if x != y {
			if x < y {
				return -1
			}
			return 1
		}
	}
	return 0
}
