package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/wasmfabric/fabric/internal/testrig"
)

// instrumentPrograms are modules exporting run(i64) -> i64, written to
// reach every path of the rewrite: small loops (unrolled) and large ones
// (wrapped), loops with results and with parameters, branches that leave
// loops for outer blocks and for the function, br_table, return from deep
// inside, recursion, calls through a table, ref.func, a start function
// and a name section.
var instrumentPrograms = map[string]string{
	"nested": `(module
	  (func $run (export "run") (param $n i64) (result i64)
	    (local $i i64) (local $j i64) (local $acc i64)
	    (block $done
	      (loop $outer
	        (br_if $done (i64.ge_u (local.get $i) (local.get $n)))
	        (local.set $j (i64.const 0))
	        (block $inner_done
	          (loop $inner
	            (br_if $inner_done (i64.ge_u (local.get $j) (i64.rem_u (local.get $i) (i64.const 7))))
	            (local.set $acc (i64.add (local.get $acc) (i64.mul (local.get $i) (local.get $j))))
	            (local.set $j (i64.add (local.get $j) (i64.const 1)))
	            (br $inner)))
	        (local.set $i (i64.add (local.get $i) (i64.const 1)))
	        (br $outer)))
	    (local.get $acc)))`,

	"branches": `(module
	  (func $id (param i64) (result i64) (local.get 0))
	  (func $run (export "run") (param $n i64) (result i64)
	    (local $i i64) (local $acc i64)
	    (block $out (result i64)
	      ;; a small loop: unrolled; it leaves for $out, the function and itself
	      (loop $l
	        (local.set $i (i64.add (local.get $i) (i64.const 1)))
	        (local.set $acc (i64.add (local.get $acc) (local.get $i)))
	        (if (i64.eq (local.get $i) (i64.const 1000003))
	          (then (return (i64.const -1))))
	        (block $skip
	          (br_table $skip $l $skip (i32.wrap_i64 (i64.rem_u (local.get $i) (i64.const 3)))))
	        (br_if 1 (i64.const 77) (i64.ge_u (local.get $i) (local.get $n)))
	        (br $l))
	      (i64.const 0))
	    (local.set $acc (i64.add (local.get $acc)))
	    ;; a loop with a call: wrapped; it breaks out with a value
	    (local.set $i (i64.const 0))
	    (block $w (result i64)
	      (loop $l2
	        (local.set $i (call $id (i64.add (local.get $i) (i64.const 1))))
	        (br_if $w (local.get $acc) (i64.ge_u (local.get $i) (local.get $n)))
	        (local.set $acc (i64.xor (local.get $acc) (i64.shl (local.get $i) (i64.const 3))))
	        (block $b2
	          (br_table $b2 $l2 $b2 (i32.wrap_i64 (i64.rem_u (local.get $i) (i64.const 4)))))
	        ;; a br_table with values, to a block, the loop's block and the function
	        (drop (block $v (result i64)
	          (br_table $v $w 3 (local.get $acc)
	            (select (i32.const 0) (i32.const 2) (i64.ne (local.get $i) (i64.const 999999))))))
	        (br $l2))
	      (i64.const 5))
	    (i64.add (local.get $i))))`,

	"results": `(module
	  (func $id (param i64) (result i64) (local.get 0))
	  (func $run (export "run") (param $n i64) (result i64)
	    (local $i i64)
	    ;; a loop with a result, small
	    (loop $a (result i64)
	      (local.set $i (i64.add (local.get $i) (i64.const 1)))
	      (br_if $a (i64.lt_u (local.get $i) (local.get $n)))
	      (i64.mul (local.get $i) (i64.const 3)))
	    ;; a loop with a result and a call
	    (loop $b (result i64)
	      (local.set $i (call $id (i64.sub (local.get $i) (i64.const 1))))
	      (br_if $b (i64.gt_s (local.get $i) (i64.const 0)))
	      (local.get $i))
	    (i64.add)))`,

	"params": `(module
	  (func $run (export "run") (param $n i64) (result i64)
	    (local $k i64)
	    (i64.const 0)
	    (local.get $n)
	    ;; a loop that takes parameters (acc, k): sums k, k-1, ..., 0
	    (loop $l (param i64 i64) (result i64)
	      (local.set $k)
	      (local.get $k)
	      (i64.add)
	      (if (param i64) (result i64) (i64.eqz (local.get $k))
	        (then (return)))
	      (i64.sub (local.get $k) (i64.const 1))
	      (br $l))))`,

	"recursion": `(module
	  (func $fib (param $n i64) (result i64)
	    (if (result i64) (i64.lt_u (local.get $n) (i64.const 2))
	      (then (local.get $n))
	      (else (i64.add (call $fib (i64.sub (local.get $n) (i64.const 1)))
	                     (call $fib (i64.sub (local.get $n) (i64.const 2)))))))
	  (func $run (export "run") (param $n i64) (result i64)
	    (call $fib (i64.rem_u (local.get $n) (i64.const 27)))))`,

	"indirect": `(module
	  (type $op (func (param i64) (result i64)))
	  (table 3 funcref)
	  (elem (i32.const 0) $inc $dbl $neg)
	  (global $started (mut i64) (i64.const 0))
	  (func $inc (type $op) (i64.add (local.get 0) (i64.const 1)))
	  (func $dbl (type $op) (i64.mul (local.get 0) (i64.const 2)))
	  (func $neg (type $op) (i64.sub (i64.const 0) (local.get 0)))
	  (func $start (global.set $started (i64.const 1000)))
	  (start $start)
	  (func $run (export "run") (param $n i64) (result i64)
	    (local $i i64) (local $acc i64)
	    (local.set $acc (global.get $started))
	    (drop (ref.func $dbl))
	    (block $done
	      (loop $l
	        (br_if $done (i64.ge_u (local.get $i) (local.get $n)))
	        (local.set $acc (call_indirect (type $op) (local.get $acc)
	          (i32.wrap_i64 (i64.rem_u (local.get $i) (i64.const 3)))))
	        (local.set $i (i64.add (local.get $i) (i64.const 1)))
	        (br $l)))
	    (local.get $acc)))`,
}

