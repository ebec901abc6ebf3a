//go:build linux

package fabric

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wasmfabric/fabric/internal/abi"
	"github.com/wasmfabric/fabric/internal/membership"
	"github.com/wasmfabric/fabric/internal/sandbox"
	"github.com/wasmfabric/fabric/internal/testrig"
	"github.com/wasmfabric/fabric/internal/transport"
	"github.com/wasmfabric/fabric/internal/wire"
)

func startAgent(t *testing.T, token string, join ...string) *Agent {
	t.Helper()
	a, err := StartAgent(AgentConfig{
		DataDir:    t.TempDir(),
		GossipAddr: "127.0.0.1:0", QUICAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		Join: join, Token: token, Labels: map[string]string{"tier": "test"},
		Node: Config{NumCPUs: 2, ObjectStoreMemory: 64 << 20, WorkerCommand: []string{testrig.Fabric(t), "worker"},
			Stdout: io.Discard, Stderr: io.Discard},
		Timing: membership.Fast,
	})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestAgentsFormCluster starts three agents in one process: the second and
// third join the first with its token. Each lists all three through its
// HTTP API; a job submitted to one runs and streams its output; a wrong API
// token and a stranger's join token are refused; a stopped agent is
// reported dead.
func TestAgentsFormCluster(t *testing.T) {
	before := runtime.NumGoroutine()
	a := startAgent(t, "")
	b := startAgent(t, joinToken(t, a), a.GossipAddr())
	c := startAgent(t, joinToken(t, a), a.GossipAddr())
	ctx := context.Background()
	clients := map[string]*Client{}
	for _, ag := range []*Agent{a, b, c} {
		clients[ag.ID] = ag.Client(a.APIToken())
	}
	for id, cl := range clients {
		waitFor(t, 10*time.Second, id+" sees three alive nodes", func() bool {
			nodes, err := cl.Nodes(ctx)
			if err != nil || len(nodes) != 3 {
				return false
			}
			for _, n := range nodes {
				if n.Status != "alive" || n.Resources["CPU"] != 2 || n.Labels["tier"] != "test" {
					return false
				}
			}
			return true
		})
	}
	// Every agent reaches every other over mutual-TLS QUIC.
	for _, from := range []*Agent{a, b, c} {
		for _, to := range []*Agent{a, b, c} {
			if _, err := from.Ping(ctx, to.ID); err != nil {
				t.Fatalf("%s -> %s over QUIC: %v", from.ID, to.ID, err)
			}
		}
	}
	// Objects move between nodes: a stored one (arena) and a small one.
	big := make([]byte, 5<<20)
	for i := range big {
		big[i] = byte(i * 7 / 3)
	}
	for _, data := range [][]byte{big, []byte("small value")} {
		id, err := a.Node().PutObject(data)
		if err != nil {
			t.Fatal(err)
		}
		st, err := c.PullObject(ctx, a.ID, id, transport.PullOptions{})
		if err != nil {
			t.Fatalf("pull of %d bytes from a to c: %v (stats %+v)", len(data), err, st)
		}
		if got, err := c.Node().ReadObject(id); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("c's copy of %d bytes: %v", len(data), err)
		}
		if _, err := c.PullObject(ctx, a.ID, id, transport.PullOptions{}); err == nil {
			t.Fatal("a second pull of an object c holds succeeded")
		}
		a.Node().DeleteObject(id)
		c.Node().DeleteObject(id)
		if _, err := c.Node().ReadObject(id); !errors.Is(err, ErrNoObject) {
			t.Fatalf("read after delete: %v", err)
		}
		if _, err := c.PullObject(ctx, a.ID, id, transport.PullOptions{}); !errors.Is(err, transport.ErrRemote) {
			t.Fatalf("pull of a deleted object: %v", err)
		}
	}
	// Modules travel by digest: c ran the quickstart (below), so a takes it from c.
	if err := a.PullModule(ctx, b.ID, strings.Repeat("ab", 32), nil); err == nil {
		t.Fatal("pull of a module nobody has succeeded")
	}
	if err := a.PullModule(ctx, b.ID, "xyz", nil); !errors.Is(err, ErrBadDigest) {
		t.Fatalf("bad digest: %v", err)
	}
	if _, err := a.Ping(ctx, "no-such-node"); !errors.Is(err, ErrUnknownNode) {
		t.Fatalf("ping of an unknown node: %v", err)
	}
	st, err := clients[b.ID].Status(ctx)
	if err != nil || st.Nodes["alive"] != 3 || st.Total["CPU"] != 6 {
		t.Fatalf("status: %+v %v", st, err)
	}

	wasm, err := os.ReadFile(testrig.Guest(t, "examples/quickstart"))
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if err := clients[c.ID].Submit(ctx, wasm, nil, &out); err != nil {
		t.Fatalf("submit: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "[0 1 4 9 16]") {
		t.Fatalf("job output: %q", out.String())
	}
	digest := sandbox.Digest(wasm)
	// A task of c's job runs on b: b fetches the module from c. A job's
	// work opens a share on another node only with the servers' grant: c,
	// not a server, gets one for the cluster's operator only with an
	// admin token.
	seven, _ := wire.Marshal(7)
	if _, err := c.RunRemote(ctx, b.ID, digest, abi.TaskSpec{Func: "square", Args: []abi.Arg{{Value: seven}}}); !errors.Is(err, transport.ErrRemote) || !strings.Contains(err.Error(), "no grant") {
		t.Fatalf("a task sent with no grant: %v, want refused", err)
	}
	ctx = withCallerToken(ctx, a.APIToken())
	long, cancelLong := context.WithTimeout(ctx, time.Minute)
	v, err := c.RunRemote(long, b.ID, digest, abi.TaskSpec{Func: "square", Args: []abi.Arg{{Value: seven}}})
	cancelLong()
	var n int
	if err != nil || wire.Unmarshal(v, &n) != nil || n != 49 {
		t.Fatalf("square(7) on b: %x %v", v, err)
	}
	if !b.Node().HasModule(digest) {
		t.Fatal("b did not keep the module it fetched")
	}
	bad, _ := wire.Marshal("seven")
	if _, err := c.RunRemote(ctx, b.ID, digest, abi.TaskSpec{Func: "square", Args: []abi.Arg{{Value: bad}}}); !errors.Is(err, ErrRemoteTask) {
		t.Fatalf("square(\"seven\") on b: %v, want ErrRemoteTask", err)
	}
	if _, err := c.RunRemote(ctx, b.ID, digest, abi.TaskSpec{Func: "square", Args: []abi.Arg{{Ref: make([]byte, 20)}}}); !errors.Is(err, transport.ErrRemote) || !strings.Contains(err.Error(), "which its sender did not send") {
		t.Fatalf("reference argument the owner does not hold: %v", err)
	}
	if err := a.PullModule(ctx, c.ID, digest, nil); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(a.Node().dataDir, "modules", digest+".wasm")); err != nil || !bytes.Equal(got, wasm) {
		t.Fatalf("a's copy of the module: %v", err)
	}
	// A module is checked before the job starts: bad ones are a bad request.
	if err := clients[c.ID].Submit(ctx, []byte("not wasm"), nil, io.Discard); !errors.Is(err, ErrAPI) || !strings.Contains(err.Error(), "400") || !strings.Contains(err.Error(), "invalid module") {
		t.Fatalf("submit of garbage: %v, want a 400 naming the invalid module", err)
	}
	if err := clients[c.ID].Submit(ctx, nil, nil, io.Discard); !errors.Is(err, ErrAPI) || !strings.Contains(err.Error(), "no module") {
		t.Fatalf("submit of nothing: %v", err)
	}

	// The node's state, for operators.
	req, _ := http.NewRequest("GET", "https://"+a.HTTPAddr()+"/v1/debug/state", nil)
	req.Header.Set("Authorization", "Bearer "+a.APIToken())
	if resp, err := a.Client("").httpClient().Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("debug state: %v %v", resp, err)
	} else {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(b), "node "+a.ID) {
			t.Fatalf("debug state: %s", b)
		}
	}
	wrong := a.Client("fat1_wrong")
	if _, err := wrong.Nodes(ctx); !errors.Is(err, ErrAPI) || !strings.Contains(err.Error(), "401") {
		t.Fatalf("wrong token: %v", err)
	}
	stranger := startAgent(t, "")
	_, err = StartAgent(AgentConfig{DataDir: t.TempDir(), GossipAddr: "127.0.0.1:0", QUICAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		Join: []string{a.GossipAddr()}, Token: joinToken(t, stranger), Timing: membership.Fast,
		Node: Config{NumCPUs: 1, WorkerCommand: []string{testrig.Fabric(t), "worker"}, Stdout: io.Discard, Stderr: io.Discard}})
	if !errors.Is(err, membership.ErrNoJoin) {
		t.Fatalf("agent of another cluster joined: %v", err)
	}
	if err := stranger.Close(); err != nil {
		t.Fatal(err)
	}

	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "c reported dead", func() bool {
		st, err := clients[a.ID].Status(ctx)
		return err == nil && st.Nodes["dead"] == 1 && st.Nodes["alive"] == 2 && st.Total["CPU"] == 4
	})
	if err := b.Leave(); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	checkGoroutines(t, before)
}

