//go:build linux

package main

import (
	"bufio"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/wasmfabric/fabric/fabric"
	"github.com/wasmfabric/fabric/internal/cgroups"
	"github.com/wasmfabric/fabric/internal/testrig"
)

// agentProc is a running `fabric agent` process and what it printed.
type agentProc struct {
	cmd                       *exec.Cmd
	gossip, quic, api, apiTok string
	serve                     string // the Serve ingress's host:port
	dataDir                   string
	exited                    chan error
	stderr                    *lockedBuffer
}

// client is a client of the agent's API with token, trusting its CA.
func (p *agentProc) client(t *testing.T, token string) *fabric.Client {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(p.dataDir, "cluster", "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(b)
	return &fabric.Client{Address: p.api, Token: token, CA: pool}
}

// lockedBuffer collects a process's stderr for checks while it runs.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// joinToken makes a join token on the agent (a server) with fabric
// join-token create, with more flags (--server).
func (p *agentProc) joinToken(t *testing.T, flags ...string) string {
	t.Helper()
	res := testrig.Run(t, time.Minute, append([]string{"join-token", "create", "-q", "--address", p.api, "--token", p.apiTok}, flags...)...)
	if res.Code != 0 || !strings.HasPrefix(res.Stdout, "fabric-join1.") {
		t.Fatalf("join-token create: exit %d\n%s\n%s", res.Code, res.Stdout, res.Stderr)
	}
	tok := strings.TrimSpace(res.Stdout)
	adminOf.Store(tok, p.apiTok)
	return tok
}

// adminOf is the cluster admin token of the agent each join token was
// made on: the agents that join with it use it too.
var adminOf sync.Map

var agentLine = regexp.MustCompile(`^\s+(gossip|QUIC|HTTP API|Serve):\s+(\S+)`)

func startAgentProc(t *testing.T, extra ...string) *agentProc {
	t.Helper()
	p, ready := launchAgentProc(t, extra...)
	select {
	case <-ready:
	case err := <-p.exited:
		p.exited <- err
		t.Fatalf("agent exited before it was ready: %v\n%s", err, p.stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("agent did not print its addresses within 30s\n%s", p.stderr.String())
	}
	return p
}

// stop kills the agent, and removes the control groups it made outside
// its data directory, which an agent removes when it leaves or starts
// again (killed, it does neither).
func (p *agentProc) stop() {
	_ = p.cmd.Process.Kill()
	err := <-p.exited
	p.exited <- err
	removeAgentGroups(p.dataDir)
}

// removeAgentGroups removes the control groups of the agent whose data
// directory is dir, once it is gone.
func removeAgentGroups(dir string) {
	if id, err := os.ReadFile(filepath.Join(dir, "node-id")); err == nil && dir != "" {
		_ = cgroups.Remove(cgroups.AgentDir(strings.TrimSpace(string(id))), 10*time.Second) // its workers die with their connection
	}
}

// launchAgentProc starts an agent; ready is closed once it printed its
// addresses (and its API token, on the first agent, is read).
func launchAgentProc(t *testing.T, extra ...string) (*agentProc, <-chan struct{}) {
	t.Helper()
	args := append([]string{"agent", "--data-dir", t.TempDir(), "--gossip-addr", "127.0.0.1:0",
		"--quic-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--serve-addr", "127.0.0.1:0", "--num-cpus", "1"}, extra...)
	cmd := exec.Command(testrig.Fabric(t), args...)
	errBuf := &lockedBuffer{}
	cmd.Stderr = errBuf
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &agentProc{cmd: cmd, exited: make(chan error, 1), stderr: errBuf}
	fresh := true
	for i, a := range args {
		if a == "--data-dir" && i+1 < len(args) {
			p.dataDir = args[i+1]
		}
		if a == "--token" || a == "--token-file" {
			fresh = false
		}
		if tok, ok := adminOf.Load(a); ok && i > 0 && args[i-1] == "--token" {
			p.apiTok = tok.(string)
		}
	}
	t.Cleanup(func() { p.stop() })
	if fresh {
		// The commands the test runs trust this cluster's CA (the last
		// one a test made), as --ca would say.
		t.Setenv("FABRIC_CA", filepath.Join(p.dataDir, "cluster", "ca.pem"))
	}
	got := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if m := agentLine.FindStringSubmatch(sc.Text()); m != nil {
				switch m[1] {
				case "gossip":
					p.gossip = m[2]
				case "QUIC":
					p.quic = m[2]
				case "HTTP API":
					p.api = m[2]
				case "Serve":
					p.serve = strings.TrimPrefix(strings.Fields(m[2])[0], "http://")
				}
			}
			if strings.HasPrefix(sc.Text(), "Add a node:") {
				if b, err := os.ReadFile(filepath.Join(p.dataDir, "api-token")); err == nil && p.apiTok == "" {
					p.apiTok = strings.TrimSpace(string(b))
				}
				close(got)
			}
		}
		p.exited <- cmd.Wait()
	}()
	return p, got
}