// instrumentInputs are the arguments each program runs with; the last is
// long enough to spend the fuel many times over.
var instrumentInputs = []uint64{0, 1, 2, 5, 100, 3_000_000}

// watModule assembles a module with wat2wasm (which `make test` installs).
func watModule(t testing.TB, name, src string) []byte {
	t.Helper()
	tool := testrig.Make(t, "bin/wat2wasm")
	dir := t.TempDir()
	in := filepath.Join(dir, name+".wat")
	out := filepath.Join(dir, name+".wasm")
	if err := os.WriteFile(in, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := exec.Command(tool, "--debug-names", in, "-o", out).CombinedOutput(); err != nil {
		t.Fatalf("wat2wasm %s: %v\n%s", name, err, b)
	}
	wasm, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return wasm
}

// rawRuntime is a wazero runtime whose fabric module has only yield,
// counting its calls, for modules that are not guests.
func rawRuntime(t testing.TB, yields *atomic.Int64, stop *atomic.Bool) wazero.Runtime {
	ctx := context.Background()
	rt := wazero.NewRuntime(ctx)
	t.Cleanup(func() { _ = rt.Close(ctx) })
	_, err := rt.NewHostModuleBuilder("fabric").NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(func(context.Context, api.Module, []uint64) {
			yields.Add(1)
			if stop != nil && stop.Load() {
				panic(&InterruptedError{Reason: errors.New("test stop")})
			}
		}), nil, nil).Export(yieldImport).
		NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(context.Context, api.Module, []uint64) {
		panic(errStackBudget)
	}), nil, nil).Export(stackExhaustedImport).Instantiate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return rt
}

