//go:build linux

package fabric

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wasmfabric/fabric/internal/testrig"
)

// nodeMemory samples the proportional set size (PSS) of a node: this
// process, which is the agent, and the worker processes it started.
type nodeMemory struct {
	n    *Node
	mu   sync.Mutex
	peak int64 // bytes
	// peakParked is the most workers parked at once that Usage showed.
	peakParked int
	stop       chan struct{}
	done       chan struct{}
}

func watchNode(n *Node) *nodeMemory {
	m := &nodeMemory{n: n, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(m.done)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			pss := m.sample()
			parked := n.Usage().WorkersParked
			m.mu.Lock()
			m.peak = max(m.peak, pss)
			m.peakParked = max(m.peakParked, parked)
			m.mu.Unlock()
			select {
			case <-m.stop:
				return
			case <-t.C:
			}
		}
	}()
	return m
}

// sample sums the PSS of the agent (this process) and its workers.
func (m *nodeMemory) sample() int64 { return processPSS("self") + m.n.WorkerMemory() }

func (m *nodeMemory) finish() (peak int64, parked int) {
	close(m.stop)
	<-m.done
	return m.peak, m.peakParked
}

// TestDenseWorkers runs on one 2-CPU node what one process per execution
// could not: a recursion 2,000 tasks deep, 2,000 tasks blocked in get at
// once, and 10,000 actors of a C guest, each called once. Each worker is
// an instance in its job's process; the node's peak memory is reported.
func TestDenseWorkers(t *testing.T) {
	cases := []struct {
		name, guest string
		args        []string
		want        string
		parked      int // at least this many workers parked at once
	}{
		{"recursion 2000 deep", "internal/testguests/chaos", []string{"deep", "2000"}, "deep: 2000 <nil>", 2000},
		// The gate opens after 100 s, long after the 2,000 have blocked
		// (about 6 s on a quiet 2-core machine, 20 s under the whole test
		// suite); the test ends as soon as they all have.
		{"2000 blocked in get", "internal/testguests/chaos", []string{"blocked", "2000", "100000"}, "", 2000},
		{"10000 C actors", "", []string{"10000"}, "actors: 10000 called once, sum 49995000", 10000},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var path string
			if c.guest == "" {
				path = testrig.Make(t, "bin/testguests/cactors.wasm")
			} else {
				path = testrig.Guest(t, c.guest)
			}
			wasm, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			n := startNode(t, os.Stderr)
			defer n.Close()
			mem := watchNode(n)
			var out syncWriter
			var buf strings.Builder
			out.w = &buf
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			start := time.Now()
			done := make(chan error, 1)
			go func() { done <- n.RunJobWith(ctx, wasm, c.args, JobOptions{Stdout: &out}) }()
			var runErr error
			if c.want == "" { // wait until enough are parked, then end the job
				deadline := time.After(2 * time.Minute)
			wait:
				for {
					select {
					case runErr = <-done:
						t.Fatalf("the job ended first: %v\n%s", runErr, buf.String())
					case <-deadline:
						t.Fatalf("never %d workers parked at once (at most %d)", c.parked, n.Usage().WorkersParked)
					case <-time.After(50 * time.Millisecond):
						if n.Usage().WorkersParked >= c.parked {
							break wait
						}
					}
				}
				cancel()
				<-done
			} else {
				runErr = <-done
			}
			took := time.Since(start)
			peak, parked := mem.finish()
			if c.want != "" {
				if runErr != nil {
					t.Fatalf("job: %v\n%s", runErr, buf.String())
				}
				if !strings.Contains(buf.String(), c.want) {
					t.Fatalf("output %q lacks %q", buf.String(), c.want)
				}
			}
			if parked < c.parked && c.want != "" {
				// Sampled every 100 ms: a fast run may end between samples.
				t.Logf("at most %d workers seen parked at once (sampled)", parked)
			}
			t.Logf("%s: %v; peak memory of the node (PSS, agent and workers) %d MiB, %d workers parked at most",
				c.name, took.Round(time.Millisecond), peak>>20, parked)
		})
	}
}