// TestAgentDataDir checks what the data directory keeps across restarts:
// the node's ID and the cluster's secrets; and that a token for another
// cluster is refused for it.
func TestAgentDataDir(t *testing.T) {
	dir := t.TempDir()
	cfg := AgentConfig{DataDir: dir, GossipAddr: "127.0.0.1:0", QUICAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Timing: membership.Fast,
		Node: Config{NumCPUs: 1, WorkerCommand: []string{testrig.Fabric(t), "worker"}, Stdout: io.Discard, Stderr: io.Discard}}
	a, err := StartAgent(cfg)
	if err != nil {
		t.Fatal(err)
	}
	id, ca := a.ID, a.cluster.CA
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"node-id", "cluster/gossip.key", "cluster/ca.pem", "cluster/ca-key.pem", "cluster/node.pem", "cluster/node-key.pem", "cluster/admin.token"} {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil || st.Mode().Perm()&0o077 != 0 {
			t.Fatalf("%s: %v, mode %v (want owner-only)", f, err, st.Mode())
		}
	}
	a, err = StartAgent(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if a.ID != id || !a.cluster.CA.Equal(ca) || a.APIToken() == "" {
		t.Fatal("restart changed the node ID or the cluster's secrets")
	}
	other := startAgent(t, "")
	defer other.Close()
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	cfg.Token = joinToken(t, other)
	if _, err := StartAgent(cfg); !errors.Is(err, ErrOtherCluster) {
		t.Fatalf("start with another cluster's token: %v, want ErrOtherCluster", err)
	}
	if _, err := StartAgent(AgentConfig{}); !errors.Is(err, ErrNoDataDir) {
		t.Fatalf("no data dir: %v", err)
	}
}