func runExport(t testing.TB, rt wazero.Runtime, wasm []byte, arg uint64) (uint64, error) {
	ctx := context.Background()
	mod, err := rt.InstantiateWithConfig(ctx, wasm, wazero.NewModuleConfig().WithName(""))
	if err != nil {
		t.Fatal(err)
	}
	defer mod.Close(ctx)
	res, err := mod.ExportedFunction("run").Call(ctx, arg)
	if err != nil {
		return 0, err
	}
	return res[0], nil
}

// TestInstrumentKeepsResults runs each program as written and as
// rewritten, and requires the same results, and yields on long runs.
func TestInstrumentKeepsResults(t *testing.T) {
	for name, src := range instrumentPrograms {
		t.Run(name, func(t *testing.T) {
			wasm := watModule(t, name, src)
			out, err := instrument(wasm)
			if err != nil {
				t.Fatalf("instrument: %v", err)
			}
			var yields atomic.Int64
			rt := rawRuntime(t, &yields, nil)
			for _, n := range instrumentInputs {
				want, err := runExport(t, rt, wasm, n)
				if err != nil {
					t.Fatalf("run(%d) as written: %v", n, err)
				}
				got, err := runExport(t, rt, out, n)
				if err != nil {
					t.Fatalf("run(%d) rewritten: %v", n, err)
				}
				if got != want {
					t.Errorf("run(%d) = %d rewritten, %d as written", n, int64(got), int64(want))
				}
			}
			if name != "recursion" && yields.Load() == 0 {
				t.Errorf("no yield in runs of up to %d iterations", instrumentInputs[len(instrumentInputs)-1])
			}
		})
	}
}

// spinPrograms never return: a tight loop (unrolled), a loop with a call
// (wrapped) and endless mutual recursion through a table... bounded by
// the stack, so recursion loops instead.
var spinPrograms = map[string]string{
	"tight": `(module (func (export "run") (param i64) (result i64)
	  (loop $l (local.set 0 (i64.add (local.get 0) (i64.const 1))) (br $l)) (unreachable)))`,
	"with_call": `(module
	  (func $f (param i64) (result i64) (i64.add (local.get 0) (i64.const 1)))
	  (func (export "run") (param i64) (result i64)
	    (loop $l (local.set 0 (call $f (local.get 0))) (br $l)) (unreachable)))`,
	"recursion": `(module
	  (func $r (param i64) (result i64)
	    (if (result i64) (i64.eqz (local.get 0))
	      (then (i64.const 0))
	      (else (i64.add (i64.const 1) (call $r (i64.sub (local.get 0) (i64.const 1)))))))
	  (func (export "run") (param i64) (result i64)
	    (loop $l (drop (call $r (i64.const 1000))) (br $l)) (unreachable)))`,
}

// TestInstrumentStopsAndLetsGoCollect runs guests that never return: the
// collector must still stop the world (without the rewrite it waits for
// the guest forever), and a stop must end the call.
func TestInstrumentStopsAndLetsGoCollect(t *testing.T) {
	for name, src := range spinPrograms {
		t.Run(name, func(t *testing.T) {
			out, err := instrument(watModule(t, name, src))
			if err != nil {
				t.Fatal(err)
			}
			var yields atomic.Int64
			var stop atomic.Bool
			rt := rawRuntime(t, &yields, &stop)
			done := make(chan error, 1)
			go func() {
				_, err := runExport(t, rt, out, 0)
				done <- err
			}()
			for yields.Load() == 0 {
				time.Sleep(time.Millisecond)
			}
			gcDone := make(chan struct{})
			go func() { runtime.GC(); close(gcDone) }()
			select {
			case <-gcDone:
			case <-time.After(20 * time.Second):
				t.Fatal("runtime.GC did not finish while the guest ran")
			}
			start := time.Now()
			stop.Store(true)
			select {
			case err := <-done:
				var ie *InterruptedError
				if !errors.As(err, &ie) {
					t.Fatalf("call ended with %v, want an InterruptedError", err)
				}
				t.Logf("stopped %s after %v", name, time.Since(start))
			case <-time.After(20 * time.Second):
				t.Fatal("the call did not stop")
			}
		})
	}
}

