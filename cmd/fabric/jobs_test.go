//go:build linux

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/wasmfabric/fabric/fabric"
	"github.com/wasmfabric/fabric/internal/testrig"
)

// ticksOutput is what `hostile ticks N MS` prints.
func ticksOutput(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "tick %d\n", i)
	}
	return b.String() + "ticks: done\nstill serving: 42\n"
}

// TestJobLifecycle, on two real agents (a server and a client): a job
// submitted with --no-wait by a client that exits at once runs to its
// end, and its kept output is complete, from either agent; list, status,
// logs -f, stop and delete do what they say; after both agents are
// killed with SIGKILL and restarted on their data directories, the jobs
// are still listed and their logs still served.
func TestJobLifecycle(t *testing.T) {
	isolateLocalAgents(t)
	hostile := testrig.Guest(t, "internal/testguests/hostile")
	dirA, dirB := t.TempDir(), t.TempDir()
	a := startAgentProc(t, "--data-dir", dirA)
	b := startAgentProc(t, "--data-dir", dirB, "--join", a.gossip, "--token", a.joinToken(t))

	// Submitted through the client agent, which runs its driver; the
	// submitting process is gone as soon as it has the ID.
	res := runOn(t, b, "job", "submit", "--no-wait", "--id", "ticks-1", hostile, "--", "ticks", "20", "50")
	if res.Code != 0 || strings.TrimSpace(res.Stdout) != "ticks-1" {
		t.Fatalf("job submit --no-wait: exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
	}
	res = runOn(t, a, "job", "logs", "-f", "ticks-1")
	if res.Code != 0 || res.Stdout != ticksOutput(20) {
		t.Fatalf("job logs -f through the server: exit %d\nstdout %q\nstderr %s", res.Code, res.Stdout, res.Stderr)
	}
	// The agent's log says when the job started and ended, one
	// structured line each.
	for _, want := range []string{`level=INFO msg="job started" job=ticks-1 attempt=1`, `level=INFO msg="job succeeded" job=ticks-1`} {
		if !strings.Contains(b.stderr.String(), want) {
			t.Errorf("the agent's log lacks %q:\n%s", want, b.stderr.String())
		}
	}
	res = runOn(t, b, "job", "submit", "--no-wait", "--id", "ticks-1", hostile, "--", "ticks")
	if res.Code == 0 || !strings.Contains(res.Stderr, "409") || !strings.Contains(res.Stderr, "exists") {
		t.Fatalf("a second job with the same ID: exit %d\n%s", res.Code, res.Stderr)
	}

	// A long job, stopped.
	res = runOn(t, a, "job", "submit", "--no-wait", "-o", "json", hostile, "--", "ticks", "100000", "100")
	var long fabric.JobInfo
	if res.Code != 0 || json.Unmarshal([]byte(res.Stdout), &long) != nil || long.ID == "" || long.State != "pending" {
		t.Fatalf("job submit --no-wait -o json: exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
	}
	waitFor(t, time.Minute, "the long job runs and prints", func() bool {
		r := runOn(t, b, "job", "logs", long.ID)
		return r.Code == 0 && strings.Contains(r.Stdout, "tick 2\n")
	})
	res = runOn(t, b, "job", "delete", long.ID)
	if res.Code == 0 || !strings.Contains(res.Stderr, "has not ended") {
		t.Fatalf("deleting a running job: exit %d\n%s", res.Code, res.Stderr)
	}
	res = runOn(t, b, "job", "stop", long.ID)
	if res.Code != 0 || !strings.Contains(res.Stdout, "stopped") {
		t.Fatalf("job stop: exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
	}
	res = runOn(t, a, "job", "logs", "-f", long.ID)
	if res.Code == 0 || !strings.Contains(res.Stderr, "stopped") {
		t.Fatalf("logs -f of a stopped job: exit %d\n%s", res.Code, res.Stderr)
	}
	waitFor(t, 30*time.Second, "the stopped job's driver ends", func() bool {
		r := runOn(t, a, "status", "-o", "json")
		var st fabric.StatusView
		return json.Unmarshal([]byte(r.Stdout), &st) == nil && st.Workers.Busy == 0
	})

	// A failing job, attached: its exit code and error, its ID listed.
	res = runOn(t, a, "submit", hostile, "--", "panic")
	res = runOn(t, a, "job", "list", "-o", "json")
	var jobs []fabric.JobInfo
	if res.Code != 0 || json.Unmarshal([]byte(res.Stdout), &jobs) != nil || len(jobs) != 3 {
		t.Fatalf("job list -o json: exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
	}
	want := map[string]string{"ticks-1": "succeeded", long.ID: "stopped"}
	for _, j := range jobs {
		if s, ok := want[j.ID]; ok && s != j.State {
			t.Errorf("job %s is %s, want %s", j.ID, j.State, s)
		}
	}
	if jobs[0].ID != "ticks-1" || jobs[0].Node != b.id(t) {
		t.Errorf("the first job listed: %+v (want ticks-1 on %s)", jobs[0], b.id(t))
	}
	res = runOn(t, b, "job", "list")
	if res.Code != 0 || !strings.HasPrefix(res.Stdout, "ID ") || !strings.Contains(res.Stdout, "ticks-1") {
		t.Fatalf("job list: exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
	}

	// Both agents killed and restarted on their data directories.
	for _, p := range []*agentProc{a, b} {
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		err := <-p.exited
		p.exited <- err
	}
	a = startAgentProc(t, "--data-dir", dirA)
	b = startAgentProc(t, "--data-dir", dirB, "--join", a.gossip, "--token", a.joinToken(t))
	res = runOn(t, b, "job", "logs", "ticks-1")
	if res.Code != 0 || res.Stdout != ticksOutput(20) {
		t.Fatalf("logs after the restarts: exit %d\nstdout %q\nstderr %s", res.Code, res.Stdout, res.Stderr)
	}
	res = runOn(t, a, "job", "status", "ticks-1")
	if res.Code != 0 || !strings.Contains(res.Stdout, "succeeded") {
		t.Fatalf("status after the restarts: exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
	}
	res = runOn(t, a, "job", "delete", "ticks-1")
	if res.Code != 0 {
		t.Fatalf("job delete: exit %d\n%s", res.Code, res.Stderr)
	}
	res = runOn(t, a, "job", "status", "ticks-1")
	if res.Code == 0 || !strings.Contains(res.Stderr, "404") {
		t.Fatalf("status of a deleted job: exit %d\n%s", res.Code, res.Stderr)
	}
	if _, err := os.Stat(dirB + "/jobs/ticks-1.log"); !os.IsNotExist(err) {
		t.Errorf("the deleted job's log is still on its node: %v", err)
	}
}

// TestControlPlaneLeaderKilled: three server agents as real processes;
// two clients submit 200 jobs between them through the two followers
// while the leader is killed with SIGKILL. Every job whose submission was
// acknowledged is listed afterwards and ends with its right result (or a
// failure that names its cause); the killed server, restarted, catches
// up.
func TestControlPlaneLeaderKilled(t *testing.T) {
	isolateLocalAgents(t)
	// A short job (a driver that prints three lines), so that 200 of
	// them fit a 2-core machine.
	wasm, err := os.ReadFile(testrig.Guest(t, "internal/testguests/hostile"))
	if err != nil {
		t.Fatal(err)
	}
	dirs := []string{t.TempDir(), t.TempDir(), t.TempDir()}
	s := []*agentProc{startAgentProc(t, "--data-dir", dirs[0], "--num-cpus", "2")}
	for _, d := range dirs[1:] {
		s = append(s, startAgentProc(t, "--data-dir", d, "--num-cpus", "2", "--join", s[0].gossip, "--token", s[0].joinToken(t, "--server")))
	}
	client := func(p *agentProc) *fabric.Client { return p.client(t, s[0].apiTok) }
	status := func(p *agentProc) fabric.StatusView {
		st, _ := client(p).Status(context.Background())
		return st
	}
	waitFor(t, time.Minute, "three voters", func() bool { return len(status(s[0]).Control.Voters) == 3 })
	leader := -1
	for i, p := range s {
		if status(p).Control.Role == "leader" {
			leader = i
		}
	}
	if leader < 0 {
		t.Fatal("no leader")
	}
	var followers []*agentProc
	for i, p := range s {
		if i != leader {
			followers = append(followers, p)
		}
	}

	const total = 200
	var (
		mu    sync.Mutex
		acked []string
		fails []string
		wg    sync.WaitGroup
		next  = make(chan int, total)
	)
	for i := range total {
		next <- i
	}
	close(next)
	killAt := make(chan struct{})
	var killOnce sync.Once
	for c := range 2 {
		cl := client(followers[c])
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if i == total/3 {
					killOnce.Do(func() { close(killAt) })
				}
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				j, err := cl.SubmitDetached(ctx, wasm, []string{"ticks", "3", "10"}, fabric.SubmitOptions{ID: fmt.Sprintf("q-%03d", i)})
				cancel()
				mu.Lock()
				if err != nil {
					fails = append(fails, fmt.Sprintf("q-%03d: %v", i, err))
				} else {
					acked = append(acked, j.ID)
				}
				mu.Unlock()
			}
		}()
	}
	<-killAt
	_ = s[leader].cmd.Process.Signal(syscall.SIGKILL)
	killed := time.Now()
	err = <-s[leader].exited
	s[leader].exited <- err
	wg.Wait()
	t.Logf("%d submissions acknowledged, %d refused, all in %s after the kill", len(acked), len(fails), time.Since(killed).Round(time.Millisecond))
	for _, f := range fails {
		t.Log("refused: ", f)
	}
	if len(acked) < total*9/10 {
		t.Fatalf("only %d of %d submissions acknowledged", len(acked), total)
	}

	// Every acknowledged job is listed and ends right.
	cl := client(followers[0])
	var jobs []fabric.JobInfo
	deadline := time.Now().Add(2 * time.Minute)
	for {
		jobs, err = cl.Jobs(context.Background())
		var open []fabric.JobInfo
		for _, j := range jobs {
			if j.State == "pending" || j.State == "running" {
				open = append(open, j)
			}
		}
		if err == nil && len(open) == 0 {
			break
		}
		if time.Now().After(deadline) {
			for _, j := range open[:min(len(open), 3)] {
				var out strings.Builder
				_, lerr := cl.JobLogs(context.Background(), j.ID, false, &out, &out)
				t.Logf("job %+v\noutput %q %v", j, out.String(), lerr)
			}
			for _, p := range followers {
				_ = p.cmd.Process.Signal(syscall.SIGUSR1)
			}
			time.Sleep(time.Second)
			for _, p := range followers {
				t.Logf("agent stderr:\n%s", p.stderr.String())
			}
			t.Fatalf("after 3m, %d jobs have not ended (%v)", len(open), err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	byID := map[string]fabric.JobInfo{}
	for _, j := range jobs {
		byID[j.ID] = j
	}
	succeeded := 0
	for _, id := range acked {
		j, ok := byID[id]
		switch {
		case !ok:
			t.Errorf("acknowledged job %s is not listed", id)
		case j.State == "succeeded":
			succeeded++
		case j.Error == "":
			t.Errorf("job %s %s without a cause", id, j.State)
		default:
			t.Logf("job %s %s: %s", id, j.State, firstLine(j.Error))
		}
	}
	// Spot-check results: the kept output of some succeeded jobs.
	checked := 0
	for _, id := range acked {
		if byID[id].State != "succeeded" || checked == 10 {
			continue
		}
		checked++
		// Stdout only: stderr may tell of a task retried off the killed node.
		var out, notices strings.Builder
		if ended, err := cl.JobLogs(context.Background(), id, false, &out, &notices); !ended || err != nil || out.String() != ticksOutput(3) {
			t.Errorf("job %s: ended %v, %v, output %q", id, ended, err, out.String())
		}
	}
	t.Logf("%d of %d acknowledged jobs succeeded", succeeded, len(acked))

	// The killed server comes back and catches up.
	s[leader] = startAgentProc(t, "--data-dir", dirs[leader], "--num-cpus", "2", "--join", followers[0].gossip)
	waitFor(t, time.Minute, "the restarted server catches up", func() bool {
		want := status(followers[0]).Control
		got := status(s[leader]).Control
		return got.Role == "follower" && want.Committed > 0 && got.Applied >= want.Committed
	})
}

// waitFor polls cond until it holds, failing the test after d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", d, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// id asks the agent its node ID.
func (p *agentProc) id(t *testing.T) string {
	t.Helper()
	st, err := p.client(t, p.apiTok).Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return st.Node
}

// runOn runs a fabric command against the agent p, with its address and
// API token.
func runOn(t *testing.T, p *agentProc, args ...string) testrig.Result {
	t.Helper()
	return testrig.Run(t, 2*time.Minute, withAuth(args, p.api, p.apiTok)...)
}

// withAuth adds --address and --token to a command line, before its "--".
func withAuth(args []string, addr, token string) []string {
	auth := []string{"--address", addr, "--token", token}
	for i, a := range args {
		if a == "--" {
			return append(append(append([]string{}, args[:i]...), auth...), args[i:]...)
		}
	}
	return append(args, auth...)
}

// TestUploadAndCall: a module uploaded once is listed by digest and
// name; its task functions run by `fabric call` with JSON arguments and
// answer JSON; a function that fails answers its error; bad input (not a
// digest, not JSON, an unknown function) gets a clear 4xx; a module a
// running job uses cannot be deleted, and one no job uses can.
func TestUploadAndCall(t *testing.T) {
	isolateLocalAgents(t)
	quick, hostile := testrig.Guest(t, "examples/quickstart"), testrig.Guest(t, "internal/testguests/hostile")
	a := startAgentProc(t)
	res := runOn(t, a, "upload", quick)
	digest := strings.TrimSpace(res.Stdout)
	if res.Code != 0 || len(digest) != 64 {
		t.Fatalf("upload: exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
	}
	res = runOn(t, a, "call", digest, "square", "--args", "[7]")
	if res.Code != 0 || strings.TrimSpace(res.Stdout) != "49" {
		t.Fatalf("call square [7]: exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
	}
	res = runOn(t, a, "upload", "--name", "hostile", hostile)
	hdigest := strings.TrimSpace(res.Stdout)
	if res.Code != 0 {
		t.Fatalf("upload: exit %d\n%s", res.Code, res.Stderr)
	}
	res = runOn(t, a, "call", hdigest, "answer")
	if res.Code != 0 || strings.TrimSpace(res.Stdout) != "42" {
		t.Fatalf("call answer: exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"call", hdigest, "panicky"}, "422"},
		{[]string{"call", hdigest, "no_such_function"}, "no_such_function"},
		{[]string{"call", digest, "square", "--args", "{not json"}, "JSON"},
		{[]string{"call", "not-a-digest", "square"}, "400"},
		{[]string{"call", strings.Repeat("0", 64), "square"}, "404"},
	} {
		res = runOn(t, a, c.args...)
		if res.Code == 0 || !strings.Contains(res.Stderr, c.want) {
			t.Errorf("%v: exit %d, stderr lacks %q:\n%s%s", c.args, res.Code, c.want, res.Stdout, res.Stderr)
		}
	}
	res = runOn(t, a, "module", "list", "-o", "json")
	var ms []fabric.ModuleInfo
	if res.Code != 0 || json.Unmarshal([]byte(res.Stdout), &ms) != nil || len(ms) != 2 {
		t.Fatalf("module list -o json: exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
	}
	for _, m := range ms {
		if m.Digest == hdigest && (m.Name != "hostile" || len(m.Nodes) != 1) {
			t.Errorf("module record %+v", m)
		}
	}
	// A running job's module stays.
	res = runOn(t, a, "job", "submit", "--no-wait", "--id", "long", hostile, "--", "ticks", "100000", "100")
	if res.Code != 0 {
		t.Fatalf("submit: exit %d\n%s", res.Code, res.Stderr)
	}
	res = runOn(t, a, "module", "delete", hdigest)
	if res.Code == 0 || !strings.Contains(res.Stderr, "in use") {
		t.Fatalf("deleting a module in use: exit %d\n%s", res.Code, res.Stderr)
	}
	if res = runOn(t, a, "job", "stop", "long"); res.Code != 0 {
		t.Fatalf("stop: exit %d\n%s", res.Code, res.Stderr)
	}
	res = runOn(t, a, "module", "delete", digest)
	if res.Code != 0 {
		t.Fatalf("module delete: exit %d\n%s", res.Code, res.Stderr)
	}
	res = runOn(t, a, "module", "list")
	if res.Code != 0 || strings.Contains(res.Stdout, digest[:12]) || !strings.Contains(res.Stdout, "hostile") {
		t.Fatalf("module list after the delete: exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
	}
}

// TestAgentDrains: SIGTERM drains an agent: it refuses new jobs at once
// (503, saying it is draining), the job whose driver runs on it ends
// normally, and only then does it leave and exit 0.
func TestAgentDrains(t *testing.T) {
	isolateLocalAgents(t)
	hostile := testrig.Guest(t, "internal/testguests/hostile")
	a := startAgentProc(t)
	b := startAgentProc(t, "--join", a.gossip, "--token", a.joinToken(t))
	res := runOn(t, b, "job", "submit", "--no-wait", "--id", "draining", hostile, "--", "ticks", "30", "100")
	if res.Code != 0 {
		t.Fatalf("submit: exit %d\n%s", res.Code, res.Stderr)
	}
	waitFor(t, time.Minute, "the job runs", func() bool {
		r := runOn(t, a, "job", "logs", "draining")
		return strings.Contains(r.Stdout, "tick 1\n")
	})
	if err := b.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the agent says it drains", func() bool { return strings.Contains(b.stderr.String(), "draining") })
	res = runOn(t, b, "job", "submit", "--no-wait", hostile, "--", "ticks")
	if res.Code == 0 || !strings.Contains(res.Stderr, "503") || !strings.Contains(res.Stderr, "draining") {
		t.Fatalf("a submission to a draining agent: exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
	}
	select {
	case err := <-b.exited:
		b.exited <- err
		t.Fatalf("the agent left before its job ended: %v", err)
	default:
	}
	var exit error
	select {
	case exit = <-b.exited:
		b.exited <- exit
	case <-time.After(time.Minute):
		t.Fatal("the drained agent did not exit")
	}
	if exit != nil {
		t.Fatalf("the drained agent exited with %v\n%s", exit, b.stderr.String())
	}
	res = runOn(t, a, "job", "status", "draining")
	if res.Code != 0 || !strings.Contains(res.Stdout, "succeeded") {
		t.Fatalf("the job on the drained agent: exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
	}
}

// TestDriverNodeLost: when the node running a job's driver is killed,
// a job submitted with --max-restarts starts again on another node (its
// module copied there at submission) and succeeds, its status and kept
// output saying why; a job without restarts fails with a cause that
// names the node.
func TestDriverNodeLost(t *testing.T) {
	isolateLocalAgents(t)
	hostile := testrig.Guest(t, "internal/testguests/hostile")
	a := startAgentProc(t)
	b := startAgentProc(t, "--join", a.gossip, "--token", a.joinToken(t))
	bID := b.id(t)
	for _, args := range [][]string{
		{"job", "submit", "--no-wait", "--id", "restarts", "--max-restarts", "1", hostile, "--", "ticks", "40", "100"},
		{"job", "submit", "--no-wait", "--id", "no-restarts", hostile, "--", "ticks", "100000", "100"},
	} {
		if res := runOn(t, b, args...); res.Code != 0 {
			t.Fatalf("%v: exit %d\n%s", args, res.Code, res.Stderr)
		}
	}
	waitFor(t, time.Minute, "both jobs run", func() bool {
		r1, r2 := runOn(t, a, "job", "logs", "restarts"), runOn(t, a, "job", "logs", "no-restarts")
		return strings.Contains(r1.Stdout, "tick 1\n") && strings.Contains(r2.Stdout, "tick 1\n")
	})
	_ = b.cmd.Process.Signal(syscall.SIGKILL)
	var j fabric.JobInfo
	waitFor(t, 2*time.Minute, "the job with restarts succeeds on the other node", func() bool {
		r := runOn(t, a, "job", "status", "restarts", "-o", "json")
		return json.Unmarshal([]byte(r.Stdout), &j) == nil && j.State == "succeeded"
	})
	if j.Attempt != 2 || j.Node != a.id(t) || len(j.Restarts) != 1 || !strings.Contains(j.Restarts[0], "node "+bID+", which ran the job's driver, failed") {
		t.Fatalf("the restarted job: %+v", j)
	}
	res := runOn(t, a, "job", "logs", "restarts")
	if res.Code != 0 || !strings.Contains(res.Stderr, "attempt 2 of job restarts on node") || !strings.HasSuffix(res.Stdout, ticksOutput(40)) {
		t.Fatalf("the restarted job's logs: exit %d\nstdout %q\nstderr %s", res.Code, res.Stdout, res.Stderr)
	}
	res = runOn(t, a, "job", "status", "no-restarts", "-o", "json")
	if json.Unmarshal([]byte(res.Stdout), &j) != nil || j.State != "failed" || !strings.Contains(j.Error, "node "+bID+", which ran the job's driver, failed") {
		t.Fatalf("the job without restarts: %+v\n%s", j, res.Stderr)
	}
}

// TestReadmeWalkthrough runs the README's walkthrough (between its
// walkthrough markers) as it is written, with bash, from the repository's
// root, and checks what its commands print.
func TestReadmeWalkthrough(t *testing.T) {
	isolateLocalAgents(t)
	root := testrig.Root(t)
	readme, err := os.ReadFile(root + "/README.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(readme)
	start := strings.Index(text, "<!-- walkthrough -->")
	end := strings.Index(text, "<!-- /walkthrough -->")
	if start < 0 || end < start {
		t.Fatal("the README has no walkthrough between <!-- walkthrough --> and <!-- /walkthrough -->")
	}
	block := text[start:end]
	block = block[strings.Index(block, "```sh\n")+6 : strings.LastIndex(block, "```")]
	testrig.Guest(t, "examples/quickstart") // built where the walkthrough expects it
	dir := t.TempDir()
	script := "set -euo pipefail\ncd " + root + "\n" + strings.ReplaceAll(block, "dev.log", dir+"/dev.log") + "wait\n"
	cmd := exec.Command("bash", "-c", script)
	out, err := cmd.CombinedOutput()
	if err != nil {
		dev, _ := os.ReadFile(dir + "/dev.log")
		t.Fatalf("the walkthrough failed: %v\n%s\ndev node:\n%s", err, out, dev)
	}
	for _, want := range []string{"Control plane:", "49\n", "first\n", "[0 1 4 9 16]\n", "job second stopped", "first   "} {
		if !strings.Contains(string(out), want) && !(want == "job second stopped" && strings.Contains(string(out), "job second succeeded")) {
			t.Errorf("the walkthrough's output lacks %q:\n%s", want, out)
		}
	}
}

// TestNamesAcrossNodes: a detached actor made by a job on one agent is
// found by name by a job on another agent, through the control plane, and
// called there; its name is the cluster's (taken on the other agent too,
// and get_if_exists gives the same actor); killed, its name is free on
// every agent. A detached placement group's name is the cluster's too.
func TestNamesAcrossNodes(t *testing.T) {
	isolateLocalAgents(t)
	wasm := testrig.Guest(t, "internal/testguests/features")
	a := startAgentProc(t)
	b := startAgentProc(t, "--join", a.gossip, "--token", a.joinToken(t))
	b.id(t)
	for _, step := range []struct {
		on   *agentProc
		args []string
		want []string
	}{
		{a, []string{"names_create"}, []string{"names_created", "names_group_created"}},
		{b, []string{"names_use"}, []string{"names_found_on_another_node", "names_taken_in_the_cluster", "names_get_if_exists_across_nodes", "names_group_name_taken_in_the_cluster", "names_kill_elsewhere_refused", "names_unknown_in_the_cluster"}},
		{a, []string{"names_kill"}, []string{"names_killed", "names_group_removed"}},
		{b, []string{"names_gone"}, []string{"names_freed_in_the_cluster", "names_taken_again", "names_group_name_taken_again"}},
	} {
		res := runOn(t, step.on, append([]string{"job", "submit", wasm, "--"}, step.args...)...)
		if res.Code != 0 || strings.Contains(res.Stdout, "FAIL:") {
			t.Fatalf("%v: exit %d\nstdout:\n%s\nstderr:\n%s", step.args, res.Code, res.Stdout, res.Stderr)
		}
		for _, w := range step.want {
			if !strings.Contains(res.Stdout, "ok: "+w+"\n") {
				t.Errorf("%v: no %q in:\n%s", step.args, "ok: "+w, res.Stdout)
			}
		}
	}
}
