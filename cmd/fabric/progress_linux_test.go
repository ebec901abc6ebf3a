package main

import (
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/wasmfabric/fabric/internal/testrig"
)

// TestRunProgressOnTerminal: `fabric run` on a terminal (a pty, made by
// util-linux's script) draws the tasks finished below the output, and
// off one (every other test) draws nothing.
func TestRunProgressOnTerminal(t *testing.T) {
	hostile := testrig.Guest(t, "internal/testguests/hostile")
	cmd := exec.Command("script", "-qfec", testrig.Fabric(t)+" run --num-cpus 2 "+hostile+" overlap 12 150", "/dev/null")
	cmd.Env = append(cmd.Environ(), "TERM=xterm")
	done := make(chan struct{})
	var out []byte
	var err error
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		_ = cmd.Process.Kill()
		t.Fatal("fabric run under script did not end")
	}
	if err != nil {
		t.Fatalf("%v\n%q", err, out)
	}
	s := string(out)
	if !regexp.MustCompile(`\r\x1b\[Ktasks: \d+/12 finished`).MatchString(s) || !strings.Contains(s, "overlap: 12 tasks") {
		t.Fatalf("no progress line on the terminal:\n%q", s)
	}
	res := testrig.Run(t, time.Minute, "run", "--num-cpus", "2", hostile, "overlap", "4", "10")
	if res.Code != 0 || strings.Contains(res.Stdout+res.Stderr, "tasks:") || strings.Contains(res.Stdout+res.Stderr, "\x1b[K") {
		t.Fatalf("off a terminal: exit %d\n%q\n%q", res.Code, res.Stdout, res.Stderr)
	}
}