// TestInstrumentGuests rewrites the real guests the tests build, and
// requires that wazero compiles what comes out.
func TestInstrumentGuests(t *testing.T) {
	ctx := context.Background()
	for _, target := range []string{"bin/testguests/cmatmul.wasm", "bin/examples/c_add.wasm"} {
		wasm, err := os.ReadFile(testrig.Make(t, target))
		if err != nil {
			t.Fatal(err)
		}
		out, err := instrument(wasm)
		if err != nil {
			t.Fatalf("%s: %v", target, err)
		}
		rt := wazero.NewRuntime(ctx)
		if _, err := rt.CompileModule(ctx, out); err != nil {
			t.Errorf("%s rewritten does not compile: %v", target, err)
		}
		_ = rt.Close(ctx)
	}
}

// withoutCustomSections returns the module without its custom sections;
// from a malformed section on, the bytes are kept as they are.
func withoutCustomSections(wasm []byte) []byte {
	if len(wasm) < 8 {
		return wasm
	}
	out := append([]byte(nil), wasm[:8]...)
	pos := 8
	for pos < len(wasm) {
		size, n := uleb(wasm[pos+1:])
		end := pos + 1 + n + int(size)
		if n == 0 || end > len(wasm) || end < pos {
			return append(out, wasm[pos:]...)
		}
		if wasm[pos] != wasmSecCustom {
			out = append(out, wasm[pos:end]...)
		}
		pos = end
	}
	return out
}

