//go:build linux

package fabric

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wasmfabric/fabric/internal/controlstate"
	"github.com/wasmfabric/fabric/internal/membership"
	"github.com/wasmfabric/fabric/internal/testrig"
	"github.com/wasmfabric/fabric/internal/workerpool"
)

// TestDriverLimit: a flood of detached submissions runs at most
// MaxRunningJobs drivers at once; the others wait, pending, and start in
// order as running ones end; a pending job can be stopped.
func TestDriverLimit(t *testing.T) {
	a := startJobsAgent(t, func(c *AgentConfig) { c.MaxRunningJobs = 2 })
	hostile := guestBytes(t, "internal/testguests/hostile")
	cl := a.Client(a.APIToken())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var ids []string
	for range 5 {
		j, err := cl.SubmitDetached(ctx, hostile, []string{"ticks", "100000", "50"}, SubmitOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, j.ID)
	}
	states := func() map[string]string {
		jobs, err := cl.Jobs(ctx)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for _, j := range jobs {
			out[j.ID] = j.State
		}
		return out
	}
	deadline := time.Now().Add(time.Minute)
	for st := states(); st[ids[0]] != "running" || st[ids[1]] != "running"; st = states() {
		if time.Now().After(deadline) {
			t.Fatalf("the first two jobs do not run: %v", st)
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(time.Second)
	st := states()
	for _, id := range ids[2:] {
		if st[id] != "pending" {
			t.Fatalf("job %s is %s past the limit of 2 running: %v", id, st[id], st)
		}
	}
	if _, err := cl.StopJob(ctx, ids[4]); err != nil { // a pending one
		t.Fatal(err)
	}
	if _, err := cl.StopJob(ctx, ids[0]); err != nil {
		t.Fatal(err)
	}
	for st = states(); st[ids[2]] != "running"; st = states() {
		if time.Now().After(deadline) {
			t.Fatalf("the next job in order does not start when one ends: %v", st)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if st[ids[3]] != "pending" || st[ids[4]] != "stopped" {
		t.Fatalf("after one ended: %v", st)
	}
	for _, id := range ids[1:4] {
		if _, err := cl.StopJob(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
}

// TestModuleCollector: past the module disk limit, a job's module that no
// job uses any more, and its compiled code, are removed from the node (and
// the module from the records), while the last copy of an uploaded module
// and a running job's module and compiled code stay; the module, run
// again, is compiled again.
func TestModuleCollector(t *testing.T) {
	cache := t.TempDir()
	a := startJobsAgent(t, func(c *AgentConfig) { c.ModuleDiskLimit, c.Node.CacheDir = 1, cache })
	quick, hostile, chaos := guestBytes(t, "examples/quickstart"), guestBytes(t, "internal/testguests/hostile"), guestBytes(t, "internal/testguests/chaos")
	cl := a.Client(a.APIToken())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	up, err := cl.Upload(ctx, bytes.NewReader(quick), "quick")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.SubmitWith(ctx, hostile, []string{"ticks", "1", "1"}, SubmitOptions{ID: "done"}, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	running, err := cl.SubmitDetached(ctx, chaos, []string{"storm", "100000"}, SubmitOptions{ID: "running"})
	if err != nil {
		t.Fatal(err)
	}
	done, _ := cl.Job(ctx, "done")
	a.gcGrace.Store(int64(time.Hour))
	a.collectOnce() // all of it was used within the grace period
	if !a.Node().HasModule(done.Module) {
		t.Fatal("the collector removed a module used within its grace period")
	}
	doneCode := workerpool.CompiledDir(cache, a.Node().modulePath(done.Module))
	runningCode := workerpool.CompiledDir(cache, a.Node().modulePath(running.Module))
	for _, d := range []string{doneCode, runningCode} { // the running job's process may still be starting
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			_, err := os.Stat(d)
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no compiled code where the pool keeps it: %v", err)
			}
		}
	}
	if files, _ := filesIn(doneCode, func(string) bool { return true }); len(files) == 0 {
		t.Fatal("the ended job's worker wrote no compiled code where the pool keeps it")
	}
	a.gcGrace.Store(-1)
	// The ended job's process may take a moment to exit: until it has,
	// its module's compiled code stays.
	for deadline := time.Now().Add(30 * time.Second); ; {
		a.collectOnce()
		if _, err := os.Stat(doneCode); os.IsNotExist(err) || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := os.Stat(doneCode); !os.IsNotExist(err) {
		t.Fatalf("the ended job's compiled code is still there: %v", err)
	}
	if _, err := os.Stat(runningCode); err != nil {
		t.Fatalf("the collector removed a running job's compiled code: %v", err)
	}
	if !a.Node().HasModule(up.Digest) || !a.Node().HasModule(running.Module) {
		t.Fatal("the collector removed an uploaded module's last copy, or a running job's module")
	}
	if a.Node().HasModule(done.Module) {
		t.Fatal("the ended job's module is still on the node")
	}
	ms, err := cl.Modules(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.Digest == done.Module {
			t.Fatalf("the removed module is still recorded: %+v", m)
		}
	}
	// The module runs again: compiled once more, where the pool keeps it.
	if _, err := cl.SubmitWith(ctx, hostile, []string{"ticks", "1", "1"}, SubmitOptions{ID: "again"}, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(doneCode); err != nil {
		t.Fatalf("no compiled code after the module ran again: %v", err)
	}
	if _, err := cl.StopJob(ctx, "running"); err != nil {
		t.Fatal(err)
	}
}

// TestLogReadsBounded: a client that opens more log follows than an agent
// serves at once gets 429s past the bound, and the agent still answers
// everything else; closing the follows frees their slots.
func TestLogReadsBounded(t *testing.T) {
	a := startJobsAgent(t, nil)
	hostile := guestBytes(t, "internal/testguests/hostile")
	cl := a.Client(a.APIToken())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := cl.SubmitDetached(ctx, hostile, []string{"ticks", "100000", "100"}, SubmitOptions{ID: "long"}); err != nil {
		t.Fatal(err)
	}
	fctx, stopFollows := context.WithCancel(ctx)
	var bodies []io.Closer
	refused := 0
	for range maxLogReads + 10 {
		resp, err := cl.do(fctx, http.MethodGet, "/v1/jobs/long/logs", url.Values{"follow": {"1"}}, nil)
		if err != nil {
			if !strings.Contains(err.Error(), "429") {
				t.Fatalf("a follow past the bound: %v", err)
			}
			refused++
			continue
		}
		bodies = append(bodies, resp.Body)
	}
	if len(bodies) != maxLogReads || refused != 10 {
		t.Fatalf("%d follows served, %d refused; the bound is %d", len(bodies), refused, maxLogReads)
	}
	if _, err := cl.Status(ctx); err != nil {
		t.Fatalf("the agent with every log slot taken: %v", err)
	}
	stopFollows()
	for _, b := range bodies {
		_ = b.Close()
	}
	waitFor(t, 10*time.Second, "the slots are freed", func() bool { return len(a.logReads) == 0 })
	if _, err := cl.StopJob(ctx, "long"); err != nil {
		t.Fatal(err)
	}
}

// TestBootstrapExistingCluster: the first agent of a cluster made before
// the control plane (its data directory has the cluster's secrets but no
// raft state) forms a control plane with --bootstrap, and runs jobs.
func TestBootstrapExistingCluster(t *testing.T) {
	cfg := jobsAgentConfig(t, nil)
	dir := cfg.DataDir
	a, err := StartAgent(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(dir, "raft")); err != nil { // as an older version left it
		t.Fatal(err)
	}
	cfg.Bootstrap = true
	if a, err = StartAgent(cfg); err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	hostile := guestBytes(t, "internal/testguests/hostile")
	cl := a.Client(a.APIToken())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := cl.SubmitWith(ctx, hostile, []string{"ticks", "1", "1"}, SubmitOptions{ID: "after-upgrade"}, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	if st, err := cl.Status(ctx); err != nil || st.Control.Role != "leader" {
		t.Fatalf("control plane %+v, %v", st.Control, err)
	}
}

// jobsAgentConfig is the one-node agent these tests start; tweak changes
// it.
func jobsAgentConfig(t *testing.T, tweak func(*AgentConfig)) AgentConfig {
	cfg := AgentConfig{DataDir: t.TempDir(), GossipAddr: "127.0.0.1:0", QUICAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Timing: membership.Fast,
		Node: Config{NumCPUs: 2, ObjectStoreMemory: 64 << 20, WorkerCommand: []string{testrig.Fabric(t), "worker"}, Stdout: io.Discard, Stderr: io.Discard}}
	if tweak != nil {
		tweak(&cfg)
	}
	return cfg
}

// startJobsAgent starts jobsAgentConfig's agent, closed with the test.
func startJobsAgent(t *testing.T, tweak func(*AgentConfig)) *Agent {
	t.Helper()
	a, err := StartAgent(jobsAgentConfig(t, tweak))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	return a
}

// joinAgent starts another agent that joins a's cluster, closed when
// the test ends, and waits until it and a see every member.
func joinAgent(t *testing.T, a *Agent, tweaks ...func(*AgentConfig)) *Agent {
	t.Helper()
	cfg := jobsAgentConfig(t, func(c *AgentConfig) {
		for _, tweak := range tweaks {
			tweak(c)
		}
	})
	cfg.Token = joinToken(t, a)
	n := a.node.NodeCount() + 1
	b, err := StartAgent(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	waitFor(t, 15*time.Second, fmt.Sprintf("%d members", n), func() bool {
		return a.node.NodeCount() == n && b.node.NodeCount() == n
	})
	return b
}

// guestBytes returns a guest module, built if missing.
func guestBytes(t *testing.T, dir string) []byte {
	t.Helper()
	b, err := os.ReadFile(testrig.Guest(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestJobListingsStaySmall: a listing leaves out what a job can make
// large (its arguments, its restart causes) and cuts its error, so that
// jobs full of 64 KiB of arguments cannot make `job list` (or the
// leader's own scan) too large for one message; a job's own record has
// them whole.
func TestJobListingsStaySmall(t *testing.T) {
	a := startJobsAgent(t, nil)
	hostile := guestBytes(t, "internal/testguests/hostile")
	cl := a.Client(a.APIToken())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	big := strings.Repeat("x", 60<<10)
	if _, err := cl.SubmitWith(ctx, hostile, []string{"ticks", "1", "1", big}, SubmitOptions{ID: "big"}, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	jobs, err := cl.Jobs(ctx)
	if err != nil || len(jobs) != 1 || jobs[0].Args != nil || jobs[0].State != "succeeded" {
		t.Fatalf("listing: %+v, %v", jobs, err)
	}
	if j, err := cl.Job(ctx, "big"); err != nil || len(j.Args) != 4 || j.Args[3] != big {
		t.Fatalf("the job's own record lacks its arguments: %v", err)
	}
	long := make([]controlstate.Job, 1)
	long[0].Error = strings.Repeat("e", 64<<10)
	if got := listed(long)[0].Error; len(got) > listErrorLength+100 {
		t.Fatalf("a listed error of %d bytes", len(got))
	}
}
