package examples_test

import (
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
		{name: "wait", want: []string{"finished: 200 ms\nfinished: 400 ms\nfinished: 600 ms\nfinished: 800 ms\n"}},
		{name: "resources", args: []string{"--num-cpus", "2"}, want: []string{"heavy task ran with 2 CPUs reserved\n", "at most 8 ran at once\n"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			wasm := testrig.Guest(t, "examples/"+c.name)
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
