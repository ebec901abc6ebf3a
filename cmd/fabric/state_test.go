//go:build linux

package main

import (
	"encoding/json"
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
