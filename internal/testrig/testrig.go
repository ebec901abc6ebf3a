// Package testrig gives tests the real binary and real guest modules: it
// finds the repository, builds bin/fabric and guests when they are missing
// (make test builds them first), and runs the binary.
package testrig

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	rootOnce sync.Once
	root     string
	buildMu  sync.Mutex
)

// Root returns the repository root (the directory holding go.mod).
func Root(t testing.TB) string {
	t.Helper()
	rootOnce.Do(func() {
		dir, err := os.Getwd()
		if err != nil {
			return
		}
		for {
			if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
				root = dir
				return
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				return
			}
			dir = parent
		}
	})
	if root == "" {
		t.Fatal("testrig: cannot find the repository root")
	}
	return root
}

// Fabric returns the path of bin/fabric, building it if it is missing.
func Fabric(t testing.TB) string {
	t.Helper()
	r := Root(t)
	bin := filepath.Join(r, "bin", "fabric")
	buildMu.Lock()
	defer buildMu.Unlock()
	if _, err := os.Stat(bin); err != nil {
		cmd := exec.Command("go", "build", "-o", bin, "./cmd/fabric")
		cmd.Dir = r
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("testrig: build bin/fabric: %v\n%s", err, out)
		}
	}
	return bin
}

// Guest returns the module built from the package dir (relative to the
// repository root, e.g. "examples/counter"), building it if missing.
// Examples go to bin/examples, others to bin/testguests.
func Guest(t testing.TB, dir string) string {
	t.Helper()
	bin := Fabric(t)
	r := Root(t)
	sub := "testguests"
	if strings.HasPrefix(dir, "examples/") {
		sub = "examples"
	}
	out := filepath.Join(r, "bin", sub, filepath.Base(dir)+".wasm")
	buildMu.Lock()
	defer buildMu.Unlock()
	if _, err := os.Stat(out); err != nil {
		cmd := exec.Command(bin, "build", "./"+dir, "-o", out)
		cmd.Dir = r
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("testrig: build %s: %v\n%s", dir, err, b)
		}
	}
	return out
}

// Result is the outcome of running the binary.
type Result struct {
	Stdout, Stderr string
	Code           int
	Elapsed        time.Duration
}

// Run runs bin/fabric with args, killing it after limit.
func Run(t testing.TB, limit time.Duration, args ...string) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, Fabric(t), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	res := Result{Stdout: stdout.String(), Stderr: stderr.String(), Elapsed: time.Since(start)}
	if ctx.Err() != nil {
		t.Fatalf("fabric %s: still running after %s\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), limit, tail(res.Stdout), tail(res.Stderr))
	}
	if ee, ok := err.(*exec.ExitError); ok {
		res.Code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("fabric %s: %v", strings.Join(args, " "), err)
	}
	return res
}

func tail(s string) string {
	if len(s) > 4000 {
		return "..." + s[len(s)-4000:]
	}
	return s
}

// Make returns bin/TARGET, running `make TARGET` in the repository when it
// is missing (for modules built by other toolchains, such as C guests).
func Make(t testing.TB, target string) string {
	t.Helper()
	r := Root(t)
	out := filepath.Join(r, target)
	buildMu.Lock()
	defer buildMu.Unlock()
	if _, err := os.Stat(out); err != nil {
		cmd := exec.Command("make", target)
		cmd.Dir = r
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("testrig: make %s: %v\n%s", target, err, b)
		}
	}
	return out
}
