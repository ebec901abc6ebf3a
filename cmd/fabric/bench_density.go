//go:build linux

package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/wasmfabric/fabric/fabric"
	"github.com/wasmfabric/fabric/internal/sandbox"
)

// Density benchmarks: what an actor and a parked task cost, now that each
// is an instance in its job's worker process rather than a process.
//
//   - actor_creation_c_guest: actors of the C guest made and called once
//     per second, from the time of a job that makes 2,000 less that of a
//     job that makes one (both on a fresh node).
//   - go_guest_instance_memory: the memory (PSS) of one instance of the Go
//     bench guest, instantiated and idle: the baseline of the next row.
//   - parked_go_task_memory: the memory (PSS) the node's worker processes
//     hold per task of the Go bench guest parked in get, from a job that
//     parks 1,000 less one that parks 10.
//
// actor_creation_go_guest is measured by the bench guest itself.

const (
	actorsMany = 2000
	parkedMany = 1000
	parkedFew  = 10
)

func densityResults(ctx context.Context, re *regexp.Regexp, o benchOptions, goWasm []byte) ([]benchResult, error) {
	var out []benchResult
	if re.MatchString("actor_creation_c_guest") {
		if o.cActors == "" {
			o.cActors = besideBinary(filepath.Join("testguests", "cactors.wasm"))
		}
		cw, err := os.ReadFile(o.cActors)
		if err != nil {
			return nil, fmt.Errorf("read the C actors guest: %w (build it with `make guests`, or pass --c-actors-module)", err)
		}
		r, err := cActorCreation(ctx, o, cw)
		if err != nil {
			return nil, fmt.Errorf("actor_creation_c_guest: %w", err)
		}
		out = append(out, r)
	}
	if re.MatchString("parked_go_task_memory") || re.MatchString("go_guest_instance_memory") {
		base, err := instanceMemory(ctx, goWasm)
		if err != nil {
			return nil, fmt.Errorf("go_guest_instance_memory: %w", err)
		}
		out = append(out, base)
		if re.MatchString("parked_go_task_memory") {
			r, err := parkedMemory(ctx, goWasm)
			if err != nil {
				return nil, fmt.Errorf("parked_go_task_memory: %w", err)
			}
			out = append(out, r)
		}
	}
	return out, nil
}

// benchNode starts a quiet embedded node for one measurement.
func benchNode(cpus int) (*fabric.Node, error) {
	return fabric.Start(fabric.Config{NumCPUs: float64(cpus), ObjectStoreMemory: 256 << 20,
		Stdout: discard{}, Stderr: discard{}})
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func cActorCreation(ctx context.Context, o benchOptions, wasm []byte) (benchResult, error) {
	run := func(n int) (time.Duration, error) {
		node, err := benchNode(runtime.NumCPU())
		if err != nil {
			return 0, err
		}
		defer node.Close()
		start := time.Now()
		err = node.RunJob(ctx, wasm, []string{strconv.Itoa(n)})
		return time.Since(start), err
	}
	if _, err := run(1); err != nil { // compiles the module into the cache
		return benchResult{}, err
	}
	var rates []float64
	for range max(o.trials, 2) {
		one, err := run(1)
		if err != nil {
			return benchResult{}, err
		}
		many, err := run(actorsMany)
		if err != nil {
			return benchResult{}, err
		}
		if many > one {
			rates = append(rates, float64(actorsMany-1)/(many-one).Seconds())
		}
	}
	if len(rates) == 0 {
		return benchResult{}, fmt.Errorf("a job with %d actors was no slower than one with 1", actorsMany)
	}
	mean, sd := meanSD(rates)
	return benchResult{Name: "actor_creation_c_guest", Value: mean, SD: &sd, Unit: "/s", Runs: len(rates) * actorsMany}, nil
}

// instanceMemory measures the PSS of idle instances of the Go guest in
// this process.
func instanceMemory(ctx context.Context, wasm []byte) (benchResult, error) {
	e, m, err := compileFresh(ctx, wasm, false)
	if err != nil {
		return benchResult{}, err
	}
	defer e.Close(ctx)
	const n = 200
	debug.FreeOSMemory() // what earlier benchmarks left, returned to the system before the reading
	before := selfPSSKiB()
	insts := make([]*sandbox.Instance, 0, n)
	for range n {
		inst, err := m.Instantiate(ctx)
		if err != nil {
			return benchResult{}, err
		}
		insts = append(insts, inst)
	}
	debug.FreeOSMemory()
	after := selfPSSKiB()
	for _, inst := range insts {
		_ = inst.Close(ctx)
	}
	if before == 0 || after <= before {
		return benchResult{}, fmt.Errorf("cannot read this process's memory from /proc (%d then %d KiB)", before, after)
	}
	return benchResult{Name: "go_guest_instance_memory", Value: float64(after-before) / n, Unit: "KiB", Runs: n}, nil
}

// parkedMemory measures the worker processes' PSS while the bench guest
// parks many tasks in get, and while it parks few.
func parkedMemory(ctx context.Context, wasm []byte) (benchResult, error) {
	hold := func(n int) (int64, error) {
		node, err := benchNode(2)
		if err != nil {
			return 0, err
		}
		defer node.Close()
		jctx, cancel := context.WithCancel(ctx)
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- node.RunJob(jctx, wasm, []string{"park", strconv.Itoa(n), "600000"}) }()
		deadline := time.Now().Add(2 * time.Minute)
		for node.Usage().WorkersParked < n+1 { // the waiters and the driver
			select {
			case err := <-done:
				return 0, fmt.Errorf("the job ended before %d tasks parked: %v", n, err)
			case <-time.After(20 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				return 0, fmt.Errorf("%d tasks did not park within 2 minutes", n)
			}
		}
		time.Sleep(200 * time.Millisecond) // let the last ones settle in get
		return node.WorkerMemory() >> 10, nil
	}
	if _, err := hold(parkedFew); err != nil { // compiles the module into the cache
		return benchResult{}, err
	}
	var perTask []float64
	for range 2 {
		few, err := hold(parkedFew)
		if err != nil {
			return benchResult{}, err
		}
		many, err := hold(parkedMany)
		if err != nil {
			return benchResult{}, err
		}
		perTask = append(perTask, float64(many-few)/(parkedMany-parkedFew))
	}
	mean, sd := meanSD(perTask)
	return benchResult{Name: "parked_go_task_memory", Value: mean, SD: &sd, Unit: "KiB", Runs: len(perTask)}, nil
}

// selfPSSKiB reads this process's proportional set size.
func selfPSSKiB() int64 {
	b, err := os.ReadFile("/proc/self/smaps_rollup")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "Pss:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb
		}
	}
	return 0
}
