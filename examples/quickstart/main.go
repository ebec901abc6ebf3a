// Quickstart: Ray's first example. Five calls of a task that sleeps two
// seconds run at once and the driver prints their results.
//
// Run it with `make demo` or:
//
//	fabric build ./examples/quickstart -o quickstart.wasm && fabric run quickstart.wasm
package main

import (
	"fmt"
	"time"

	"github.com/wasmfabric/fabric/sdk"
)

// square sleeps (waiting, not computing), so it asks for a quarter of a CPU:
// four run at once on each core, as Ray's I/O-bound tasks do.
var square = sdk.Task1("square", func(x int) (int, error) {
	time.Sleep(2 * time.Second)
	return x * x, nil
}, sdk.CPUs(0.25))

func init() { sdk.Main(run) }

func run(args []string) error {
	var refs []sdk.Ref[int]
	for i := 0; i < 5; i++ {
		refs = append(refs, square.Remote(i))
	}
	results, err := sdk.GetAll(refs)
	if err != nil {
		return err
	}
	fmt.Println(results)
	return nil
}

func main() {}
