package examples_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wasmfabric/fabric/internal/testrig"
)

// TestExamples runs every example with the real binary on an embedded node
// and checks its output.
func TestExamples(t *testing.T) {
	cases := []struct {
		name    string
		args    []string
		want    []string
		maxTime time.Duration // wall time of the whole run, well under the sequential time
	}{
		{name: "quickstart", want: []string{"[0 1 4 9 16]\n"}, maxTime: 8 * time.Second},
		{name: "batches", want: []string{"Processed 100 batches\n"}},
		{name: "counter", want: []string{"Final count: 100\n"}},
		{name: "shared", want: []string{"10 tasks summed the same 10000000-float object: 10000000 each\n"}},
		{name: "wait", want: []string{"finished: 500 ms\nfinished: 1000 ms\nfinished: 1500 ms\nfinished: 2000 ms\n"}},
		{name: "c_add", want: []string{"2 + 3 = 5\n"}},
		{name: "resources", args: []string{"--num-cpus", "2"}, want: []string{"heavy task ran with 2 CPUs reserved\n", "at most 8 ran at once\n"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var wasm string
			if c.name == "c_add" {
				wasm = testrig.Make(t, "bin/examples/c_add.wasm")
			} else {
				wasm = testrig.Guest(t, "examples/"+c.name)
			}
			res := testrig.Run(t, 3*time.Minute, append([]string{"run", wasm}, c.args...)...)
			if res.Code != 0 {
				t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", res.Code, res.Stdout, res.Stderr)
			}
			for _, w := range c.want {
				if !strings.Contains(res.Stdout, w) {
					t.Errorf("output lacks %q:\n%s", w, res.Stdout)
				}
			}
			if c.maxTime > 0 && res.Elapsed > c.maxTime {
				t.Errorf("took %s, want under %s", res.Elapsed, c.maxTime)
			}
		})
	}
}

// TestABIDocExample keeps the C guest in docs/ABI.md identical to
// examples/c/add.c, which TestExamples builds and runs.
func TestABIDocExample(t *testing.T) {
	root := testrig.Root(t)
	doc, err := os.ReadFile(filepath.Join(root, "docs", "ABI.md"))
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile(filepath.Join(root, "examples", "c", "add.c"))
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(doc), "```c\n")
	if !ok {
		t.Fatal("docs/ABI.md has no C example")
	}
	block, _, ok := strings.Cut(after, "```")
	if !ok {
		t.Fatal("docs/ABI.md: the C example is not closed")
	}
	if block != string(src) {
		t.Error("the C example in docs/ABI.md differs from examples/c/add.c; keep them identical")
	}
}
