// Resources: a task that needs 2 CPUs, and I/O-bound tasks declared at 0.25
// CPU that run four to a core.
package main

import (
	"fmt"
	"time"

	"github.com/wasmfabric/fabric/sdk"
)

var heavy = sdk.Task0("heavy", func() (string, error) {
	return "heavy task ran with 2 CPUs reserved", nil
}, sdk.CPUs(2))

// fetch waits two seconds (on I/O, not computing) and reports when it ran.
var fetch = sdk.Task1("fetch", func(i int) ([2]int64, error) {
	start := time.Now().UnixNano()
	time.Sleep(2 * time.Second)
	return [2]int64{start, time.Now().UnixNano()}, nil
}, sdk.CPUs(0.25))

func init() { sdk.Main(run) }

func run(args []string) error {
	msg, err := heavy.Remote().Get()
	if err != nil {
		return err
	}
	fmt.Println(msg)
	var refs []sdk.Ref[[2]int64]
	for i := range 8 {
		refs = append(refs, fetch.Remote(i))
	}
	spans, err := sdk.GetAll(refs)
	if err != nil {
		return err
	}
	fmt.Printf("8 I/O tasks at 0.25 CPU: at most %d ran at once\n", maxOverlap(spans))
	return nil
}

// maxOverlap returns the largest number of spans running at one instant.
func maxOverlap(spans [][2]int64) int {
	best := 0
	for _, s := range spans {
		n := 0
		for _, o := range spans {
			if o[0] <= s[0] && s[0] < o[1] {
				n++
			}
		}
		best = max(best, n)
	}
	return best
}

func main() {}
