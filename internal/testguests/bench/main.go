//go:build wasip1

// Bench is the driver of the core benchmarks: it times round trips of
// no-op tasks and actor calls, and Put and Get of a large value, from inside
// a guest (as Ray's microbenchmarks time them from a Python driver), and
// prints one "BENCH name value unit" line per figure.
package main

import (
	"fmt"
	"strconv"
	"time"

	"github.com/wasmfabric/fabric/sdk"
)

var noop = sdk.Task0("noop", func() (int, error) { return 0, nil })

// Sink is an actor with a no-op method.
type Sink struct{}

var sinkClass = sdk.Actor("Sink", func() (*Sink, error) { return &Sink{}, nil })

var ping = sdk.NewMethod0(sinkClass, "ping", func(*Sink) (int, error) { return 0, nil })

func init() { sdk.Main(run) }

func report(name string, value float64, unit string) {
	fmt.Printf("BENCH %s %.6g %s\n", name, value, unit)
}

func run(args []string) error {
	n := 1000
	if len(args) > 0 {
		v, err := strconv.Atoi(args[0])
		if err != nil {
			return err
		}
		n = v
	}
	// warm up the worker pool
	if _, err := noop.Remote().Get(); err != nil {
		return err
	}

	start := time.Now()
	for range n {
		if _, err := noop.Remote().Get(); err != nil {
			return err
		}
	}
	report("task_sync_roundtrip", float64(time.Since(start).Microseconds())/float64(n), "us/op")

	start = time.Now()
	refs := make([]sdk.Ref[int], 0, n)
	for range n {
		refs = append(refs, noop.Remote())
	}
	report("tasks_async_submit", float64(time.Since(start).Microseconds())/float64(n), "us/op")
	if _, err := sdk.GetAll(refs); err != nil {
		return err
	}
	report("tasks_async", float64(n)/time.Since(start).Seconds(), "tasks/s")

	h := sinkClass.Remote()
	if _, err := ping.Remote(h).Get(); err != nil {
		return err
	}
	start = time.Now()
	for range n {
		if _, err := ping.Remote(h).Get(); err != nil {
			return err
		}
	}
	report("actor_sync_roundtrip", float64(time.Since(start).Microseconds())/float64(n), "us/op")

	start = time.Now()
	refs = refs[:0]
	for range n {
		refs = append(refs, ping.Remote(h))
	}
	if _, err := sdk.GetAll(refs); err != nil {
		return err
	}
	report("actor_calls_async", float64(n)/time.Since(start).Seconds(), "calls/s")

	const size = 100 << 20
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i)
	}
	start = time.Now()
	ref, err := sdk.Put(data)
	if err != nil {
		return err
	}
	report("put_100MB", size/time.Since(start).Seconds()/1e9, "GB/s")
	start = time.Now()
	back, err := ref.Get()
	if err != nil {
		return err
	}
	report("get_100MB", size/time.Since(start).Seconds()/1e9, "GB/s")
	if len(back) != size || back[size-1] != data[size-1] {
		return fmt.Errorf("get returned %d bytes", len(back))
	}
	start = time.Now()
	copy(back, data)
	report("guest_memcpy_100MB", size/time.Since(start).Seconds()/1e9, "GB/s")
	return nil
}

func main() {}
