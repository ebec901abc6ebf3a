//go:build linux

package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/wasmfabric/fabric/internal/testrig"
)

// TestBadInput runs hostile and malformed guests with the real binary: each
// fails with a clear message and nothing else is harmed.
func TestBadInput(t *testing.T) {
	hostile := testrig.Guest(t, "internal/testguests/hostile")
	cactors := testrig.Make(t, "bin/testguests/cactors.wasm")
	dir := t.TempDir()
	notWasm := filepath.Join(dir, "notes.wasm")
	if err := os.WriteFile(notWasm, []byte("# just some text\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	emptyModule := filepath.Join(dir, "empty.wasm")
	if err := os.WriteFile(emptyModule, []byte("\x00asm\x01\x00\x00\x00"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name      string
		args      []string
		code      int
		stdout    []string
		stderr    []string
		notStdout []string
		notStderr []string
		maxTime   time.Duration
		maxStdout int
	}{
		{name: "not wasm", args: []string{"run", notWasm}, code: 1,
			stderr: []string{"not a WebAssembly module", "fabric build"}},
		{name: "no ABI exports", args: []string{"run", emptyModule}, code: 1,
			stderr: []string{"missing required exports: fabric_abi_version, fabric_alloc, fabric_free, fabric_call, memory"}},
		{name: "guest panic", args: []string{"run", hostile, "--", "panic"},
			stdout: []string{"get returned: task panicky failed: panic: boom: the guest panicked", "goroutine 1", "hostile/main.go:", "still serving: 42"}},
		{name: "task timeout", args: []string{"run", hostile, "--", "timeout"},
			stdout: []string{"timed out after 1s and was stopped", "(is timeout: true)", "failed within the timeout plus 1s: true", "still serving: 42"}, maxTime: 20 * time.Second,
			// The spinning guest is interrupted; its worker is not killed.
			notStderr: []string{"did not stop within"}},
		{name: "deadline among siblings", args: []string{"run", "--num-cpus", "2", hostile, "--", "deadline"},
			stdout: []string{"(is timeout: true)", "stopped within 50ms of it: true", "siblings correct: true <nil>", "still serving: 42"}},
		{name: "deadline under a lease", args: []string{"run", hostile, "--", "lease_spin"},
			stdout:    []string{"timed out after 500ms", "(is timeout: true, within 1.5s: true)", "lease_spin: next call 7 <nil>", "still serving: 42"},
			notStderr: []string{"did not stop within"}},
		{name: "job timeout", args: []string{"run", hostile, "--timeout", "2s", "--", "loop"}, code: 1,
			stderr: []string{"job timed out"}, maxTime: 3 * time.Second},
		{name: "memory bomb", args: []string{"run", hostile, "--memory", "64MiB", "--", "membomb"},
			stdout: []string{"guest ran out of memory (limit 64 MiB per guest", "still serving: 42"}},
		{name: "runaway recursion", args: []string{"run", hostile, "--memory", "64MiB", "--", "recursion"},
			stdout: []string{"task recursion failed: guest ran out of memory (limit 64 MiB per guest", "still serving: 42"}},
		// Four actors of a C guest recurse without end, in the process
		// that hosts sixteen others: the stack budget ends each of the
		// four calls, and the others answer.
		{name: "runaway recursions among siblings", args: []string{"run", cactors, "--", "20", "0", "4"},
			stdout: []string{"divers: 4, ended by the stack budget: 4", "actors: 16 called once, sum 184"}},
		{name: "bad pointers", args: []string{"run", hostile, "--", "badptr"},
			stdout: []string{"9 bad host calls rejected", "return_value: pointer 4294967280 length 64 is outside guest memory", "still serving: 42"}},
		{name: "output flood", args: []string{"run", hostile, "--", "flood"},
			stdout: []string{"reached its cap of 8388608 bytes", "red done", "still serving: 42"}, notStdout: []string{"\x1b", "title"},
			maxStdout: 9 << 20},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res := testrig.Run(t, 2*time.Minute, c.args...)
			if res.Code != c.code {
				t.Fatalf("exit %d, want %d\nstdout:\n%.3000s\nstderr:\n%.3000s", res.Code, c.code, res.Stdout, res.Stderr)
			}
			for _, w := range c.stdout {
				if !strings.Contains(res.Stdout, w) {
					t.Errorf("stdout lacks %q:\n%.3000s", w, res.Stdout)
				}
			}
			for _, w := range c.notStdout {
				if strings.Contains(res.Stdout, w) {
					t.Errorf("stdout contains %q", w)
				}
			}
			for _, w := range c.stderr {
				if !strings.Contains(res.Stderr, w) {
					t.Errorf("stderr lacks %q:\n%.3000s", w, res.Stderr)
				}
			}
			for _, w := range c.notStderr {
				if strings.Contains(res.Stderr, w) {
					t.Errorf("stderr contains %q:\n%.3000s", w, res.Stderr)
				}
			}
			if c.code == 1 && strings.Count(strings.TrimSpace(res.Stderr), "\n") > 0 {
				t.Errorf("a failed job should print one line, got:\n%s", res.Stderr)
			}
			if c.maxTime > 0 && res.Elapsed > c.maxTime {
				t.Errorf("took %s, want under %s", res.Elapsed, c.maxTime)
			}
			if c.maxStdout > 0 && len(res.Stdout) > c.maxStdout {
				t.Errorf("stdout is %d bytes, want at most %d", len(res.Stdout), c.maxStdout)
			}
		})
	}
}

func TestParseSize(t *testing.T) {
	cases := []struct {
		in   string
		want int64
		err  bool
	}{
		{"64MiB", 64 << 20, false}, {"1GiB", 1 << 30, false}, {"512KB", 512000, false},
		{"100M", 100 << 20, false}, {"1048576", 1 << 20, false}, {"1.5GiB", 3 << 29, false},
		{"4Gi", 4 << 30, false}, {"256Mi", 256 << 20, false}, {"8Ki", 8 << 10, false},
		{"lots", 0, true}, {"-1MiB", 0, true}, {"", 0, true}, {"Gi", 0, true},
	}
	for _, c := range cases {
		got, err := ParseSize(c.in)
		if (err != nil) != c.err || got != c.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d, err %v", c.in, got, err, c.want, c.err)
		}
	}
}

