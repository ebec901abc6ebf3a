package fabric

import (
	"bufio"
	"context"
	"io"
	"os"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

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
	n, err := Start(Config{
		NumCPUs:           2,
		ObjectStoreMemory: 64 << 20,
		WorkerCommand:     []string{testrig.Fabric(t), "worker"},
		Stdout:            out,
		Stderr:            io.Discard,
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestWorkerFailures kills worker processes mid-task and mid-call: tasks
// retry up to their max retries, actors restart up to their max restarts,
// and then calls fail with clear errors.
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
		{"actor", 2, []string{"actor: before kill 1 <nil>", "actor: in-flight call failed: true", "actor: after restart 1 <nil>", "actor: dead after max restarts: true"}},
	}
	for _, c := range cases {
		t.Run(c.arg, func(t *testing.T) {
			before := runtime.NumGoroutine()
			k := newKiller(c.kills)
			n := startNode(t, k)
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
