//go:build linux

package fabric

import (
	"bytes"
	"context"
	"io"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wasmfabric/fabric/internal/testrig"
)

// BenchmarkCore runs the bench guest's driver (internal/testguests/bench)
// on a node with real worker processes and reports the figures it measured
// from inside the sandbox. Each figure's baseline is measured in the same
// run by the Baseline benchmarks below and in package sandbox.
//
//	go test -run XXX -bench . -benchtime 1x ./fabric/ ./sandbox/
func BenchmarkCore(b *testing.B) {
	wasm, err := os.ReadFile(testrig.Guest(b, "internal/testguests/bench"))
	if err != nil {
		b.Fatal(err)
	}
	for range b.N {
		var out bytes.Buffer
		n, err := Start(Config{NumCPUs: 2, WorkerCommand: []string{testrig.Fabric(b), "worker"}, Stdout: &out, Stderr: io.Discard})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		err = n.RunJob(ctx, wasm, []string{"2000"})
		cancel()
		_ = n.Close()
		if err != nil {
			b.Fatalf("%v\n%s", err, out.String())
		}
		for _, line := range strings.Split(out.String(), "\n") {
			f := strings.Fields(line)
			if len(f) != 4 || f[0] != "BENCH" {
				continue
			}
			v, err := strconv.ParseFloat(f[2], 64)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(v, f[1]+"_"+strings.ReplaceAll(f[3], "/", "_per_"))
		}
	}
}

// BenchmarkBaselineGoroutineRoundTrip is the floor for dispatch: a no-op
// handed to a goroutine of a pool and its result handed back.
func BenchmarkBaselineGoroutineRoundTrip(b *testing.B) {
	work := make(chan func() int)
	done := make(chan int)
	for range 2 {
		go func() {
			for f := range work {
				done <- f()
			}
		}()
	}
	noop := func() int { return 0 }
	b.ResetTimer()
	for range b.N {
		work <- noop
		<-done
	}
	b.StopTimer()
	close(work)
}

// BenchmarkBaselineMemcpy100MB is the limit for Put and Get of large values.
func BenchmarkBaselineMemcpy100MB(b *testing.B) {
	src := bytes.Repeat([]byte{1}, 100<<20)
	dst := make([]byte, len(src))
	b.SetBytes(int64(len(src)))
	b.ResetTimer()
	for range b.N {
		copy(dst, src)
	}
}