// TestBuild runs `fabric build` as a new user would: `fabric build .`
// names the module after the package's directory, and a program that
// does not use the SDK gets an error that says so, and no module.
func TestBuild(t *testing.T) {
	bin := testrig.Fabric(t)
	dir := filepath.Join(testrig.Root(t), "examples", "quickstart")
	out := filepath.Join(dir, "quickstart.wasm")
	t.Cleanup(func() { _ = os.Remove(out) })
	cmd := exec.Command(bin, "build", ".")
	cmd.Dir = dir
	if b, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(b), "built quickstart.wasm") {
		t.Fatalf("fabric build .: %v\n%s", err, b)
	}
	if _, err := os.Stat(out); err != nil {
		t.Fatalf("no quickstart.wasm: %v", err)
	}

	plain := t.TempDir()
	if err := os.WriteFile(filepath.Join(plain, "go.mod"), []byte("module plain\n\ngo 1.26\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(plain, "main.go"), []byte("package main\n\nfunc main() {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd = exec.Command(bin, "build", ".")
	cmd.Dir = plain
	b, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(b), "does not use the Fabric SDK") || !strings.Contains(string(b), "sdk.Main") {
		t.Fatalf("a program without the SDK: %v\n%s", err, b)
	}
	if _, err := os.Stat(filepath.Join(plain, filepath.Base(plain)+".wasm")); err == nil {
		t.Errorf("a module that is not a guest was left behind")
	}
}

// TestBuildOutsideModule builds and runs a guest from a Go module outside
// the repository, set up as the README says: its go.mod requires the SDK
// and replaces it with this checkout.
func TestBuildOutsideModule(t *testing.T) {
	bin := testrig.Fabric(t)
	root := testrig.Root(t)
	dir := filepath.Join(t.TempDir(), "myjob")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	gomod := "module example.com/myjob\n\ngo 1.26\n\nrequire github.com/wasmfabric/fabric v0.0.0\n\nreplace github.com/wasmfabric/fabric => " + root + "\n"
	main := `package main

import (
	"fmt"

	"github.com/wasmfabric/fabric/sdk"
)

var square = sdk.Task1("square", func(x int) (int, error) { return x * x, nil })

func init() { sdk.Main(run) }

func run(args []string) error {
	v, err := square.Remote(7).Get()
	fmt.Println("square of 7 from another module:", v)
	return err
}

func main() {}
`
	// The repository's go.sum holds every hash the SDK's imports need, so
	// go mod tidy finds them in the module cache that building the
	// repository filled, without the network.
	sum, err := os.ReadFile(filepath.Join(root, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{"go.mod": []byte(gomod), "main.go": []byte(main), "go.sum": sum} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tidy := exec.Command("go", "mod", "tidy")
	tidy.Dir = dir
	tidy.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOPROXY=off")
	if b, err := tidy.CombinedOutput(); err != nil {
		t.Fatalf("go mod tidy: %v\n%s", err, b)
	}
	build := exec.Command(bin, "build", ".")
	build.Dir = dir
	if b, err := build.CombinedOutput(); err != nil || !strings.Contains(string(b), "built myjob.wasm") {
		t.Fatalf("fabric build .: %v\n%s", err, b)
	}
	res := testrig.Run(t, time.Minute, "run", filepath.Join(dir, "myjob.wasm"))
	if res.Code != 0 || !strings.Contains(res.Stdout, "square of 7 from another module: 49") {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", res.Code, res.Stdout, res.Stderr)
	}
}

// TestVersion: `fabric version` and `fabric --version` say the version
// and the commit; -o json has them as fields.
func TestVersion(t *testing.T) {
	res := testrig.Run(t, 30*time.Second, "version")
	if res.Code != 0 || !strings.HasPrefix(res.Stdout, "fabric ") || !strings.Contains(res.Stdout, runtime.Version()) {
		t.Fatalf("version: exit %d %q %q", res.Code, res.Stdout, res.Stderr)
	}
	if again := testrig.Run(t, 30*time.Second, "--version"); again.Stdout != res.Stdout {
		t.Errorf("--version %q, version %q", again.Stdout, res.Stdout)
	}
	res = testrig.Run(t, 30*time.Second, "version", "-o", "json")
	var v versionInfo
	if res.Code != 0 || json.Unmarshal([]byte(res.Stdout), &v) != nil || v.Version == "" || v.Go != runtime.Version() {
		t.Fatalf("version -o json: %q", res.Stdout)
	}
	if v.Commit == "" {
		t.Log("this build has no VCS stamp (built outside a git checkout)")
	}
}