// joinToken makes a join token on a (a server) for one more node.
func joinToken(t testing.TB, a *Agent) string {
	t.Helper()
	return joinTokenWith(t, a, JoinTokenOptions{})
}

func joinTokenWith(t testing.TB, a *Agent, o JoinTokenOptions) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tok, _, err := a.CreateJoinToken(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// oneCPUAgent starts an agent of one CPU with fast failure detection,
// stopped when the test ends.
func oneCPUAgent(t *testing.T, labels map[string]string, token string, join ...string) *Agent {
	t.Helper()
	a, err := StartAgent(AgentConfig{DataDir: t.TempDir(), GossipAddr: "127.0.0.1:0", QUICAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		Join: join, Token: token, Labels: labels, Timing: membership.Fast,
		Node: Config{NumCPUs: 1, ObjectStoreMemory: 64 << 20, WorkerCommand: []string{testrig.Fabric(t), "worker"}, Stdout: io.Discard, Stderr: io.Discard}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	return a
}

// edgeCluster starts three one-CPU agents: a, and b and c labelled
// tier=edge, and waits until each one's scheduler knows all three.
func edgeCluster(t *testing.T) (a, b, c *Agent) {
	t.Helper()
	edge := map[string]string{"tier": "edge"}
	a = oneCPUAgent(t, nil, "")
	b = oneCPUAgent(t, edge, joinToken(t, a), a.GossipAddr())
	c = oneCPUAgent(t, edge, joinToken(t, a), a.GossipAddr())
	for _, ag := range []*Agent{a, b, c} {
		waitSchedulerNodes(t, ag, 3)
	}
	return a, b, c
}

// matchAll reports each regular expression that out does not match.
func matchAll(t *testing.T, out string, res ...string) {
	t.Helper()
	for _, re := range res {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("output lacks %s:\n%s", re, out)
		}
	}
}

// waitSchedulerNodes waits until a's scheduler knows n nodes.
func waitSchedulerNodes(t *testing.T, a *Agent, n int) {
	t.Helper()
	waitFor(t, 10*time.Second, fmt.Sprintf("%s's scheduler knows %d nodes", a.ID, n), func() bool {
		return a.Node().NodeCount() == n
	})
}

// TestTasksAcrossNodes submits examples/cluster to one of three agents of
// one CPU each: its tasks spread over the three nodes, and the two that
// ask for tier=edge run on the only node with that label.
func TestTasksAcrossNodes(t *testing.T) {
	a := oneCPUAgent(t, nil, "")
	b := oneCPUAgent(t, map[string]string{"tier": "edge"}, joinToken(t, a), a.GossipAddr())
	c := oneCPUAgent(t, nil, joinToken(t, a), a.GossipAddr())
	waitFor(t, 10*time.Second, "a knows b and c", func() bool {
		n := 0
		for _, m := range a.Members().Members() {
			if m.Status == membership.Alive {
				n++
			}
		}
		return n == 3
	})
	waitSchedulerNodes(t, a, 3)
	wasm, err := os.ReadFile(testrig.Guest(t, "examples/cluster"))
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	cl := a.Client(a.APIToken())
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := cl.Submit(ctx, wasm, nil, &out); err != nil {
		for _, ag := range []*Agent{a, b, c} {
			t.Log(debugState(ag.Node()))
		}
		t.Fatalf("%v\n%s", err, out.String())
	}
	want := fmt.Sprintf("ran on 3 nodes: %s\n", strings.Join(sortedIDs(a.ID, b.ID, c.ID), " "))
	bigLine := fmt.Sprintf("8 MiB object from %s: 1048576 floats summing to 1048576 on %s\n", a.ID, b.ID)
	if !regexp.MustCompile(`\(measure pid=\d+, node=` + regexp.QuoteMeta(b.ID) + `\) measuring 1048576 floats\n`).MatchString(out.String()) {
		t.Errorf("the remote task's output is missing or unmarked:\n%s", out.String())
	}
	if !strings.Contains(out.String(), want) || !strings.Contains(out.String(), bigLine) ||
		!strings.Contains(out.String(), fmt.Sprintf("edge tasks ran on %s and %s", b.ID, b.ID)) ||
		!strings.Contains(out.String(), "actor Tally: 1+2+...+10 = 55 on "+b.ID+"\n") {
		t.Fatalf("output:\n%s\nwant %q and both edge tasks on %s", out.String(), want, b.ID)
	}
}

func sortedIDs(ids ...string) []string {
	sort.Strings(ids)
	return ids
}

// TestRemoteTaskSurvivesNodeLoss stops the node running a task of another
// node's job: the owner retries it on the other node that can run it.
func TestRemoteTaskSurvivesNodeLoss(t *testing.T) {
	a, b, c := edgeCluster(t)
	wasm, err := os.ReadFile(testrig.Guest(t, "internal/testguests/chaos"))
	if err != nil {
		t.Fatal(err)
	}
	stopped := make(chan string, 1)
	go func() {
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			for _, ag := range []*Agent{b, c} {
				if ag.Node().Stats().Tasks > 0 {
					time.Sleep(300 * time.Millisecond) // mid-task
					_ = ag.Close()
					stopped <- ag.ID
					return
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
		stopped <- ""
	}()
	var out strings.Builder
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := a.Node().RunJobWith(ctx, wasm, []string{"remote"}, JobOptions{Stdout: &syncWriter{w: &out}}); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	gone := <-stopped
	if gone == "" {
		t.Fatal("the task never started on b or c")
	}
	other := b.ID
	if gone == b.ID {
		other = c.ID
	}
	if want := "remote: ran on " + other + " <nil>\n"; !strings.Contains(out.String(), want) {
		t.Fatalf("output %q, want %q (stopped %s)", out.String(), want, gone)
	}
}

// runChaos runs a mode of the chaos guest as a job of a and returns its output.
func runChaos(t *testing.T, a *Agent, args ...string) string {
	t.Helper()
	wasm, err := os.ReadFile(testrig.Guest(t, "internal/testguests/chaos"))
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := a.Node().RunJobWith(ctx, wasm, args, JobOptions{Stdout: &syncWriter{w: &out}}); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	return out.String()
}

// TestJobSharesAcrossNodes runs tasks and an actor of a job on other
// nodes: a task on an edge node gets the driver's objects through nested
// references and submits tasks of its own; objects put on an edge node
// come back by reference; an actor placed on an edge node runs 50 calls
// in order and answers a call from a task on another node.
func TestJobSharesAcrossNodes(t *testing.T) {
	before := runtime.NumGoroutine()
	a, b, c := edgeCluster(t)
	out := runChaos(t, a, "spread")
	matchAll(t, out,
		`spread: nested sum 12 on (`+b.ID+`|`+c.ID+`) <nil>\n`,
		`\(edge_sum pid=\d+, node=(`+b.ID+`|`+c.ID+`)\) summed 3 values\n`,
		`spread: objects made remotely 3 sum 393216\n`,
		`spread: actor on (`+b.ID+`|`+c.ID+`), 50 calls in order: true\n`,
		`spread: call from a remote task 51@(`+b.ID+`|`+c.ID+`) <nil>\n`,
		`spread: 1000 short tasks on the edge sum to 999000\n`,
		`spread: a result left on the edge node: 1048576 floats <nil>\n`,
	)
	// Every node's share of the job ends with it: no objects, tasks or
	// reserved CPUs are left.
	for _, ag := range []*Agent{a, b, c} {
		waitFor(t, 10*time.Second, ag.ID+" lets go of the job", func() bool {
			st := ag.Node().Stats()
			return st.Objects == 0 && st.Tasks == 0 && st.CPUAvail == st.CPUTotal
		})
	}
	for _, ag := range []*Agent{a, b, c} {
		_ = ag.Close()
	}
	checkGoroutines(t, before)
}

// TestRemoteActorSurvivesNodeLoss stops the node an actor lives on: the
// call it was running fails with actor_died, and the actor restarts on
// the other edge node, where the next call runs.
func TestRemoteActorSurvivesNodeLoss(t *testing.T) {
	a, b, c := edgeCluster(t)
	stopped := make(chan string, 1)
	go func() {
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			for _, ag := range []*Agent{b, c} {
				if strings.Contains(taskNames(ag.Node()), "Counter.bump") {
					time.Sleep(time.Second) // mid-call
					_ = ag.Close()
					stopped <- ag.ID
					return
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
		stopped <- ""
	}()
	out := runChaos(t, a, "actor_loss")
	gone := <-stopped
	if gone == "" {
		t.Fatalf("the actor never ran on b or c:\n%s", out)
	}
	other := b.ID
	if gone == b.ID {
		other = c.ID
	}
	for _, want := range []string{
		"actor_loss: first 1@" + gone + " <nil>\n",
		"actor_loss: in-flight call failed: true\n",
		"actor_loss: after restart 1@" + other + " <nil>\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// taskNames lists the names of the node's tasks.
func taskNames(n *Node) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return strings.Join(n.core.TaskNames(), " ")
}

// signalWriter collects output and closes seen when a line with want arrives.
type signalWriter struct {
	syncWriter
	want string
	seen chan struct{}
	once sync.Once
}

func (s *signalWriter) Write(p []byte) (int, error) {
	n, err := s.syncWriter.Write(p)
	if bytes.Contains(p, []byte(s.want)) {
		s.once.Do(func() { close(s.seen) })
	}
	return n, err
}

func (s *signalWriter) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.(*strings.Builder).String()
}

// runChaosWatching runs a mode of the chaos guest as a job of a; once a
// line containing want is printed, then runs beside the job, given a
// function that returns the output so far. It returns the job's output
// and error after both ended.
func runChaosWatching(t *testing.T, a *Agent, want string, then func(output func() string), args ...string) (string, error) {
	t.Helper()
	wasm, err := os.ReadFile(testrig.Guest(t, "internal/testguests/chaos"))
	if err != nil {
		t.Fatal(err)
	}
	w := &signalWriter{syncWriter: syncWriter{w: &strings.Builder{}}, want: want, seen: make(chan struct{})}
	ended, watched := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(watched)
		select {
		case <-w.seen:
			then(w.String)
		case <-ended:
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err = a.Node().RunJobWith(ctx, wasm, args, JobOptions{Stdout: w})
	close(ended)
	<-watched
	return w.String(), err
}

// TestOwnerDied stops the node that put an object the driver holds by
// reference: the driver's get fails with owner_died.
func TestOwnerDied(t *testing.T) {
	a := oneCPUAgent(t, nil, "")
	b := oneCPUAgent(t, map[string]string{"tier": "edge"}, joinToken(t, a), a.GossipAddr())
	waitSchedulerNodes(t, a, 2)
	out, err := runChaosWatching(t, a, "owner_died: made", func(func() string) { _ = b.Close() }, "owner_died")
	if err != nil || !strings.Contains(out, "owner_died: get after its node died: true\n") {
		t.Fatalf("%v\n%s", err, out)
	}
}

// TestLocality runs tasks whose argument is a 4 MiB object of the driver's
// node, on a cluster of two idle nodes: each runs on the driver's node,
// where the bytes are, rather than wherever the hybrid policy would pack.
func TestLocality(t *testing.T) {
	a := oneCPUAgent(t, nil, "")
	b := oneCPUAgent(t, nil, joinToken(t, a), a.GossipAddr())
	waitSchedulerNodes(t, a, 2)
	_ = b
	out := runChaos(t, a, "locality")
	if want := "locality: " + strings.TrimSpace(strings.Repeat(a.ID+" ", 5)) + "\n"; !strings.Contains(out, want) {
		t.Fatalf("output %q, want %q", out, want)
	}
}

// TestGroupsAcrossNodes places a STRICT_SPREAD placement group of three
// one-CPU bundles on a cluster of three one-CPU nodes: the task in each
// bundle runs on its own node.
func TestGroupsAcrossNodes(t *testing.T) {
	a := oneCPUAgent(t, nil, "")
	b := oneCPUAgent(t, nil, joinToken(t, a), a.GossipAddr())
	c := oneCPUAgent(t, nil, joinToken(t, a), a.GossipAddr())
	waitSchedulerNodes(t, a, 3)
	out := runChaos(t, a, "groups")
	if want := "groups: bundles ran on " + strings.Join(sortedIDs(a.ID, b.ID, c.ID), " ") + "\n"; !strings.Contains(out, want) {
		t.Fatalf("output %q, want %q", out, want)
	}
}

// TestCancelRemoteTask cancels a task running on another node: its get
// fails as cancelled at once, and the node stops it (its worker is killed
// and the task is gone) long before the task would have ended.
func TestCancelRemoteTask(t *testing.T) {
	a := oneCPUAgent(t, nil, "")
	b := oneCPUAgent(t, map[string]string{"tier": "edge"}, joinToken(t, a), a.GossipAddr())
	waitSchedulerNodes(t, a, 2)
	stopped := make(chan bool, 1)
	go func() {
		ran := false
		deadline := time.Now().Add(15 * time.Second)
		for time.Now().Before(deadline) {
			names := taskNames(b.Node())
			if strings.Contains(names, "edge_sleeper") {
				ran = true
			} else if ran {
				stopped <- true
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		stopped <- false
	}()
	outc := make(chan string, 1)
	go func() { outc <- runChaos(t, a, "cancel_remote") }()
	if !<-stopped {
		t.Fatal("the edge node did not stop the cancelled task")
	}
	select {
	case out := <-outc:
		t.Fatalf("the job ended before the edge node stopped the task (so the job's end stopped it):\n%s", out)
	default:
	}
	if out := <-outc; !strings.Contains(out, "cancel_remote: cancelled true\n") {
		t.Fatalf("output %q", out)
	}
}

// TestLineage stops the node that holds a task's large result before the
// driver fetches it: the driver's node runs the task again, on the other
// edge node, and the get returns the value.
func TestLineage(t *testing.T) {
	a, b, c := edgeCluster(t)
	gone := ""
	out, err := runChaosWatching(t, a, "made big", func(output func() string) {
		time.Sleep(time.Second) // its answer is back at the driver's node
		for _, ag := range []*Agent{b, c} {
			if strings.Contains(output(), "node="+ag.ID+") made big") {
				_ = ag.Close()
				gone = ag.ID
				return
			}
		}
	}, "lineage")
	if err != nil || gone == "" || !strings.Contains(out, "lineage: got 1048576 floats after its node died: <nil>\n") ||
		strings.Count(out, "made big") != 2 {
		t.Fatalf("stopped %q: %v\n%s", gone, err, out)
	}
}

// storedObjects counts the node's objects whose bytes are in its store.
func storedObjects(n *Node) int { return n.Stats().Stored }

// TestHoldsReleased passes a 4 MiB object of the driver to a task on
// another node, which fetches it; once the task ended and the driver
// dropped its reference, both nodes free it while the job goes on.
func TestHoldsReleased(t *testing.T) {
	a := oneCPUAgent(t, nil, "")
	b := oneCPUAgent(t, map[string]string{"tier": "edge"}, joinToken(t, a), a.GossipAddr())
	waitSchedulerNodes(t, a, 2)
	freed := false
	_, err := runChaosWatching(t, a, "dropped", func(func() string) {
		deadline := time.Now().Add(5 * time.Second) // the job goes on for 6 s
		for !freed && time.Now().Before(deadline) {
			freed = storedObjects(a.Node()) == 0 && storedObjects(b.Node()) == 0
			time.Sleep(20 * time.Millisecond)
		}
	}, "release")
	if err != nil {
		t.Fatal(err)
	}
	if !freed {
		t.Fatalf("the object is still held: %d stored on %s, %d on %s", storedObjects(a.Node()), a.ID, storedObjects(b.Node()), b.ID)
	}
}

// TestActorMadeInRemoteTask: a task on an edge node creates an actor and
// returns its handle; the driver and a task on another node call it, and
// each call reaches the one actor.
func TestActorMadeInRemoteTask(t *testing.T) {
	a, b, c := edgeCluster(t)
	out := runChaos(t, a, "nested_actor")
	matchAll(t, out,
		`nested_actor: from the driver 2@(`+b.ID+`|`+c.ID+`) <nil>\n`,
		`nested_actor: from another task 3@(`+b.ID+`|`+c.ID+`) <nil>\n`,
	)
}

// TestJobOverLossyLink runs a job whose tasks, objects and actor cross a
// link with 50 ms of delay and 1% loss each way: each agent advertises its
// QUIC address through a lossy UDP relay (testrig.LossyRelay; this
// machine's kernel has no netem).
func TestJobOverLossyLink(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping the lossy-link job")
	}
	lossy := func(labels map[string]string, token string, join ...string) *Agent {
		quic := testrig.FreeUDPAddr(t)
		relay := testrig.LossyRelay(t, quic, 50*time.Millisecond, 0.01)
		a, err := StartAgent(AgentConfig{
			DataDir:    t.TempDir(),
			GossipAddr: "127.0.0.1:0", QUICAddr: quic, HTTPAddr: "127.0.0.1:0", AdvertiseQUIC: relay,
			Join: join, Token: token, Labels: labels,
			Node: Config{NumCPUs: 1, ObjectStoreMemory: 64 << 20, WorkerCommand: []string{testrig.Fabric(t), "worker"},
				Stdout: io.Discard, Stderr: io.Discard},
			Timing: membership.Fast,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = a.Close() })
		return a
	}
	a := lossy(nil, "")
	b := lossy(map[string]string{"tier": "edge"}, joinToken(t, a), a.GossipAddr())
	waitSchedulerNodes(t, a, 2)
	waitSchedulerNodes(t, b, 2)
	start := time.Now()
	out := runChaos(t, a, "lossy")
	if want := "lossy: sum 12 on " + b.ID + "; 262144 floats back; counter 5@" + b.ID + "\n"; !strings.Contains(out, want) {
		t.Fatalf("output %q, want %q", out, want)
	}
	t.Logf("the job took %s over the lossy link", time.Since(start).Round(time.Millisecond))
}

// TestStuckOutputReader submits a job whose client opens the output stream
// and never reads it, while the job prints far more than any socket
// buffer holds: a second job on the same node finishes within 1.5x of its
// time alone. The stuck job runs on when its client goes away (a job does
// not depend on its connection), its kept output is cut at the job log
// limit with a notice, and `job stop` ends it.
func TestStuckOutputReader(t *testing.T) {
	a, err := StartAgent(AgentConfig{DataDir: t.TempDir(), GossipAddr: "127.0.0.1:0", QUICAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		Labels: map[string]string{"tier": "edge"}, Timing: membership.Fast,
		Node: Config{NumCPUs: 2, ObjectStoreMemory: 64 << 20, WorkerCommand: []string{testrig.Fabric(t), "worker"}, Stdout: io.Discard, Stderr: io.Discard}})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	hostile, err := os.ReadFile(testrig.Guest(t, "internal/testguests/hostile"))
	if err != nil {
		t.Fatal(err)
	}
	chaos, err := os.ReadFile(testrig.Guest(t, "internal/testguests/chaos"))
	if err != nil {
		t.Fatal(err)
	}
	cl := a.Client(a.APIToken())
	storm := func() time.Duration {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		start := time.Now()
		var out strings.Builder
		if err := cl.Submit(ctx, chaos, []string{"storm", "400"}, &out); err != nil {
			t.Fatalf("storm: %v\n%s", err, out.String())
		}
		if !strings.Contains(out.String(), "storm: 400 of 400 results right") {
			t.Fatalf("storm output:\n%s", out.String())
		}
		return time.Since(start)
	}
	alone := min(storm(), storm())

	// The stuck client: it reads the response's header and nothing more.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	resp, err := cl.do(ctx, "POST", "/v1/jobs", url.Values{"arg": {"loud"}}, bytes.NewReader(hostile))
	if err != nil {
		t.Fatal(err)
	}
	// The floods (4 x 8 MiB) are printed once no task runs but the driver.
	waitFor(t, time.Minute, "the loud job's floods end", func() bool {
		st := a.Node().Stats()
		return st.Tasks == 1 && st.Jobs == 1 // the driver
	})
	time.Sleep(500 * time.Millisecond)
	// The best of two, as alone: other tests share the machine, and one
	// run can meet a burst of their work.
	beside := min(storm(), storm())
	t.Logf("storm alone %s, beside a stuck reader %s (%.2fx)", alone.Round(time.Millisecond), beside.Round(time.Millisecond), float64(beside)/float64(alone))
	if beside > alone*3/2 {
		t.Errorf("a job beside a stuck output reader took %s, more than 1.5x its %s alone", beside, alone)
	}
	id := resp.Header.Get("Fabric-Job-Id")
	cancel()
	_ = resp.Body.Close()
	// The floods' output may still be on its way to the log: the notice
	// is written when the job ends only if the log has dropped bytes.
	waitFor(t, time.Minute, "the loud job's log passes its limit", func() bool {
		a.jobsMu.Lock()
		defer a.jobsMu.Unlock()
		r := a.running[id]
		if r == nil {
			return false
		}
		r.log.mu.Lock()
		defer r.log.mu.Unlock()
		return r.log.dropped > 0
	})
	if j, err := cl.Job(context.Background(), id); err != nil || j.State != "running" {
		t.Fatalf("the job whose client went away: %+v, %v", j, err)
	}
	if j, err := cl.StopJob(context.Background(), id); err != nil || j.State != "stopped" {
		t.Fatalf("stop: %+v, %v", j, err)
	}
	waitFor(t, 30*time.Second, "the stopped job ends", func() bool {
		return a.Node().Stats().Jobs == 0
	})
	// The notice of dropped output is written as the job's log closes,
	// which may come just after the node let the job go.
	var out, errOut strings.Builder
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		out.Reset()
		errOut.Reset()
		ended, err := cl.JobLogs(context.Background(), id, false, &out, &errOut)
		if !ended || err == nil || !strings.Contains(err.Error(), "stopped") {
			t.Fatalf("logs of the stopped job: ended %v, %v", ended, err)
		}
		if strings.Contains(errOut.String(), "past the job log limit") || time.Now().After(deadline) {
			break
		}
	}
	if n := out.Len() + errOut.Len(); n > DefaultJobLogLimit || !strings.Contains(errOut.String(), "past the job log limit") {
		t.Fatalf("kept output of %d bytes, stderr ending %q", n, errOut.String()[max(0, errOut.Len()-300):])
	}
}

// TestManyTasksOnOnePeer runs 300 tasks on one edge node at once, more
// than a QUIC connection allows streams (256): each reads an object of the
// driver's node, prints a line and returns. Every line and every result
// arrives, the edge node's share of the job ends with the job, and both
// nodes let go of every object.
func TestManyTasksOnOnePeer(t *testing.T) {
	a := oneCPUAgent(t, nil, "")
	b, err := StartAgent(AgentConfig{DataDir: t.TempDir(), GossipAddr: "127.0.0.1:0", QUICAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		Join: []string{a.GossipAddr()}, Token: joinToken(t, a), Labels: map[string]string{"tier": "edge"}, Timing: membership.Fast,
		// 300 CPUs of demand fit at once; 8 worker processes run them.
		Node: Config{NumCPUs: 300, MaxWorkers: 8, ObjectStoreMemory: 64 << 20, WorkerCommand: []string{testrig.Fabric(t), "worker"},
			Stdout: io.Discard, Stderr: io.Discard}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	waitSchedulerNodes(t, a, 2)
	most := 0
	stop := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			most = max(most, b.Node().Stats().Tasks)
		}
	}()
	out := runChaos(t, a, "wide", "300")
	close(stop)
	<-watched
	if !strings.Contains(out, "wide: 300 tasks, sum 44850\n") {
		t.Fatalf("output:\n%s", out)
	}
	if n := strings.Count(out, "read 100000 floats\n"); n != 300 || !strings.Contains(out, ", node="+b.ID+") task 299 read") {
		t.Errorf("%d task lines of 300, marked with the edge node:\n%.2000s", n, out)
	}
	if most <= 256 {
		t.Errorf("at most %d tasks were on the edge node at once; the test needs more than 256", most)
	}
	t.Logf("%d tasks on the edge node at once", most)
	for _, ag := range []*Agent{a, b} {
		waitFor(t, 10*time.Second, ag.ID+" lets go of the job", func() bool {
			st := ag.Node().Stats()
			return st.Jobs == 0 && st.Objects == 0 && st.Tasks == 0 && st.CPUAvail == st.CPUTotal
		})
	}
}
