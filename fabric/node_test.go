//go:build linux

package fabric

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/wasmfabric/fabric/internal/sandbox"
	"github.com/wasmfabric/fabric/internal/testrig"
)

// killer is an output sink that kills the worker of every "victim running"
// line it sees, up to a number of kills.
type killer struct {
	mu    sync.Mutex
	buf   strings.Builder
	kills int
	pids  []int
	pw    *io.PipeWriter
}

var victimLine = regexp.MustCompile(`^\(\S+ pid=(\d+)\) victim running$`)

func newKiller(kills int) *killer {
	pr, pw := io.Pipe()
	k := &killer{kills: kills, pw: pw}
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			line := sc.Text()
			k.mu.Lock()
			k.buf.WriteString(line + "\n")
			if m := victimLine.FindStringSubmatch(line); m != nil && k.kills > 0 {
				k.kills--
				pid, _ := strconv.Atoi(m[1])
				k.pids = append(k.pids, pid)
				time.AfterFunc(200*time.Millisecond, func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
			}
			k.mu.Unlock()
		}
	}()
	return k
}

func (k *killer) Write(p []byte) (int, error) { return k.pw.Write(p) }

func (k *killer) output() string {
	_ = k.pw.Close()
	time.Sleep(50 * time.Millisecond)
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.buf.String()
}

func startNode(t *testing.T, out io.Writer) *Node {
	t.Helper()
	return startNodeCPUs(t, out, 2)
}

func startNodeCPUs(t *testing.T, out io.Writer, cpus float64) *Node {
	t.Helper()
	return startNodeWith(t, Config{NumCPUs: cpus, Stdout: out})
}

