// Package scenariotest runs golden scenario files for the pure cores'
// tests (autoscale, lease): each testdata/*.txt holds commands and, below
// each, its expected output; a test replays the commands and compares, or
// with -rewrite writes the output back as the new expectation.
package scenariotest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Run replays every testdata/*.txt of the calling package as a subtest:
// replay turns a file's text into the text it should be. With rewrite the
// files are overwritten with replay's output instead of checked.
func Run(t *testing.T, rewrite bool, replay func(t *testing.T, script string) string) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "*.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no scenarios in testdata/*.txt")
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".txt"), func(t *testing.T) {
			in, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			out := replay(t, string(in))
			if rewrite {
				if err := os.WriteFile(file, []byte(out), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if out != string(in) {
				t.Errorf("%s: output differs (rerun with -rewrite to accept):\n%s", file, FirstDiff(string(in), out))
			}
		})
	}
}

// FirstDiff describes the first line where got differs from want.
func FirstDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < max(len(w), len(g)); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			return fmt.Sprintf("line %d:\nwant: %s\ngot:  %s", i+1, wl, gl)
		}
	}
	return "(no difference)"
}