// TestManyJobsAtOnce submits 100 jobs at once (each holds two actors of a
// C guest for a while), and meanwhile a small job of someone else: every
// one of the 100 progresses, and the small job finishes in under 2 s.
func TestManyJobsAtOnce(t *testing.T) {
	const jobs = 100
	cwasm, err := os.ReadFile(testrig.Make(t, "bin/testguests/cactors.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	chaos, err := os.ReadFile(testrig.Guest(t, "internal/testguests/chaos"))
	if err != nil {
		t.Fatal(err)
	}
	n := startNode(t, io.Discard)
	defer n.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// The small job's module is the node's already (as a Go guest's first
	// job on a node waits for its module to be checked and compiled).
	if err := n.RunJobWith(ctx, chaos, []string{"small"}, JobOptions{Stdout: io.Discard}); err != nil {
		t.Fatal(err)
	}
	var progressed sync.WaitGroup
	progressed.Add(jobs)
	results := make(chan error, jobs)
	for range jobs {
		w := &signalWriter{syncWriter: syncWriter{w: &strings.Builder{}}, want: "actors: 2 called once", seen: make(chan struct{})}
		go func() {
			done := make(chan struct{})
			go func() {
				select {
				case <-w.seen:
					progressed.Done()
				case <-done:
					progressed.Done()
				}
			}()
			results <- n.RunJobWith(ctx, cwasm, []string{"2", "4000"}, JobOptions{Stdout: w})
			close(done)
		}()
	}
	allProgressed := make(chan struct{})
	go func() { progressed.Wait(); close(allProgressed) }()
	select {
	case <-allProgressed:
	case <-ctx.Done():
		t.Fatal("not every job progressed")
	}
	var out strings.Builder
	start := time.Now()
	if err := n.RunJobWith(ctx, chaos, []string{"small"}, JobOptions{Stdout: &syncWriter{w: &out}}); err != nil {
		t.Fatalf("the small job: %v", err)
	}
	took := time.Since(start)
	if !strings.Contains(out.String(), "small: 1 <nil>") {
		t.Fatalf("the small job printed %q", out.String())
	}
	usage := n.Usage()
	memory := (&nodeMemory{n: n}).sample() // not sampled all along: that takes a CPU of its own with 200 processes
	for range jobs {
		if err := <-results; err != nil {
			t.Errorf("one of the %d jobs: %v", jobs, err)
		}
	}
	t.Logf("the small job took %v beside %d jobs (%d worker processes then); memory of the node (PSS) %d MiB",
		took.Round(time.Millisecond), jobs, usage.Processes, memory>>20)
	// Alone it takes about 0.3 s; the bound is for starvation (the small
	// job waiting behind the 100), with room for the other packages'
	// tests that share the CI machine's two cores.
	if took > 5*time.Second {
		t.Errorf("the small job took %v beside %d jobs", took, jobs)
	}
}

// TestShortPath runs short tasks one at a time from the driver: after the
// first calls, its process runs them itself under a lease, and their
// results (values and errors) are the same as the agent's.
func TestShortPath(t *testing.T) {
	wasm, err := os.ReadFile(testrig.Guest(t, "internal/testguests/chaos"))
	if err != nil {
		t.Fatal(err)
	}
	n := startNode(t, io.Discard)
	defer n.Close()
	var out syncWriter
	var buf strings.Builder
	out.w = &buf
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const rounds = 300
	if err := n.RunJobWith(ctx, wasm, []string{"sync", strconv.Itoa(rounds)}, JobOptions{Stdout: &out}); err != nil {
		t.Fatalf("job: %v\n%s", err, buf.String())
	}
	if want := fmt.Sprintf("sync: %d rounds, 0 wrong", rounds); !strings.Contains(buf.String(), want) {
		t.Fatalf("output %q, want %q", buf.String(), want)
	}
	st := n.Stats()
	t.Logf("%d of %d tasks ran under a lease", st.LeasedTasks, 2*rounds)
	if st.LeasedTasks < rounds {
		t.Errorf("only %d of %d tasks ran under a lease", st.LeasedTasks, 2*rounds)
	}
	if st.CPUAvail != st.CPUTotal || st.Tasks != 0 {
		t.Errorf("after the job: %+v; want all CPUs free and no tasks", st)
	}
}