// TestAgentProcesses runs two real agent processes on loopback: the second
// joins the first with its join token; list, status and submit work
// against either; a wrong API token is refused; both leave on SIGTERM.
func TestAgentProcesses(t *testing.T) {
	a := startAgentProc(t)
	b := startAgentProc(t, "--join", a.gossip, "--token", a.joinToken(t), "--labels", "tier=edge")
	auth := []string{"--address", b.api, "--token", a.apiTok}

	deadline := time.Now().Add(15 * time.Second)
	for {
		res := testrig.Run(t, 30*time.Second, append([]string{"list", "nodes", "-o", "json"}, auth...)...)
		var nodes []struct {
			ID, Status string
			Labels     map[string]string
		}
		if res.Code == 0 && json.Unmarshal([]byte(res.Stdout), &nodes) == nil && len(nodes) == 2 &&
			nodes[0].Status == "alive" && nodes[1].Status == "alive" && (nodes[0].Labels["tier"] == "edge" || nodes[1].Labels["tier"] == "edge") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("two alive nodes not listed: exit %d\n%s\n%s", res.Code, res.Stdout, res.Stderr)
		}
		time.Sleep(200 * time.Millisecond)
	}
	res := testrig.Run(t, 30*time.Second, append([]string{"list", "nodes"}, auth...)...)
	if res.Code != 0 || !strings.Contains(res.Stdout, "ID") || !strings.Contains(res.Stdout, "tier=edge") {
		t.Fatalf("list nodes table: exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
	}
	res = testrig.Run(t, 30*time.Second, append([]string{"status"}, auth...)...)
	if res.Code != 0 || !strings.Contains(res.Stdout, "2 alive") || !strings.Contains(res.Stdout, "CPU") ||
		!strings.Contains(res.Stdout, "Workers on ") || !strings.Contains(res.Stdout, "0 executions waiting for one") {
		t.Fatalf("status: exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
	}

	quick := testrig.Guest(t, "examples/quickstart")
	res = testrig.Run(t, time.Minute, append([]string{"submit", quick}, "--address", a.api, "--token", a.apiTok)...)
	if res.Code != 0 || !strings.Contains(res.Stdout, "[0 1 4 9 16]") {
		t.Fatalf("submit: exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
	}
	res = testrig.Run(t, 30*time.Second, "list", "nodes", "--address", a.api, "--token", "fat1_wrong")
	if res.Code != 1 || !strings.Contains(res.Stderr, "401") || !strings.Contains(res.Stderr, "API token") {
		t.Fatalf("wrong token: exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
	}

	if !strings.Contains(a.stderr.String(), "joined") {
		t.Errorf("the first agent did not log the second one joining:\n%s", a.stderr.String())
	}
	// SIGUSR1 writes the node's state to stderr.
	_ = a.cmd.Process.Signal(syscall.SIGUSR1)
	deadline = time.Now().Add(10 * time.Second)
	for !strings.Contains(a.stderr.String(), "worker processes") && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(a.stderr.String(), "shell: 0 timers, 0 jobs with handles") {
		t.Errorf("no state on SIGUSR1:\n%s", a.stderr.String())
	}
	for _, p := range []*agentProc{b, a} {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-p.exited:
			p.exited <- err
			if err != nil {
				t.Fatalf("agent exit on SIGTERM: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("agent did not exit on SIGTERM")
		}
	}
}

// TestRayCoreOnCluster runs the features guest's Ray Core cases on a
// cluster of three agent processes (one CPU each), submitted to one of
// them, as TestFeatures runs them on an embedded node.
func TestRayCoreOnCluster(t *testing.T) {
	a := startAgentProc(t)
	b := startAgentProc(t, "--join", a.gossip, "--token", a.joinToken(t))
	c := startAgentProc(t, "--join", a.gossip, "--token", a.joinToken(t))
	auth := []string{"--address", a.api, "--token", a.apiTok}
	_, _ = b, c
	deadline := time.Now().Add(30 * time.Second)
	for {
		res := testrig.Run(t, 30*time.Second, append([]string{"list", "nodes", "-o", "json"}, auth...)...)
		var nodes []struct{ Status string }
		alive := 0
		if res.Code == 0 && json.Unmarshal([]byte(res.Stdout), &nodes) == nil {
			for _, n := range nodes {
				if n.Status == "alive" {
					alive++
				}
			}
		}
		if alive == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("three alive nodes not listed: exit %d\n%s\n%s", res.Code, res.Stdout, res.Stderr)
		}
		time.Sleep(200 * time.Millisecond)
	}
	wasm := testrig.Guest(t, "internal/testguests/features")
	res := testrig.Run(t, 2*time.Minute, append(append([]string{"submit", wasm}, auth...), "--", "exits", "named", "context", "cluster", "cancel_actor", "mixed", "error_types", "cancel_cooperative", "scheduling", "method_options", "util", "pg_ready_ref", "pg_named", "async_actor", "concurrency_groups", "generator_stream", "generators", "task_retries_remote", "namespaces")...)
	// A retry's notice reaches the job's own output, not only the log of
	// the agent where it happened.
	if res.Code != 0 || strings.Contains(res.Stdout, "FAIL:") || !strings.Contains(res.Stdout, "cluster: 3 nodes, CPU 3\n") || !strings.Contains(res.Stdout, "spread: 3 tasks on 3 nodes\n") ||
		!strings.Contains(res.Stderr, "fabric: task quitter exited (guest exited with code 3); retrying") {
		t.Fatalf("Ray Core cases: exit %d\nstdout:\n%s\nstderr:\n%s", res.Code, res.Stdout, res.Stderr)
	}
	for _, w := range append(append(append(append(append(append(append(append(append(append(append(exitChecks, namedChecks...), contextChecks...), errorChecks...), cancelChecks...), schedulingChecks...), methodOptionChecks...), utilChecks...), pgNamedChecks...), asyncChecks...), generatorChecks...), "remote_actor_call_retried_after_restart", "remote_actor_lives_elsewhere", "actor_found_in_namespace", "named_actors_listed", "detached_needs_a_name", "detached_group_listed", "pg_ready_ref_in_wait", "pg_ready_ref_never", "cluster_nodes", "cluster_resources",
		"cancel_queued_actor_call", "cancelled_actor_call_never_ran", "wait_mixed_types", "get_mixed_types") {
		if !strings.Contains(res.Stdout, "ok: "+w+"\n") {
			t.Errorf("no %q in:\n%s", "ok: "+w, res.Stdout)
		}
	}
	// A detached actor outlives the job that made it: a later job finds it
	// with its state, lists it and kills it.
	for _, step := range []struct {
		cases []string
		want  []string
	}{
		{[]string{"detached_create"}, []string{"ok: detached_created", "keeper holds 5"}},
		{[]string{"detached_use"}, []string{"ok: detached_outlives_job", "ok: detached_listed", "ok: detached_group_outlives_job", "ok: detached_group_removed", "ok: detached_killed", "keeper holds 6"}},
	} {
		res = testrig.Run(t, time.Minute, append(append([]string{"submit", wasm}, auth...), append([]string{"--"}, step.cases...)...)...)
		out := res.Stdout + res.Stderr
		for _, w := range step.want {
			if res.Code != 0 || !strings.Contains(out, w) || strings.Contains(out, "FAIL:") {
				t.Errorf("%v: no %q: exit %d\nstdout:\n%s\nstderr:\n%s", step.cases, w, res.Code, res.Stdout, res.Stderr)
				break
			}
		}
	}
	res = testrig.Run(t, time.Minute, append(append([]string{"submit", wasm}, auth...), "--", "driver_exit", "5")...)
	if res.Code != 5 || !strings.Contains(res.Stderr, "the driver exited with code 5") {
		t.Errorf("driver_exit 5: exit %d\nstdout:\n%s\nstderr:\n%s", res.Code, res.Stdout, res.Stderr)
	}
}

// TestAgentKilledMidTask kills -9 the agent process running a task of
// another agent's job: gossip declares it dead, and the owner runs the
// task again on the other node that can.
func TestAgentKilledMidTask(t *testing.T) {
	a := startAgentProc(t)
	b := startAgentProc(t, "--join", a.gossip, "--token", a.joinToken(t), "--labels", "tier=edge")
	c := startAgentProc(t, "--join", a.gossip, "--token", a.joinToken(t), "--labels", "tier=edge")
	ids := agentIDs(t, a.apiTok, a, b, c)
	type nodeView struct {
		ID     string
		Status string
		Used   map[string]float64
	}
	done := make(chan testrig.Result, 1)
	chaos := testrig.Guest(t, "internal/testguests/chaos")
	go func() {
		done <- testrig.Run(t, 2*time.Minute, "submit", chaos, "--address", a.api, "--token", a.apiTok, "--", "remote", "8000")
	}()
	var killed *agentProc
	deadline := time.Now().Add(30 * time.Second)
	for killed == nil && time.Now().Before(deadline) {
		res := testrig.Run(t, 30*time.Second, "list", "nodes", "-o", "json", "--address", a.api, "--token", a.apiTok)
		var nodes []nodeView
		if json.Unmarshal([]byte(res.Stdout), &nodes) == nil {
			for _, n := range nodes {
				for _, p := range []*agentProc{b, c} {
					if n.ID == ids[p] && n.Used["CPU"] > 0 {
						killed = p
					}
				}
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	if killed == nil {
		t.Fatal("no edge node reported the task running")
	}
	_ = killed.cmd.Process.Signal(syscall.SIGKILL)
	survivor := b
	if killed == b {
		survivor = c
	}
	res := <-done
	if res.Code != 0 || !strings.Contains(res.Stdout, "remote: ran on "+ids[survivor]+" <nil>") {
		t.Fatalf("after killing %s: exit %d\n%s\n%s", ids[killed], res.Code, res.Stdout, res.Stderr)
	}
}

// TestChaosKillAgent kills -9 one of three agent processes while a job
// runs 2,000 tasks across them and calls an actor that lives on the
// killed node: every task's result arrives, the actor's calls resume
// after its restart on the other edge node, and the surviving nodes'
// resources in use return to zero within 60 s.
func TestChaosKillAgent(t *testing.T) {
	a := startAgentProc(t)
	b := startAgentProc(t, "--join", a.gossip, "--token", a.joinToken(t), "--labels", "tier=edge")
	c := startAgentProc(t, "--join", a.gossip, "--token", a.joinToken(t), "--labels", "tier=edge")
	ids := agentIDs(t, a.apiTok, a, b, c)
	cmd := exec.Command(testrig.Fabric(t), "submit", testrig.Guest(t, "internal/testguests/chaos"),
		"--address", a.api, "--token", a.apiTok, "--", "storm", "2000")
	out := &lockedBuffer{}
	cmd.Stderr = out
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	var killed *agentProc
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := sc.Text()
		_, _ = out.Write([]byte(line + "\n"))
		if node, ok := strings.CutPrefix(line, "storm: actor on "); ok && killed == nil {
			for _, p := range []*agentProc{b, c} {
				if ids[p] == node {
					killed = p
				}
			}
			if killed == nil {
				t.Fatalf("the actor is on %q, not an edge node", node)
			}
			time.Sleep(2 * time.Second) // tasks are spread over the three nodes by now
			_ = killed.cmd.Process.Signal(syscall.SIGKILL)
		}
	}
	if err := cmd.Wait(); err != nil || killed == nil {
		t.Fatalf("submit: %v\n%s", err, out.String())
	}
	survivor := b
	if killed == b {
		survivor = c
	}
	got := out.String()
	if !strings.Contains(got, "storm: 2000 of 2000 results right\n") {
		t.Errorf("not every result arrived:\n%s", got)
	}
	m := regexp.MustCompile(`storm: actor calls ok (\d+), failed (\d+), restarts seen (\d+); last call (\d+)@(\S+) <nil>`).FindStringSubmatch(got)
	if m == nil || m[3] != "1" || m[5] != ids[survivor] {
		t.Errorf("the actor did not resume on %s after one restart:\n%s", ids[survivor], got)
	} else {
		t.Logf("killed %s: %s", ids[killed], m[0])
	}
	// The surviving nodes give back what the job held, and see the killed one dead.
	deadline := time.Now().Add(60 * time.Second)
	for {
		res := testrig.Run(t, 30*time.Second, "list", "nodes", "-o", "json", "--address", a.api, "--token", a.apiTok)
		var nodes []struct {
			ID, Status string
			Used       map[string]float64
		}
		settled := json.Unmarshal([]byte(res.Stdout), &nodes) == nil && len(nodes) == 3
		for _, n := range nodes {
			switch {
			case n.ID == ids[killed] && n.Status == "alive":
				settled = false
			case n.ID != ids[killed] && (n.Status != "alive" || len(n.Used) > 0):
				settled = false
			}
		}
		if settled {
			t.Logf("surviving nodes back to zero use %s after the job", time.Since(deadline.Add(-60*time.Second)).Round(100*time.Millisecond))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("60 s after the job the surviving nodes still hold resources:\n%s", res.Stdout)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// agentIDs returns the node ID of each agent process.
func agentIDs(t *testing.T, apiTok string, procs ...*agentProc) map[*agentProc]string {
	t.Helper()
	ids := map[*agentProc]string{}
	deadline := time.Now().Add(15 * time.Second)
	for len(ids) < len(procs) && time.Now().Before(deadline) {
		for _, p := range procs {
			res := testrig.Run(t, 30*time.Second, "status", "-o", "json", "--address", p.api, "--token", apiTok)
			var st struct{ Node string }
			if res.Code == 0 && json.Unmarshal([]byte(res.Stdout), &st) == nil {
				ids[p] = st.Node
			}
		}
	}
	if len(ids) < len(procs) {
		t.Fatalf("only %d of %d agents answered status", len(ids), len(procs))
	}
	return ids
}

// peakRSS returns the most memory a process has held (VmHWM), in bytes.
func peakRSS(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		var kb int64
		if _, err := fmt.Sscanf(line, "VmHWM: %d kB", &kb); err == nil {
			return kb << 10
		}
	}
	t.Fatal("no VmHWM in /proc status")
	return 0
}

// TestHostileMemory runs, as a hostile tenant would, the two programs that
// took an agent down: a chain of 3 million objects, each nesting a
// reference to the one before, released at once (the recursive release
// overflowed the stack), and 40,000 puts of 100 KiB kept (small values
// sat in the agent's heap uncounted). The agents stay up with their memory
// bounded by their configuration, the puts past the node's capacity fail
// with a clear error, and another job on the same agent runs meanwhile.
func TestHostileMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping 3 million puts")
	}
	hostile := testrig.Guest(t, "internal/testguests/hostile")
	quick := testrig.Guest(t, "examples/quickstart")
	cases := []struct {
		name  string
		flags []string
		args  []string
		want  []string
		limit int64 // peak agent memory
	}{
		{"chain", []string{"--object-store-memory", "6GiB"}, []string{"chain", "3000000"},
			[]string{"chain: 3000000 links made and released", "still serving: 42"}, 3 << 30},
		{"smallputs", []string{"--object-store-memory", "64MiB"}, []string{"smallputs", "40000"},
			[]string{"object store full", "smallputs: 40000 puts", "still serving: 42"}, 512 << 20},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := startAgentProc(t, append([]string{"--num-cpus", "2"}, c.flags...)...)
			auth := []string{"--address", a.api, "--token", a.apiTok}
			done := make(chan testrig.Result, 1)
			go func() {
				done <- testrig.Run(t, 5*time.Minute, append(append([]string{"submit", hostile}, auth...), append([]string{"--"}, c.args...)...)...)
			}()
			// Another tenant's job, beside it, until it ends.
			others := 0
			for running := true; running; {
				res := testrig.Run(t, 2*time.Minute, append([]string{"submit", quick}, auth...)...)
				if res.Code != 0 || !strings.Contains(res.Stdout, "[0 1 4 9 16]") {
					t.Fatalf("the other job failed beside %s: exit %d\n%s%s", c.name, res.Code, res.Stdout, res.Stderr)
				}
				others++
				select {
				case res := <-done:
					running = false
					for _, w := range c.want {
						if !strings.Contains(res.Stdout+res.Stderr, w) {
							t.Errorf("%s: output lacks %q: exit %d\n%.3000s\n%.3000s", c.name, w, res.Code, res.Stdout, res.Stderr)
						}
					}
				default:
				}
			}
			if peak := peakRSS(t, a.cmd.Process.Pid); peak > c.limit {
				t.Errorf("the agent's memory peaked at %d MiB; its bound is %d MiB", peak>>20, c.limit>>20)
			} else {
				t.Logf("%s: the agent's memory peaked at %d MiB; %d other jobs ran beside it", c.name, peak>>20, others)
			}
			res := testrig.Run(t, time.Minute, append([]string{"submit", quick}, auth...)...)
			if res.Code != 0 || !strings.Contains(res.Stdout, "[0 1 4 9 16]") {
				t.Fatalf("the agent does not serve after %s: exit %d\n%s%s", c.name, res.Code, res.Stdout, res.Stderr)
			}
		})
	}
}

// TestAgentRestartAfterKill: an agent killed with SIGKILL restarts on the
// same data directory without manual cleanup, and the spilled objects of
// the jobs that died with it are gone; a second agent on a directory in
// use is refused with a message that says so.
func TestAgentRestartAfterKill(t *testing.T) {
	dir := t.TempDir()
	a := startAgentProc(t, "--data-dir", dir)
	res := testrig.Run(t, 30*time.Second, "agent", "--data-dir", dir, "--gossip-addr", "127.0.0.1:0",
		"--quic-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0")
	if res.Code == 0 || !strings.Contains(res.Stderr, "data directory is in use") || !strings.Contains(res.Stderr, "its own --data-dir") {
		t.Fatalf("a second agent on the same data directory: exit %d\n%s", res.Code, res.Stderr)
	}
	junk := filepath.Join(dir, "node", "spill", "dead-job-object")
	partial := filepath.Join(dir, "node", "modules", "upload.1234.tmp")
	for _, f := range []string{junk, partial} {
		if err := os.WriteFile(f, []byte("left by the dead agent"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	_ = a.cmd.Process.Signal(syscall.SIGKILL)
	err := <-a.exited
	a.exited <- err
	if _, err := os.Stat(filepath.Join(dir, "node", "agent.sock")); err != nil {
		t.Fatalf("the killed agent left no socket, so this tests nothing: %v", err)
	}
	b := startAgentProc(t, "--data-dir", dir)
	for _, f := range []string{junk, partial} {
		if _, err := os.Stat(f); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s, left by the dead agent, is still there: %v", filepath.Base(f), err)
		}
	}
	wasm := testrig.Guest(t, "examples/quickstart")
	res = testrig.Run(t, time.Minute, "submit", wasm, "--address", b.api, "--token", b.apiTok)
	if res.Code != 0 || !strings.Contains(res.Stdout, "[0 1 4 9 16]") {
		t.Fatalf("a job on the restarted agent: exit %d\n%s\n%s", res.Code, res.Stdout, res.Stderr)
	}
}

// TestLocalAgentFound: commands on an agent's machine find it whatever
// its --data-dir; with two agents they say so and ask which; a killed
// agent's pointer is stale and ignored.
func TestLocalAgentFound(t *testing.T) {
	isolateLocalAgents(t)
	a := startAgentProc(t, "--data-dir", filepath.Join(t.TempDir(), "somewhere-else"))
	res := testrig.Run(t, 30*time.Second, "status")
	if res.Code != 0 || !strings.Contains(res.Stdout, "alive") {
		t.Fatalf("status with one local agent: exit %d\n%s\n%s", res.Code, res.Stdout, res.Stderr)
	}
	b := startAgentProc(t, "--data-dir", filepath.Join(t.TempDir(), "another"))
	res = testrig.Run(t, 30*time.Second, "status")
	if res.Code == 0 || !strings.Contains(res.Stderr, "2 agents run on this machine") {
		t.Fatalf("status with two local agents: exit %d\n%s", res.Code, res.Stderr)
	}
	_ = b.cmd.Process.Signal(syscall.SIGKILL)
	err := <-b.exited
	b.exited <- err
	res = testrig.Run(t, 30*time.Second, "status", "-o", "json")
	if res.Code != 0 || !strings.Contains(res.Stdout, strings.TrimPrefix(a.api, "https://")) && !strings.Contains(res.Stdout, "alive") {
		t.Fatalf("status after the second agent was killed: exit %d\n%s\n%s", res.Code, res.Stdout, res.Stderr)
	}
}

// TestDev: `fabric dev` runs a node on loopback that `fabric submit`, run
// with no address or token, finds and runs a job on.
func TestDev(t *testing.T) {
	isolateLocalAgents(t)
	cmd := exec.Command(testrig.Fabric(t), "dev", "--http-addr", "127.0.0.1:0", "--num-cpus", "1")
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Asked to leave, the agent removes its control groups.
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Process.Signal(syscall.SIGTERM)
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(out.String(), "API token:") {
		if time.Now().After(deadline) {
			t.Fatalf("fabric dev did not start:\n%s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(out.String(), "HTTP API:   https://127.0.0.1:") || !strings.Contains(out.String(), "find it") {
		t.Errorf("dev's banner:\n%s", out.String())
	}
	res := testrig.Run(t, time.Minute, "submit", testrig.Guest(t, "examples/quickstart"))
	if res.Code != 0 || !strings.Contains(res.Stdout, "[0 1 4 9 16]") {
		t.Fatalf("submit to the dev node: exit %d\n%s\n%s", res.Code, res.Stdout, res.Stderr)
	}
}

// TestJoinRetries: an agent started with a join token while no server
// of the token answers says why each try failed, keeps trying, and joins
// once the server is up.
func TestJoinRetries(t *testing.T) {
	seedDir := t.TempDir()
	seed := startAgentProc(t, "--data-dir", seedDir)
	gossip, quic, token := seed.gossip, seed.quic, seed.joinToken(t)
	_ = seed.cmd.Process.Signal(syscall.SIGKILL)
	err := <-seed.exited
	seed.exited <- err

	b, ready := launchAgentProc(t, "--token", token)
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(b.stderr.String(), "join failed: server "+quic) {
		if time.Now().After(deadline) {
			t.Fatalf("no failed join said:\n%s", b.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	seed = startAgentProc(t, "--data-dir", seedDir, "--gossip-addr", gossip, "--quic-addr", quic)
	select {
	case <-ready:
	case <-time.After(60 * time.Second):
		t.Fatalf("b was not admitted once the server was up:\n%s", b.stderr.String())
	}
	auth := []string{"--address", b.api, "--token", seed.apiTok}
	deadline = time.Now().Add(60 * time.Second)
	for {
		res := testrig.Run(t, 30*time.Second, append([]string{"status"}, auth...)...)
		if strings.Contains(res.Stdout, "2 alive") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("b never joined the seed once it was up:\n%s\n%s", res.Stdout, b.stderr.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestAgentSettings: an agent's flags come from the command line, then
// FABRIC_* variables, then config.json in its data directory; a setting
// the agent does not have is an error that names it.
func TestAgentSettings(t *testing.T) {
	dir := t.TempDir()
	config := `{"num-cpus": 3, "labels": {"tier": "edge", "zone": "z1"}, "resources": ["tpu=2"]}`
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("FABRIC_MEMORY", "2Gi")
	a := startAgentProc(t, "--data-dir", dir) // --num-cpus 1 on the command line
	res := testrig.Run(t, 30*time.Second, "list", "nodes", "-o", "json", "--address", a.api, "--token", a.apiTok)
	var nodes []struct {
		Labels map[string]string  `json:"labels"`
		Total  map[string]float64 `json:"resources"`
	}
	if res.Code != 0 || json.Unmarshal([]byte(res.Stdout), &nodes) != nil || len(nodes) != 1 {
		t.Fatalf("list nodes: exit %d\n%s\n%s", res.Code, res.Stdout, res.Stderr)
	}
	n := nodes[0]
	if n.Total["CPU"] != 1 || n.Labels["tier"] != "edge" || n.Labels["zone"] != "z1" || n.Total["tpu"] != 2 || n.Total["memory"] != 2<<30 {
		t.Errorf("settings: labels %v, total %v (want CPU 1 from the command line, memory 2Gi from the environment, labels and tpu from the file)", n.Labels, n.Total)
	}
	bad := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(bad, []byte(`{"num-cpu": 2}`), 0o600); err != nil {
		t.Fatal(err)
	}
	res = testrig.Run(t, 30*time.Second, "agent", "--data-dir", t.TempDir(), "--config", bad)
	if res.Code == 0 || !strings.Contains(res.Stderr, "no flag --num-cpu") {
		t.Fatalf("a config with an unknown setting: exit %d\n%s", res.Code, res.Stderr)
	}
}

// TestOutputFormats: list and status print tables, wide tables, JSON and
// YAML with the same field names, and refuse other formats.
func TestOutputFormats(t *testing.T) {
	a := startAgentProc(t, "--resources", "tpu=2")
	auth := []string{"--address", a.api, "--token", a.apiTok}
	run := func(args ...string) testrig.Result {
		return testrig.Run(t, 30*time.Second, append(args, auth...)...)
	}
	if res := run("list", "nodes", "-o", "wide"); res.Code != 0 || !strings.Contains(res.Stdout, "QUIC") || !strings.Contains(res.Stdout, "tpu 2") {
		t.Errorf("wide: exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
	}
	res := run("list", "nodes", "-o", "yaml")
	if res.Code != 0 || !strings.Contains(res.Stdout, "- gossip: ") || !strings.Contains(res.Stdout, "    tpu: 2\n") || strings.Contains(res.Stdout, "e+") {
		t.Errorf("yaml: exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
	}
	if res := run("status", "-o", "yaml"); res.Code != 0 || !strings.Contains(res.Stdout, "nodes:\n  alive: 1\n") {
		t.Errorf("status yaml: exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
	}
	if res := run("status", "-o", "xml"); res.Code == 0 || !strings.Contains(res.Stderr, "use table, wide, json or yaml") {
		t.Errorf("xml: exit %d\n%s", res.Code, res.Stderr)
	}
}

// isolateLocalAgents gives the test's processes a home, a TMPDIR (where
// agents leave their pointers) and no FABRIC_* settings of their own.
func isolateLocalAgents(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	t.Setenv("HOME", t.TempDir())
	for _, k := range []string{"FABRIC_DATA_DIR", "FABRIC_ADDR", "FABRIC_TOKEN"} {
		t.Setenv(k, "")
	}
}
