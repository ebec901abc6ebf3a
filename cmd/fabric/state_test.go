//go:build linux

package main

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/wasmfabric/fabric/fabric"
	"github.com/wasmfabric/fabric/internal/testrig"
)

// TestListTasks: `fabric list tasks` and `fabric summary tasks` show a
// job's tasks, a failed one's error, in a table and as JSON; a bad
// filter says what filters there are.
func TestListTasks(t *testing.T) {
	isolateLocalAgents(t)
	hostile := testrig.Guest(t, "internal/testguests/hostile")
	a := startAgentProc(t, "--data-dir", t.TempDir(), "--task-history", "1000")
	for _, job := range [][]string{{"--id", "hold", hostile, "--", "overlap", "3", "10"}, {"--id", "boom", hostile, "--", "panic"}} {
		if res := runOn(t, a, append([]string{"job", "submit"}, job...)...); res.Code != 0 && job[1] != "boom" {
			t.Fatalf("job %s: exit %d\n%s", job[1], res.Code, res.Stderr)
		}
	}
	res := runOn(t, a, "list", "tasks", "--filter", "job=hold")
	lines := strings.Split(strings.TrimSpace(res.Stdout), "\n")
	if res.Code != 0 || len(lines) != 5 || !strings.HasPrefix(lines[0], "TASK") || strings.Count(res.Stdout, " hold  task ") != 3 || strings.Count(res.Stdout, "finished") != 4 {
		t.Fatalf("list tasks --filter job=hold: exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
	}
	res = runOn(t, a, "list", "tasks", "--filter", "state=failed", "-o", "json")
	var failed fabric.TaskList
	if res.Code != 0 || json.Unmarshal([]byte(res.Stdout), &failed) != nil || len(failed.Tasks) != 1 ||
		failed.Tasks[0].Job != "boom" || !strings.Contains(failed.Tasks[0].Error, "boom: the guest panicked") {
		t.Fatalf("list tasks --filter state=failed -o json: exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
	}
	res = runOn(t, a, "list", "tasks", "--limit", "1")
	if res.Code != 0 || strings.Count(strings.TrimSpace(res.Stdout), "\n") != 1 || !strings.Contains(res.Stderr, "the newest 1 of") {
		t.Fatalf("list tasks --limit 1: exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
	}
	res = runOn(t, a, "summary", "tasks")
	if res.Code != 0 || !strings.Contains(res.Stdout, "NAME") || !regexpLine(res.Stdout, `hold\s+task\s+3\s+0\s+0\s+3\s+0\s+0`) || !regexpLine(res.Stdout, `panicky\s+task\s+1\s+0\s+0\s+0\s+1\s+0`) {
		t.Fatalf("summary tasks: exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
	}
	trace := filepath.Join(t.TempDir(), "trace.json")
	res = runOn(t, a, "timeline", "hold", "-o", trace)
	b, _ := os.ReadFile(trace)
	var events []map[string]any
	if res.Code != 0 || json.Unmarshal(b, &events) != nil || len(events) != 4 || !strings.Contains(res.Stderr, "wrote 4 spans") {
		t.Fatalf("timeline hold: exit %d, %d events\n%s%s", res.Code, len(events), b, res.Stderr)
	}
	res = runOn(t, a, "list", "tasks", "--filter", "color=red")
	if res.Code == 0 || !strings.Contains(res.Stderr, "filter by job, state") {
		t.Fatalf("a bad filter: exit %d\n%s", res.Code, res.Stderr)
	}
	res = runOn(t, a, "job", "submit", "--no-wait", "--id", "keepers", hostile, "--", "actors", "2", "60000")
	if res.Code != 0 {
		t.Fatalf("job keepers: exit %d\n%s", res.Code, res.Stderr)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		res = runOn(t, a, "list", "actors", "--filter", "state=alive", "-o", "wide")
		if res.Code == 0 && strings.Count(res.Stdout, " Keeper ") == 2 && strings.Contains(res.Stdout, "keepers") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("list actors: exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
		}
		time.Sleep(100 * time.Millisecond)
	}
	res = runOn(t, a, "summary", "actors")
	if res.Code != 0 || !regexpLine(res.Stdout, `Keeper\s+2\s+0\s+2\s+0\s+0\s+0`) {
		t.Fatalf("summary actors: exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
	}
	res = runOn(t, a, "list", "workers", "--filter", "job=keepers")
	if res.Code != 0 || !regexpLine(res.Stdout, `\S+\s+\d+\s+\d+\s+keepers\s+actor\s+(busy|parked)\s+Keeper\s+false`) || !strings.Contains(res.Stdout, " driver ") {
		t.Fatalf("list workers: exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
	}
	res = runOn(t, a, "list", "placement-groups")
	if res.Code != 0 || !strings.HasPrefix(res.Stdout, "PLACEMENT GROUP") {
		t.Fatalf("list placement-groups: exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
	}
	res = runOn(t, a, "job", "submit", "--no-wait", "--id", "puts", hostile, "--", "bigputs", "2", "1", "60000")
	if res.Code != 0 {
		t.Fatalf("job puts: exit %d\n%s", res.Code, res.Stderr)
	}
	for deadline := time.Now().Add(30 * time.Second); ; {
		res = runOn(t, a, "list", "objects", "--filter", "job=puts")
		if res.Code == 0 && strings.Count(res.Stdout, " puts ") == 2 && strings.Contains(res.Stdout, "1MiB") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("list objects: exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
		}
		time.Sleep(100 * time.Millisecond)
	}
	res = runOn(t, a, "summary", "objects", "--filter", "job=puts")
	if res.Code != 0 || !regexpLine(res.Stdout, `puts\s+2\s+2MiB\s+0\s+2\s+0\s+0\s+0B`) {
		t.Fatalf("summary objects: exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
	}
	// On a terminal, job submit draws the tasks finished below the output.
	cmd := exec.Command("script", "-qfec", strings.Join(withAuth([]string{testrig.Fabric(t), "job", "submit", hostile, "--", "overlap", "8", "300"}, a.api, a.apiTok), " "), "/dev/null")
	cmd.Env = append(cmd.Environ(), "TERM=xterm")
	out, err := cmd.CombinedOutput()
	if err != nil || !regexp.MustCompile(`\r\x1b\[Ktasks: \d+/8 finished`).Match(out) {
		t.Fatalf("job submit on a terminal: %v\n%q", err, out)
	}
	res = runOn(t, a, "list", "jobs")
	if res.Code != 0 || !strings.Contains(res.Stdout, "hold") || !strings.Contains(res.Stdout, "boom") {
		t.Fatalf("list jobs: exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
	}
}

// regexpLine reports whether a line of out matches pattern.
func regexpLine(out, pattern string) bool {
	return regexp.MustCompile(`(?m)^` + pattern + `\s*$`).MatchString(out)
}

// TestServeCommands: fabric serve deploy uploads the module a file names
// and deploys it; the ingress answers; serve status shows the replicas,
// serve logs what they printed; a file with a typo is refused naming the
// field; serve delete removes it.
func TestServeCommands(t *testing.T) {
	isolateLocalAgents(t)
	a := startAgentProc(t, "--data-dir", t.TempDir())
	dir := t.TempDir()
	wasm, err := os.ReadFile(testrig.Guest(t, "internal/testguests/serve"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "serve.wasm"), wasm, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "serve.yaml")
	if err := os.WriteFile(cfg, []byte("deployments:\n  - name: model\n    module: serve.wasm\n    class: Model\n    num_replicas: 2\n    public: true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	res := runOn(t, a, "serve", "deploy", cfg)
	if res.Code != 0 || !strings.Contains(res.Stdout, "deployment model: version 1, 2 replicas at /model") {
		t.Fatalf("serve deploy: exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
	}
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		res = runOn(t, a, "serve", "status")
		if res.Code == 0 && regexpLine(res.Stdout, `model\s+/model\s+Model\s+HEALTHY\s+2/2\s+0\s+true\s+1\s+\S+=2`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve status: exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
		}
	}
	resp, err := http.Post("http://"+a.serve+"/model", "application/json", strings.NewReader(`{"input": 42}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != `{"prediction":84}` {
		t.Fatalf("POST /model: %d %q", resp.StatusCode, body)
	}
	// The replica's print, in serve logs (its node keeps it).
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		res = runOn(t, a, "serve", "logs", "model")
		if res.Code == 0 && regexpLine(res.Stdout, `^\[\S+\] .*model: 42 -> 84$`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve logs: exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
		}
	}
	if res := runOn(t, a, "serve", "logs", "nosuch"); res.Code == 0 || !strings.Contains(res.Stderr, "no deployment") {
		t.Fatalf("serve logs of no deployment: exit %d\n%s", res.Code, res.Stderr)
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("deployments:\n  - name: m\n    module: serve.wasm\n    class: Model\n    num_replicaz: 2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if res := runOn(t, a, "serve", "deploy", bad); res.Code == 0 || !strings.Contains(res.Stderr, `unknown field "num_replicaz"`) {
		t.Fatalf("a typo: exit %d\n%s", res.Code, res.Stderr)
	}
	if res := runOn(t, a, "serve", "delete", "model"); res.Code != 0 {
		t.Fatalf("serve delete: exit %d\n%s", res.Code, res.Stderr)
	}
	if res := runOn(t, a, "serve", "delete", "model"); res.Code == 0 || !strings.Contains(res.Stderr, "no deployment") {
		t.Fatalf("serve delete twice: exit %d\n%s", res.Code, res.Stderr)
	}
}