// TestInstrumentCleansNameSection gives the engine a guest whose name
// section claims 2^31 local names: it must compile it without trying to
// allocate them (wazero alone allocates 24 GiB and dies).
func TestInstrumentCleansNameSection(t *testing.T) {
	wasm, err := os.ReadFile(testrig.Make(t, "bin/examples/c_add.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	sub := []byte{0x01}             // one function
	sub = append(sub, 0x00)         // function 0
	sub = appendULEB(sub, 1<<31)    // claims 2^31 locals
	name := appendName(nil, "name") // custom section "name"
	name = append(name, 0x02)       // local names
	name = appendULEB(name, uint64(len(sub)))
	name = append(name, sub...)
	hostile := append(append([]byte(nil), wasm...), 0x00)
	hostile = appendULEB(hostile, uint64(len(name)))
	hostile = append(hostile, name...)
	ctx := context.Background()
	e, err := NewEngine(ctx, EngineConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close(ctx)
	if _, err := e.Compile(ctx, hostile); err != nil {
		t.Fatalf("compile: %v", err)
	}
}

// FuzzInstrument holds the rewrite to wazero: what it makes compiles
// exactly when what it was given does, and it never panics, whatever the
// input. (That the rewrite takes every module wazero takes is held by
// the tests above, on hand-written modules and real guests.)
func FuzzInstrument(f *testing.F) {
	for name, src := range instrumentPrograms {
		f.Add(watModule(f, name, src))
	}
	for name, src := range spinPrograms {
		f.Add(watModule(f, name, src))
	}
	for name, src := range stackPrograms() {
		f.Add(watModule(f, name, src))
	}
	for _, target := range []string{"bin/testguests/cmatmul.wasm", "bin/examples/c_add.wasm"} {
		if wasm, err := os.ReadFile(testrig.Make(f, target)); err == nil {
			f.Add(wasm)
		}
	}
	ctx := context.Background()
	rt := wazero.NewRuntime(ctx)
	defer rt.Close(ctx)
	f.Fuzz(func(t *testing.T, wasm []byte) {
		out, ierr := instrument(wasm)
		if ierr != nil || validateLayout(wasm) != nil {
			// wazero is given only what validation and the rewrite (which
			// reads every count it copies) let through: it allocates what
			// a module claims before reading it.
			return
		}
		// Custom sections are cleaned by the rewrite but not in the
		// input, so the input goes to wazero without them.
		cm, err := rt.CompileModule(ctx, withoutCustomSections(wasm))
		compiles := err == nil
		if compiles {
			_ = cm.Close(ctx)
		}
		cm, err = rt.CompileModule(ctx, out)
		if compiles != (err == nil) {
			t.Fatalf("wazero compiles the module: %v; the rewritten one: %v", compiles, err)
		}
		if err == nil {
			_ = cm.Close(ctx)
		}
	})
}

// TestInterruptInitialize stops a guest whose _initialize never returns:
// Instantiate fails with an InterruptedError instead of hanging, so a
// worker need not be killed for it.
func TestInterruptInitialize(t *testing.T) {
	wasm := watModule(t, "init_loop", `(module
	  (memory (export "memory") 1)
	  (func (export "_initialize") (loop $l (br $l)))
	  (func (export "fabric_abi_version") (result i32) (i32.const 1))
	  (func (export "fabric_alloc") (param i32) (result i32) (i32.const 16))
	  (func (export "fabric_free") (param i32))
	  (func (export "fabric_call") (param i32 i32 i32 i32) (result i32) (i32.const 0)))`)
	ctx := context.Background()
	e, err := NewEngine(ctx, EngineConfig{MemoryLimit: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close(ctx)
	m, err := e.Compile(ctx, wasm)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := m.InstantiateWatched(ctx, func(inst *Instance) {
			time.AfterFunc(20*time.Millisecond, func() { inst.Interrupt(errors.New("test stop")) })
		})
		done <- err
	}()
	select {
	case err := <-done:
		var ie *InterruptedError
		if !errors.As(err, &ie) {
			t.Fatalf("Instantiate = %v, want an InterruptedError", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Instantiate did not stop")
	}
}

// stackPrograms export run(i64) -> i64 and recurse: without end, or with
// frames as wide as a guest can make them, or deep but bounded.
func stackPrograms() map[string]string {
	var locals, sets, gets, pushes, adds strings.Builder
	for i := range 500 {
		locals.WriteString(" i64")
		fmt.Fprintf(&sets, "(local.set %d (i64.add (local.get 0) (i64.const %d)))", i+1, i)
		fmt.Fprintf(&gets, " (local.get %d)", i+1)
		fmt.Fprintf(&pushes, " (i64.add (local.get 0) (i64.const %d))", i)
		adds.WriteString(" i64.add")
	}
	return map[string]string{
		"runaway": `(module
		  (func $r (param i64) (result i64) (i64.add (i64.const 1) (call $r (local.get 0))))
		  (func (export "run") (param i64) (result i64) (call $r (local.get 0))))`,
		// 500 locals live across each call
		"wide_locals": `(module
		  (func $r (param i64) (result i64) (local` + locals.String() + `)
		    ` + sets.String() + `
		    (i64.add (call $r (local.get 0)) (block (result i64) (local.get 0)` + gets.String() + adds.String() + `)))
		  (func (export "run") (param i64) (result i64) (call $r (local.get 0))))`,
		// 500 values on the operand stack across each call
		"wide_stack": `(module
		  (func $r (param i64) (result i64)
		    ` + pushes.String() + ` (call $r (local.get 0))` + adds.String() + `)
		  (func (export "run") (param i64) (result i64) (call $r (local.get 0))))`,
		// through a table, with a leaf beside it
		"indirect": `(module
		  (type $t (func (param i64) (result i64)))
		  (table 2 funcref)
		  (elem (i32.const 0) $r $leaf)
		  (func $leaf (type $t) (local.get 0))
		  (func $r (type $t) (i64.add (call_indirect (type $t) (local.get 0) (i32.const 1))
		    (call_indirect (type $t) (local.get 0) (i32.const 0))))
		  (func (export "run") (param i64) (result i64) (call $r (local.get 0))))`,
		// 50,000 calls deep, then back
		"deep": `(module
		  (func $r (param i64) (result i64)
		    (if (result i64) (i64.eqz (local.get 0)) (then (i64.const 0))
		      (else (i64.add (i64.const 1) (call $r (i64.sub (local.get 0) (i64.const 1)))))))
		  (func (export "run") (param i64) (result i64) (call $r (i64.const 50000))))`,
	}
}

// heapAllocs is the bytes the Go heap has handed out so far (wazero's
// stacks are Go slices).
func heapAllocs() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// TestStackBudget runs recursions that do not end, with narrow and wide
// frames: each must end with ErrStackExhausted, having made the host
// allocate at most four budgets of stack (wazero doubles its stack as it
// grows, so the copies add up to under twice the last, which is under
// twice what the frames took). Without the rewrite the same recursion
// takes wazero's own ceiling, several times more. A deep recursion that
// ends stays within the budget, and a call after an exhaustion, in a
// fresh instance, has the whole budget again.
func TestStackBudget(t *testing.T) {
	const bound = 4 * StackBudget
	var yields atomic.Int64
	rt := rawRuntime(t, &yields, nil)
	progs := stackPrograms()
	for _, name := range []string{"runaway", "wide_locals", "wide_stack", "indirect"} {
		t.Run(name, func(t *testing.T) {
			wasm := watModule(t, name, progs[name])
			out, err := instrument(wasm)
			if err != nil {
				t.Fatal(err)
			}
			for round := range 2 {
				before := heapAllocs()
				_, err = runExport(t, rt, out, 1)
				took := heapAllocs() - before
				if !errors.Is(err, ErrStackExhausted) {
					t.Fatalf("round %d: call ended with %v, want ErrStackExhausted", round, err)
				}
				if took > bound {
					t.Errorf("round %d: the call allocated %d MiB, want at most %d MiB", round, took>>20, bound>>20)
				}
				t.Logf("round %d: exhausted after %d MiB of host allocations", round, took>>20)
			}
			if name != "runaway" {
				return
			}
			before := heapAllocs()
			_, err = runExport(t, rt, wasm, 1)
			took := heapAllocs() - before
			if err == nil || errors.Is(err, ErrStackExhausted) {
				t.Fatalf("as written: %v, want wazero's stack overflow", err)
			}
			t.Logf("as written: wazero's own ceiling after %d MiB", took>>20)
			if took <= bound {
				t.Errorf("as written the recursion allocated %d MiB, expected more than the budget's bound", took>>20)
			}
		})
	}
	out, err := instrument(watModule(t, "deep", progs["deep"]))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := runExport(t, rt, out, 0); err != nil || got != 50000 {
		t.Fatalf("deep recursion: %d, %v; want 50000", got, err)
	}
}

// TestFrameSizes prints the frames the rewrite charges for the functions
// of real guests (go test -run FrameSizes -v).
func TestFrameSizes(t *testing.T) {
	for _, target := range []string{"bin/testguests/hostile.wasm", "bin/testguests/cmatmul.wasm"} {
		wasm, err := os.ReadFile(testrig.Make(t, target))
		if err != nil {
			t.Fatal(err)
		}
		secs, err := splitSections(wasm)
		if err != nil {
			t.Fatal(err)
		}
		in, err := scanModule(secs)
		if err != nil {
			t.Fatal(err)
		}
		var frames []int
		for _, fi := range in.funcs {
			if fi.calls {
				frames = append(frames, int(fi.frame))
			}
		}
		sort.Ints(frames)
		n := len(frames)
		t.Logf("%s: %d calling functions; frame p10 %d p50 %d p90 %d p99 %d max %d", target, n, frames[n/10], frames[n/2], frames[n*9/10], frames[n*99/100], frames[n-1])
	}
}