// startNodeWith starts a node as startNode does, with cfg's CPUs, output
// and short paths.
func startNodeWith(t *testing.T, cfg Config) *Node {
	t.Helper()
	n, err := Start(Config{
		NumCPUs:           cfg.NumCPUs,
		NoShortPaths:      cfg.NoShortPaths,
		ObjectStoreMemory: 64 << 20,
		WorkerCommand:     []string{testrig.Fabric(t), "worker"},
		Stdout:            cfg.Stdout,
		Stderr:            io.Discard,
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestWorkerFailures kills worker processes mid-task and mid-call: tasks
// retry up to their max retries, actors restart up to their max restarts,
// and then calls fail with clear errors. The driver has a process of its
// own: it outlives the kills. (With short paths off: under a lease, the
// driver's short tasks run in its process, and a kill of one kills it.)
func TestWorkerFailures(t *testing.T) {
	wasm, err := os.ReadFile(testrig.Guest(t, "internal/testguests/chaos"))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		arg   string
		kills int
		want  []string
	}{
		{"retry", 1, []string{"retry: victim finished <nil>"}},
		{"noretry", 1, []string{"noretry: worker died: true"}},
		// Tasks sent ahead to the victim's worker never ran: they run
		// again elsewhere though they have no retries. (On one CPU, so
		// that no other task of the job runs in the process when it is
		// killed: one that did would die with it.)
		{"queued", 1, []string{"queued: victim died: true", "queued: tasks sent ahead survived: <nil>"}},
		{"actor", 2, []string{"actor: before kill 1 <nil>", "actor: in-flight call failed: true", "actor: after restart 1 <nil>", "actor: dead after max restarts: true"}},
	}
	for _, c := range cases {
		t.Run(c.arg, func(t *testing.T) {
			before := runtime.NumGoroutine()
			k := newKiller(c.kills)
			cpus := 2.0
			if c.arg == "queued" {
				cpus = 1
			}
			n := startNodeWith(t, Config{NumCPUs: cpus, Stdout: k, NoShortPaths: true})
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			err := n.RunJob(ctx, wasm, []string{c.arg})
			stats := n.Stats()
			if cerr := n.Close(); cerr != nil {
				t.Error(cerr)
			}
			out := k.output()
			if err != nil {
				t.Fatalf("job failed: %v\n%s", err, out)
			}
			for _, w := range c.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			if len(k.pids) != c.kills {
				t.Errorf("killed %d workers, want %d", len(k.pids), c.kills)
			}
			checkGoroutines(t, before+1) // the killer's scanner may linger until its pipe drains
			if stats.CPUAvail != stats.CPUTotal || stats.Objects != 0 || stats.Tasks != 0 {
				t.Errorf("after the job: %+v; want all CPUs free and no objects or tasks", stats)
			}
		})
	}
}

// checkGoroutines fails when goroutines started by a node outlive Close.
func checkGoroutines(t *testing.T, limit int) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for runtime.NumGoroutine() > limit {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines after Close, want at most %d:\n%s", runtime.NumGoroutine(), limit, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestSpillThroughAgent runs examples on an arena far smaller than their
// data: objects spill to disk and are restored when read, and an object
// larger than the whole arena lives in a file; results stay correct.
func TestSpillThroughAgent(t *testing.T) {
	cases := []struct {
		example string
		args    []string
		arena   int64
		want    string
		check   func(Stats) bool
	}{
		// Ten 4 MB objects held at once in a 12 MiB arena: older ones
		// spill, and workers read them from their spill files.
		{"internal/testguests/features", []string{"spill"}, 12 << 20, "ok: spill", func(s Stats) bool { return s.Store.SpillCount > 0 }},
		// The 80 MB array is larger than the arena: it lives in one file,
		// stored once however many tasks read it.
		// Twenty 4 MB objects, each released before the next is made: the
		// freed ones make room, so nothing spills.
		{"internal/testguests/features", []string{"release"}, 12 << 20, "ok: release", func(s Stats) bool { return s.Store.SpillCount == 0 && s.Store.DirectCount == 0 }},
		{"examples/shared", nil, 32 << 20, "10000000 each", func(s Stats) bool { return s.Store.DirectCount == 1 && s.Store.SpillCount == 0 }},
	}
	for _, c := range cases {
		name := filepath.Base(c.example)
		if len(c.args) > 0 {
			name += "_" + c.args[0]
		}
		t.Run(name, func(t *testing.T) {
			wasm, err := os.ReadFile(testrig.Guest(t, c.example))
			if err != nil {
				t.Fatal(err)
			}
			var out strings.Builder
			n, err := Start(Config{NumCPUs: 2, ObjectStoreMemory: c.arena, WorkerCommand: []string{testrig.Fabric(t), "worker"}, Stdout: &syncWriter{w: &out}, Stderr: io.Discard})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			err = n.RunJob(ctx, wasm, c.args)
			stats := n.Stats()
			_ = n.Close()
			if err != nil {
				t.Fatalf("%v\n%s", err, out.String())
			}
			if !strings.Contains(out.String(), c.want) {
				t.Errorf("output lacks %q:\n%s", c.want, out.String())
			}
			if !c.check(stats) {
				t.Errorf("store stats %+v", stats.Store)
			}
			if stats.Store.Objects != 0 || stats.Objects != 0 {
				t.Errorf("objects left after the job: %+v", stats)
			}
		})
	}
}

type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// failingReader returns some bytes, then an error.
type failingReader struct{ n int }

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, errors.New("connection reset")
	}
	k := min(len(p), f.n)
	f.n -= k
	return k, nil
}

// Uploads go to disk, checked; a failed one leaves nothing behind.
func TestAddModule(t *testing.T) {
	n := startNode(t, io.Discard)
	wasm, err := os.ReadFile(testrig.Guest(t, "examples/quickstart"))
	if err != nil {
		t.Fatal(err)
	}
	digest, err := n.addModule(bytes.NewReader(wasm))
	if err != nil || digest != sandbox.Digest(wasm) {
		t.Fatalf("addModule: %q, %v; want %q", digest, err, sandbox.Digest(wasm))
	}
	if got, err := os.ReadFile(n.modulePath(digest)); err != nil || !bytes.Equal(got, wasm) {
		t.Fatalf("stored module: %v", err)
	}
	for _, tc := range []struct {
		name string
		r    io.Reader
		want error
	}{
		{"garbage", strings.NewReader("not wasm"), sandbox.ErrInvalidModule},
		{"empty", strings.NewReader(""), ErrNoModule},
		{"broken upload", &failingReader{n: 1000}, errUpload},
		{"truncated module", bytes.NewReader(wasm[:len(wasm)/2]), sandbox.ErrInvalidModule},
	} {
		if _, err := n.addModule(tc.r); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	ents, _ := os.ReadDir(filepath.Join(n.dataDir, "modules"))
	if len(ents) != 1 {
		t.Fatalf("modules after failed uploads: %v, want only the good one", ents)
	}
}

// smallBeside runs, on a fresh node, the chaos guest's mode hog until it
// prints ready, then checks (after what the caller checks of the node)
// that the guest's "small" job, submitted meanwhile, finishes in well
// under 2 s.
func smallBeside(t *testing.T, what string, hog []string, ready string, check func(*Node)) {
	n := startNode(t, io.Discard)
	defer n.Close()
	wasm, err := os.ReadFile(testrig.Guest(t, "internal/testguests/chaos"))
	if err != nil {
		t.Fatal(err)
	}
	w := &signalWriter{syncWriter: syncWriter{w: &strings.Builder{}}, want: ready, seen: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hogDone := make(chan error, 1)
	go func() { hogDone <- n.RunJobWith(ctx, wasm, hog, JobOptions{Stdout: w}) }()
	select {
	case <-w.seen:
	case err := <-hogDone:
		t.Fatalf("the job with %s ended first: %v\n%s", what, err, w.String())
	case <-time.After(2 * time.Minute):
		t.Fatalf("no %q: %s", ready, w.String())
	}
	if check != nil {
		check(n)
	}
	var out strings.Builder
	start := time.Now()
	sctx, scancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer scancel()
	if err := n.RunJobWith(sctx, wasm, []string{"small"}, JobOptions{Stdout: &syncWriter{w: &out}}); err != nil {
		t.Fatalf("the small job: %v", err)
	}
	took := time.Since(start)
	if !strings.Contains(out.String(), "small: 1 <nil>") {
		t.Fatalf("the small job printed %q", out.String())
	}
	t.Logf("the small job took %v beside %s (%d workers, %d worker processes)", took, what, n.Stats().Workers, n.Usage().Processes)
	if took > 2*time.Second {
		t.Errorf("the small job took %v beside %s", took, what)
	}
}

// TestIdleWorkersMakeRoom runs a job that ran 32 zero-CPU tasks at once
// (a worker process each, the node's most) and then idles, and meanwhile
// another job: its driver and task get processes from the idle job's
// workers, and it finishes in well under 2 s, not after the idle job.
func TestIdleWorkersMakeRoom(t *testing.T) {
	smallBeside(t, "an idle job", []string{"burst_idle"}, "burst done", func(n *Node) {
		// The driver's process does not count: 32 idle ones are the most.
		if u := n.Usage(); u.WorkersIdle < 32 || u.MaxWorkers != 32 {
			t.Fatalf("after the burst: %d idle of %d most, want 32 idle", u.WorkersIdle, u.MaxWorkers)
		}
	})
}

// TestIdleActorsLeaveRoom runs a job with 100 idle actors (a worker each,
// past the node's most of 32, all in the job's one worker process) and
// meanwhile another job, which finishes in well under 2 s: actors' workers
// do not count against the most.
func TestIdleActorsLeaveRoom(t *testing.T) {
	smallBeside(t, "100 idle actors", []string{"idle_actors", "100"}, "100 ready", nil)
}
