//go:build !wasip1

package sdk

import (
	"testing"

	"github.com/wasmfabric/fabric/internal/abi"
)

// BenchmarkEncodeSpec is the guest-side cost of submitting a no-op task
// (natively; in wasm multiply by the guest slowdown).
func BenchmarkEncodeSpec(b *testing.B) {
	d := &taskDef{name: "small_value"}
	for range b.N {
		spec := abi.TaskSpec{Func: d.name, NumReturns: d.nret, Options: applyOptions(d.opts, nil)}
		var err error
		if spec.Args, spec.Refs, _, err = buildArgs(nil); err != nil {
			b.Fatal(err)
		}
		if _, err := encMode.Marshal(spec); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDispatchNoop is the guest-side cost of running a no-op task.
func BenchmarkDispatchNoop(b *testing.B) {
	args := []byte{0x80}
	for range b.N {
		if _, _, err := dispatch("t_panic_unused_noop", args); err == nil {
			b.Fatal("expected an unknown function")
		}
	}
}

// benchNoop registers "bench_noop" for BenchmarkDispatchRegistered.
var _ = Task0("bench_noop", func() (int, error) { return 0, nil })

func BenchmarkDispatchRegistered(b *testing.B) {
	args := []byte{0x80}
	for range b.N {
		if _, _, err := dispatch("bench_noop", args); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeStagedInt(b *testing.B) {
	it := staged{data: []byte{0x00}}
	for range b.N {
		var v int
		if err := decodeStaged(it, &v); err != nil {
			b.Fatal(err)
		}
	}
}
