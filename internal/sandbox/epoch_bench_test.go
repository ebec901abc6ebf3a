package sandbox

import (
	"context"
	"testing"

	"github.com/tetratelabs/wazero"
)

// loopModule is a module exporting run(n i32) i64: a tight loop of n
// iterations that sums 3*i. With check, each iteration first reads a
// mutable global and traps if it is set: the interruption check an
// epoch scheme would put at every loop header (a load and a branch the
// host never takes until it wants the guest to stop).
func loopModule(check bool) []byte {
	body := []byte{
		0x02, 0x01, 0x7f, 0x01, 0x7e, // locals: i i32, acc i64
		0x03, 0x40, // loop
	}
	if check {
		body = append(body, 0x23, 0x00, 0x04, 0x40, 0x00, 0x0b) // global.get 0; if; unreachable; end
	}
	body = append(body,
		0x20, 0x02, 0x20, 0x01, 0xad, 0x42, 0x03, 0x7e, 0x7c, 0x21, 0x02, // acc += i64(i) * 3
		0x20, 0x01, 0x41, 0x01, 0x6a, 0x22, 0x01, // i = i + 1
		0x20, 0x00, 0x49, 0x0d, 0x00, // br_if loop (i < n)
		0x0b,             // end loop
		0x20, 0x02, 0x0b, // acc; end
	)
	section := func(id byte, content ...byte) []byte {
		return append([]byte{id, byte(len(content))}, content...)
	}
	m := []byte{0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00}
	m = append(m, section(1, 0x01, 0x60, 0x01, 0x7f, 0x01, 0x7e)...)                 // type: (i32) -> i64
	m = append(m, section(3, 0x01, 0x00)...)                                         // one function of type 0
	m = append(m, section(6, 0x01, 0x7f, 0x01, 0x41, 0x00, 0x0b)...)                 // global: mut i32 = 0
	m = append(m, section(7, 0x01, 0x03, 'r', 'u', 'n', 0x00, 0x00)...)              // export run
	m = append(m, section(10, append([]byte{0x01, byte(len(body))}, body...)...)...) // code
	return m
}

// BenchmarkLoopInterruption measures what it costs a loop-heavy guest to
// be interruptible: a check of a global at each loop header (as an epoch
// scheme inserts), against wazero's WithCloseOnContextDone (which checks
// at every function entry and loop header through the host), against no
// check at all. Each op runs 10 million iterations.
//
//	go test -run XXX -bench LoopInterruption ./internal/sandbox/
func BenchmarkLoopInterruption(b *testing.B) {
	const n = 10_000_000
	for _, tc := range []struct {
		name  string
		check bool
		close bool
	}{
		{name: "plain"},
		{name: "global_check", check: true},
		{name: "close_on_context_done", close: true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			ctx := context.Background()
			rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigCompiler().WithCloseOnContextDone(tc.close))
			defer rt.Close(ctx)
			mod, err := rt.Instantiate(ctx, loopModule(tc.check))
			if err != nil {
				b.Fatal(err)
			}
			run := mod.ExportedFunction("run")
			want := uint64(3 * (n - 1) * n / 2)
			b.ResetTimer()
			for range b.N {
				res, err := run.Call(ctx, n)
				if err != nil || res[0] != want {
					b.Fatalf("run = %v, %v; want %d", res, err, want)
				}
			}
		})
	}
}
