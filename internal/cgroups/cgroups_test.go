//go:build linux

package cgroups

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The test binary doubles as the processes the tests put in groups:
// with CGROUPS_TEST_CHILD set it waits for a line on stdin (so that it
// is in its group before it does anything), then allocates and touches
// that many MiB, or spins on one CPU.
func TestMain(m *testing.M) {
	switch os.Getenv("CGROUPS_TEST_CHILD") {
	case "":
		os.Exit(m.Run())
	case "spin":
		// Affinity is a thread's: spin on the thread that set it.
		runtime.LockOSThread()
		_ = unix.SchedSetaffinity(0, cpuSet(0))
		_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
		for x := 0; ; x++ {
			_ = x
		}
	default:
		mib, _ := strconv.Atoi(os.Getenv("CGROUPS_TEST_CHILD"))
		_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
		keep := make([][]byte, 0, mib)
		for range mib {
			b := make([]byte, 1<<20)
			for i := 0; i < len(b); i += 4096 {
				b[i] = 1
			}
			keep = append(keep, b)
		}
		fmt.Println(len(keep))
		os.Exit(0)
	}
}

func cpuSet(cpu int) *unix.CPUSet {
	var s unix.CPUSet
	s.Set(cpu)
	return &s
}

func TestReadMounts(t *testing.T) {
	dir := t.TempDir()
	info := filepath.Join(dir, "mountinfo")
	if err := os.WriteFile(info, []byte(`22 1 0:21 / /proc rw - proc proc rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 /kube/pod1 /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/my\040space rw,relatime - cgroup2 cgroup2 rw
bad line
`), 0o600); err != nil {
		t.Fatal(err)
	}
	ms, err := readMounts(info)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 3 {
		t.Fatalf("mounts: %+v", ms)
	}
	if ms[0].point != "/sys/fs/cgroup/cpu,cpuacct" || strings.Join(ms[0].controllers, " ") != "rw cpu cpuacct" || ms[0].v2 {
		t.Errorf("cpu: %+v", ms[0])
	}
	if ms[2].point != "/sys/fs/cgroup/my space" || !ms[2].v2 {
		t.Errorf("v2: %+v", ms[2])
	}
	// A group is found under a mount whose root holds it, only.
	tests := []struct {
		m     mount
		group string
		want  string
	}{
		{ms[1], "/kube/pod1/agent", "/sys/fs/cgroup/memory/agent"},
		{ms[1], "/kube/pod1", "/sys/fs/cgroup/memory"},
		{ms[1], "/kube/pod2", ""},
		{ms[0], "/", "/sys/fs/cgroup/cpu,cpuacct"},
	}
	for _, tt := range tests {
		if got := within(tt.m, tt.group); got != tt.want {
			t.Errorf("within(%s, %s) = %q, want %q", tt.m.root, tt.group, got, tt.want)
		}
	}
	own := filepath.Join(dir, "cgroup")
	if err := os.WriteFile(own, []byte("4:memory:/kube/pod1\n1:cpu,cpuacct:/\n0::/user.slice\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := readOwn(own)
	if err != nil || got["memory"] != "/kube/pod1" || got["cpu"] != "/" || got["cpuacct"] != "/" || got[""] != "/user.slice" {
		t.Fatalf("readOwn: %v %v", got, err)
	}
}

func TestGroupDir(t *testing.T) {
	for tenant, want := range map[string]string{"": "operator", "acme": "t-acme", "..": "t-..", "operator": "t-operator", "a/b": "t-a_b"} {
		if got := groupDir(tenant); got != want {
			t.Errorf("groupDir(%q) = %q, want %q", tenant, got, want)
		}
	}
	if _, err := Open("../x"); err == nil {
		t.Error("Open took a path")
	}
}

// open opens a Manager for a test, skipping only where the kernel offers
// no writable cgroups (the tests of the agent say so too).
func open(t *testing.T) *Manager {
	t.Helper()
	m, err := Open(fmt.Sprintf("fabric-test-%d-%s", os.Getpid(), strings.NewReplacer("/", "-").Replace(t.Name())))
	if errors.Is(err, ErrUnavailable) {
		t.Skipf("no cgroups here: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("cgroups v2: %v", m.V2())
	t.Cleanup(func() {
		if err := m.Close(5 * time.Second); err != nil {
			t.Error(err)
		}
	})
	return m
}

// child starts the test binary as a child of kind in g.
func child(t *testing.T, g *Group, kind string) (*exec.Cmd, *strings.Builder) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "CGROUPS_TEST_CHILD="+kind)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	if err := g.Add(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	if _, err := in.Write([]byte("go\n")); err != nil {
		t.Fatal(err)
	}
	return cmd, &out
}

// TestMemoryLimit: a process that touches more than its group's limit is
// killed, and one that stays under it is not; the group counts the kill.
func TestMemoryLimit(t *testing.T) {
	m := open(t)
	g, err := m.Group("acme")
	if err != nil {
		t.Fatal(err)
	}
	if err := g.SetLimits(64<<20, DefaultWeight); err != nil {
		t.Fatal(err)
	}
	cmd, _ := child(t, g, "256")
	err = cmd.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("a process past its group's 64 MiB: %v, want killed", err)
	}
	u, err := g.Usage()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("usage: %+v", u)
	if u.Killed < 1 || u.Peak > 64<<20 {
		t.Fatalf("usage after the kill: %+v", u)
	}
	if err := g.SetLimits(512<<20, DefaultWeight); err != nil {
		t.Fatal(err)
	}
	// (Far under: a test binary built with -race takes several times
	// what it allocates.)
	cmd, out := child(t, g, "48")
	if err := cmd.Wait(); err != nil || strings.TrimSpace(out.String()) != "48" {
		t.Fatalf("a process under its group's 512 MiB: %v %q", err, out.String())
	}
	// Another tenant's group is not the first's.
	h, err := m.Group("other")
	if err != nil {
		t.Fatal(err)
	}
	if u, _ := h.Usage(); u.Killed != 0 {
		t.Fatalf("the other group: %+v", u)
	}
}

// TestCPUWeight: two spinning processes on one CPU share it by their
// groups' weights.
func TestCPUWeight(t *testing.T) {
	m := open(t)
	low, err := m.Group("low")
	if err != nil {
		t.Fatal(err)
	}
	high, err := m.Group("high")
	if err != nil {
		t.Fatal(err)
	}
	if err := low.SetLimits(0, MinWeight); err != nil {
		t.Fatal(err)
	}
	if err := high.SetLimits(0, DefaultWeight); err != nil {
		t.Fatal(err)
	}
	a, _ := child(t, low, "spin")
	b, _ := child(t, high, "spin")
	time.Sleep(200 * time.Millisecond)
	a0, b0 := cpuTime(t, a.Process.Pid), cpuTime(t, b.Process.Pid)
	time.Sleep(time.Second)
	da, db := cpuTime(t, a.Process.Pid)-a0, cpuTime(t, b.Process.Pid)-b0
	t.Logf("on one CPU for 1s: weight %d got %d ticks, weight %d got %d", MinWeight, da, DefaultWeight, db)
	if db < 5*da || db == 0 {
		t.Fatalf("weight %d got %d ticks beside weight %d's %d: want 5 times as many at least", DefaultWeight, db, MinWeight, da)
	}
}

// cpuTime returns a process's user and system time, in clock ticks.
func cpuTime(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	return utime + stime
}

// TestRemove: what an agent that is gone left (its directory, a tenant's
// group in it) is removed by name, on every hierarchy.
func TestRemove(t *testing.T) {
	if err := Remove("../x", 0); err == nil {
		t.Error("Remove took a path")
	}
	name := fmt.Sprintf("fabric-test-%d-remove", os.Getpid())
	m, err := Open(name)
	if errors.Is(err, ErrUnavailable) {
		t.Skipf("no cgroups here: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(time.Second)
	g, err := m.Group("acme")
	if err != nil {
		t.Fatal(err)
	}
	if err := Remove(name, time.Second); err != nil {
		t.Fatal(err)
	}
	for _, d := range append(slices.Clone(m.dirs), g.dirs...) {
		if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s is left: %v", d, err)
		}
	}
	if AgentDir("vm-1.a/b") != "fabric-vm-1_a_b" {
		t.Errorf("AgentDir: %q", AgentDir("vm-1.a/b"))
	}
}

// TestV2Files checks what the v2 path writes and reads, on a directory
// laid out as cgroup2's files (this package's kernel tests run v2 only
// where the machine offers its controllers).
func TestV2Files(t *testing.T) {
	root := t.TempDir()
	svc := filepath.Join(root, "svc")
	if err := os.Mkdir(svc, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(dir, name, v string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	read := func(dir, name string) string {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	mounts := []mount{{point: root, root: "/", v2: true}}
	write(svc, "cgroup.controllers", "cpuset cpu io pids")
	if _, err := openV2(mounts, map[string]string{"": "/svc"}, "fabric-n1"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("a group without the memory controller: %v", err)
	}
	write(svc, "cgroup.controllers", "cpuset cpu io memory pids")
	m, err := openV2(mounts, map[string]string{"": "/svc"}, "fabric-n1")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(svc, "fabric-n1")
	if !m.V2() || read(svc, "cgroup.subtree_control") != "+memory +cpu" || read(dir, "cgroup.subtree_control") != "+memory +cpu" {
		t.Fatal("the controllers are not enabled for the agent's directory and the tenants' groups")
	}
	g, err := m.Group("acme")
	if err != nil {
		t.Fatal(err)
	}
	acme := filepath.Join(dir, "t-acme")
	for _, c := range []struct {
		memory               int64
		weight               uint64
		max, swap, cpuWeight string
	}{
		{1 << 30, 201, "1073741824", "0", "201"},
		{0, 0, "max", "max", "1"},
		{5 << 20, 1 << 20, "5242880", "0", "10000"},
	} {
		if err := g.SetLimits(c.memory, c.weight); err != nil {
			t.Fatal(err)
		}
		if got := [3]string{read(acme, "memory.max"), read(acme, "memory.swap.max"), read(acme, "cpu.weight")}; got != [3]string{c.max, c.swap, c.cpuWeight} {
			t.Errorf("SetLimits(%d, %d) wrote memory.max, memory.swap.max, cpu.weight %q", c.memory, c.weight, got)
		}
	}
	if err := g.Add(1234); err != nil || read(acme, "cgroup.procs") != "1234" {
		t.Fatalf("Add: %v", err)
	}
	write(acme, "memory.current", "5\n")
	write(acme, "memory.peak", "9\n")
	write(acme, "memory.events", "low 0\nhigh 0\nmax 3\noom 1\noom_kill 2\n")
	if u, err := g.Usage(); err != nil || u != (Usage{Memory: 5, Peak: 9, Killed: 2}) {
		t.Fatalf("Usage: %+v, %v", u, err)
	}
}
