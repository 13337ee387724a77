package pgcluster

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A postgres binary that cannot run (here: a missing shared library, as
// with an embedded-postgres build whose .so symlinks were not made) fails
// Start with the loader's message and what to check, before initdb runs.
func TestStartUnrunnablePostgres(t *testing.T) {
	dir := fakeBinDir(t, t.TempDir())
	script := "#!/bin/sh\necho 'postgres: error while loading shared libraries: libicui18n.so.60: cannot open shared object file' >&2\nexit 127\n"
	if err := os.WriteFile(filepath.Join(dir, "postgres"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(t.TempDir(), "initdb-ran")
	if err := os.WriteFile(filepath.Join(dir, "initdb"), []byte("#!/bin/sh\ntouch '"+marker+"'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	parent := t.TempDir()
	_, err := Start(context.Background(), Options{BinDir: dir, TempDir: parent})
	if err == nil {
		t.Fatal("Start succeeded with a postgres that cannot run")
	}
	for _, want := range []string{filepath.Join(dir, "postgres"), "libicui18n.so.60", "ldd"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %q: %v", want, err)
		}
	}
	if _, statErr := os.Stat(marker); statErr == nil {
		t.Error("initdb ran although postgres cannot")
	}
	if entries, _ := os.ReadDir(parent); len(entries) != 0 {
		t.Fatalf("temp dir left behind: %v", entries)
	}
}
