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

type benchEcho struct{}

var _ = Deployment("BenchEcho", func() (*benchEcho, error) { return &benchEcho{}, nil }, func(_ *benchEcho, r Request) (Response, error) {
	return Response{Header: map[string][]string{"Content-Type": {"text/plain; charset=utf-8"}}, Body: r.Body}, nil
})

// BenchmarkDispatchServe is the guest-side cost of a request to a Go
// deployment (natively; in wasm multiply by the guest slowdown).
func BenchmarkDispatchServe(b *testing.B) {
	if _, _, err := dispatch("BenchEcho.__init__", []byte{0x80}); err != nil {
		b.Fatal(err)
	}
	req := abi.ServeRequest{Method: "POST", Path: "/echo", Route: "/echo", Body: []byte(`{"input": 42}`),
		Header: map[string][]string{"Content-Type": {"application/json"}, "User-Agent": {"Go-http-client/1.1"},
			"Accept-Encoding": {"gzip"}, "Content-Length": {"13"}}}
	args := req.AppendCBOR([]byte{0x81})
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := dispatch("BenchEcho.__call__", args); err != nil {
			b.Fatal(err)
		}
	}
}
