//go:build linux

package cgroups

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ErrUnavailable is returned by Open when the kernel offers no cgroups
// the agent may write with the memory and cpu controllers.
var ErrUnavailable = errors.New("cgroups: no writable memory and cpu controllers")

// Weights of a group's CPU share, in cgroup v2's units (v1's cpu.shares
// are these times 1024/100): DefaultWeight is a new group's and the
// kernel's default; MinWeight and MaxWeight bound what SetLimits takes.
const (
	MinWeight     = 1
	DefaultWeight = 100
	MaxWeight     = 10000
)

// Manager is the groups of one agent's tenants.
type Manager struct {
	v2    bool
	dirs  []string // the agent's directory: one (v2), or memory's and cpu's (v1)
	mu    sync.Mutex
	group map[string]*Group
}

// Group is one tenant's control group.
type Group struct {
	m      *Manager
	dirs   []string // as Manager.dirs, for this group
	memory int64    // the limit set last (0: none)
	weight uint64   // the weight set last
}

// Open makes the directory name (a single path element) under the
// agent's own control group, removing what an earlier agent of that name
// left there, and returns its Manager.
func Open(name string) (*Manager, error) {
	if name == "" || strings.ContainsAny(name, "/\x00") || name == "." || name == ".." {
		return nil, fmt.Errorf("cgroups: bad directory name %q", name)
	}
	mounts, err := readMounts("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	own, err := readOwn("/proc/self/cgroup")
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	if m, err := openV2(mounts, own, name); err == nil {
		return m, nil
	} else if !errors.Is(err, ErrUnavailable) {
		return nil, err
	}
	return openV1(mounts, own, name)
}

// AgentDir is the directory name of the agent of node nodeID: a single
// path element.
func AgentDir(nodeID string) string {
	return "fabric-" + strings.NewReplacer("/", "_", ".", "_", "\x00", "_").Replace(nodeID)
}

// Remove removes the directory name, and the groups in it, that an agent
// which is gone left under this process's own control groups (its
// child's, which it inherited): what Open clears when an agent of that
// name starts again. It moves no process; a group that still holds one
// stays past wait (for processes killed with the agent to be gone), and
// Remove says so.
func Remove(name string, wait time.Duration) error {
	if name == "" || strings.ContainsAny(name, "/\x00") || name == "." || name == ".." {
		return fmt.Errorf("cgroups: bad directory name %q", name)
	}
	mounts, err := readMounts("/proc/self/mountinfo")
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	own, err := readOwn("/proc/self/cgroup")
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	var errs []error
	for _, mt := range mounts {
		group, ok := own[""]
		if !mt.v2 {
			group, ok = "", false
			for _, c := range mt.controllers {
				if g, has := own[c]; has && (c == "memory" || c == "cpu") {
					group, ok = g, true
				}
			}
		}
		if !ok {
			continue
		}
		if mt.v2 && filepath.Base(group) == "agent" {
			// An agent of v2 moved itself to the leaf "agent": the
			// directories are its siblings.
			group = filepath.Dir(group)
		}
		parent := within(mt, group)
		if parent == "" {
			continue
		}
		dir := filepath.Join(parent, name)
		entries, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		deadline := time.Now().Add(wait)
		for _, e := range entries {
			if e.IsDir() {
				if err := removeGroup(filepath.Join(dir, e.Name()), deadline); err != nil {
					errs = append(errs, err)
				}
			}
		}
		if err := removeGroup(dir, deadline); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// removeGroup removes the group dir, waiting until deadline while
// processes are still in it.
func removeGroup(dir string, deadline time.Time) error {
	for {
		err := os.Remove(dir)
		if err == nil || errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if !errors.Is(err, syscall.EBUSY) || time.Now().After(deadline) {
			return fmt.Errorf("cgroups: remove %s: %w", dir, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// V2 reports whether the groups are cgroups v2.
func (m *Manager) V2() bool { return m.v2 }

// mount is a cgroup file system mounted on this machine.
type mount struct {
	point, root string
	v2          bool
	controllers []string // v1: the controllers of its hierarchy
}

// readMounts returns the cgroup mounts in a mountinfo file.
func readMounts(path string) ([]mount, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []mount
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// ID parent major:minor root point options [optional...] - type source super
		fields := strings.Fields(sc.Text())
		sep := slices.Index(fields, "-")
		if sep < 6 || len(fields) < sep+4 {
			continue
		}
		m := mount{root: unescape(fields[3]), point: unescape(fields[4])}
		switch fields[sep+1] {
		case "cgroup2":
			m.v2 = true
		case "cgroup":
			m.controllers = strings.Split(fields[sep+3], ",")
		default:
			continue
		}
		out = append(out, m)
	}
	return out, sc.Err()
}

// unescape undoes mountinfo's octal escapes (\040 for a space).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// readOwn returns this process's group in each hierarchy of a
// /proc/PID/cgroup file, by controller ("" for v2's).
func readOwn(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for line := range strings.Lines(string(b)) {
		parts := strings.SplitN(strings.TrimSpace(line), ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[0] == "0" && parts[1] == "" {
			out[""] = parts[2]
			continue
		}
		for c := range strings.SplitSeq(parts[1], ",") {
			out[c] = parts[2]
		}
	}
	return out, nil
}

// within returns where group (a path in the hierarchy) is under a mount
// of that hierarchy, or "" when the mount does not show it.
func within(m mount, group string) string {
	rel, err := filepath.Rel(m.root, group)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return ""
	}
	return filepath.Join(m.point, rel)
}

func openV2(mounts []mount, own map[string]string, name string) (*Manager, error) {
	group, ok := own[""]
	if !ok {
		return nil, ErrUnavailable
	}
	for _, mt := range mounts {
		if !mt.v2 {
			continue
		}
		parent := within(mt, group)
		if parent == "" {
			continue
		}
		ctl, err := os.ReadFile(filepath.Join(parent, "cgroup.controllers"))
		if err != nil {
			continue
		}
		have := strings.Fields(string(ctl))
		if !slices.Contains(have, "memory") || !slices.Contains(have, "cpu") {
			continue
		}
		if err := enableV2(parent); err != nil {
			return nil, err
		}
		dir := filepath.Join(parent, name)
		if err := fresh(dir); err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte("+memory +cpu"), 0); err != nil {
			return nil, fmt.Errorf("cgroups: enable the controllers in %s: %w", dir, err)
		}
		return &Manager{v2: true, dirs: []string{dir}, group: map[string]*Group{}}, nil
	}
	return nil, ErrUnavailable
}

// enableV2 enables the memory and cpu controllers for parent's children.
// A group that holds processes cannot (unless it is the root), so this
// process moves to a leaf of its own first; when others share the group
// (a shell's session), they stay, and the controllers cannot be enabled:
// the agent then runs without groups rather than move what is not its.
func enableV2(parent string) error {
	control := filepath.Join(parent, "cgroup.subtree_control")
	err := os.WriteFile(control, []byte("+memory +cpu"), 0)
	if err == nil || !errors.Is(err, syscall.EBUSY) {
		if err != nil {
			return fmt.Errorf("%w: enable the controllers in %s: %v", ErrUnavailable, parent, err)
		}
		return nil
	}
	leaf := filepath.Join(parent, "agent")
	if err := os.Mkdir(leaf, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	if err := os.WriteFile(filepath.Join(leaf, "cgroup.procs"), []byte(strconv.Itoa(os.Getpid())), 0); err != nil {
		return fmt.Errorf("%w: move the agent into %s: %v", ErrUnavailable, leaf, err)
	}
	if err := os.WriteFile(control, []byte("+memory +cpu"), 0); err != nil {
		return fmt.Errorf("%w: enable the controllers in %s (other processes share the agent's group; run it in a group of its own, as a systemd service with Delegate=yes): %v", ErrUnavailable, parent, err)
	}
	return nil
}

func openV1(mounts []mount, own map[string]string, name string) (*Manager, error) {
	var dirs []string
	for _, c := range []string{"memory", "cpu"} {
		group, ok := own[c]
		if !ok {
			return nil, ErrUnavailable
		}
		found := ""
		for _, mt := range mounts {
			if !mt.v2 && slices.Contains(mt.controllers, c) {
				if found = within(mt, group); found != "" {
					break
				}
			}
		}
		if found == "" {
			return nil, ErrUnavailable
		}
		dir := filepath.Join(found, name)
		if err := fresh(dir); err != nil {
			return nil, err
		}
		dirs = append(dirs, dir)
	}
	return &Manager{dirs: dirs, group: map[string]*Group{}}, nil
}

// fresh makes dir, after removing the groups an earlier agent left in it
// (each empty by now: their processes died with it).
func fresh(dir string) error {
	if entries, err := os.ReadDir(dir); err == nil {
		for _, e := range entries {
			if e.IsDir() {
				_ = os.Remove(filepath.Join(dir, e.Name()))
			}
		}
		return nil
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		if errors.Is(err, os.ErrPermission) || errors.Is(err, syscall.EROFS) {
			return fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
		return fmt.Errorf("cgroups: %w", err)
	}
	return nil
}

// groupDir names a tenant's group: "operator" for the operator's (""),
// "t-" and the name for a tenant's, so that no tenant name is a path.
func groupDir(tenant string) string {
	if tenant == "" {
		return "operator"
	}
	return "t-" + strings.NewReplacer("/", "_", "\x00", "_").Replace(tenant)
}

// Group returns tenant's group ("" for the operator), made the first
// time with no memory limit and the default weight.
func (m *Manager) Group(tenant string) (*Group, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if g := m.group[tenant]; g != nil {
		return g, nil
	}
	g := &Group{m: m, weight: DefaultWeight}
	for _, d := range m.dirs {
		dir := filepath.Join(d, groupDir(tenant))
		if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("cgroups: the group of %s: %w", who(tenant), err)
		}
		g.dirs = append(g.dirs, dir)
	}
	m.group[tenant] = g
	return g, nil
}

func who(tenant string) string {
	if tenant == "" {
		return "the operator"
	}
	return fmt.Sprintf("tenant %q", tenant)
}

// Add moves the process pid into the group.
func (g *Group) Add(pid int) error {
	for _, d := range g.dirs {
		if err := os.WriteFile(filepath.Join(d, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0); err != nil {
			return fmt.Errorf("cgroups: move process %d into %s: %w", pid, d, err)
		}
	}
	return nil
}

// SetLimits sets the group's memory limit (bytes, 0 for none) and CPU
// weight (MinWeight to MaxWeight), writing only what changed. A memory
// limit lower than what the group uses makes the kernel reclaim, and kill
// one of its processes if it cannot.
func (g *Group) SetLimits(memory int64, weight uint64) error {
	weight = min(max(weight, MinWeight), MaxWeight)
	g.m.mu.Lock()
	defer g.m.mu.Unlock()
	if memory != g.memory {
		if err := g.writeMemory(memory); err != nil {
			return err
		}
		g.memory = memory
	}
	if weight != g.weight {
		if err := g.writeWeight(weight); err != nil {
			return err
		}
		g.weight = weight
	}
	return nil
}

func (g *Group) writeMemory(limit int64) error {
	if g.m.v2 {
		v := "max"
		if limit > 0 {
			v = strconv.FormatInt(limit, 10)
		}
		// No swap either: past the limit the group reclaims or is killed.
		// (A kernel without swap has no such file.)
		_ = os.WriteFile(filepath.Join(g.dirs[0], "memory.swap.max"), []byte(strings.Replace(v, strconv.FormatInt(limit, 10), "0", 1)), 0)
		return writeFile(g.dirs[0], "memory.max", v)
	}
	v := "-1"
	if limit > 0 {
		v = strconv.FormatInt(limit, 10)
	}
	return writeFile(g.dirs[0], "memory.limit_in_bytes", v)
}

func (g *Group) writeWeight(w uint64) error {
	if g.m.v2 {
		return writeFile(g.dirs[0], "cpu.weight", strconv.FormatUint(w, 10))
	}
	return writeFile(g.dirs[1], "cpu.shares", strconv.FormatUint(max(2, w*1024/100), 10))
}

func writeFile(dir, name, v string) error {
	if err := os.WriteFile(filepath.Join(dir, name), []byte(v), 0); err != nil {
		return fmt.Errorf("cgroups: write %s to %s: %w", v, filepath.Join(dir, name), err)
	}
	return nil
}

// Usage is what a group's processes use now.
type Usage struct {
	// Memory is the bytes they hold, Peak the most they held at once
	// (where the kernel tells: 0 otherwise).
	Memory, Peak int64
	// Killed counts the processes the kernel killed past the limit.
	Killed int64
}

// Usage returns what the group's processes use.
func (g *Group) Usage() (Usage, error) {
	var u Usage
	var err error
	if g.m.v2 {
		if u.Memory, err = readInt(g.dirs[0], "memory.current"); err != nil {
			return u, err
		}
		u.Peak, _ = readInt(g.dirs[0], "memory.peak") // kernels from 5.19
		if b, err := os.ReadFile(filepath.Join(g.dirs[0], "memory.events")); err == nil {
			u.Killed = field(string(b), "oom_kill")
		}
		return u, nil
	}
	if u.Memory, err = readInt(g.dirs[0], "memory.usage_in_bytes"); err != nil {
		return u, err
	}
	u.Peak, _ = readInt(g.dirs[0], "memory.max_usage_in_bytes")
	if b, err := os.ReadFile(filepath.Join(g.dirs[0], "memory.oom_control")); err == nil {
		u.Killed = field(string(b), "oom_kill")
	}
	return u, nil
}

func readInt(dir, name string) (int64, error) {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return 0, fmt.Errorf("cgroups: %w", err)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("cgroups: %s: %w", filepath.Join(dir, name), err)
	}
	return n, nil
}

// field returns the value of a "key value" line.
func field(text, key string) int64 {
	for line := range strings.Lines(text) {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), " "); ok && k == key {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return 0
}

// Close removes the groups and the agent's directory, waiting up to
// wait for their processes (killed by the caller) to be gone.
func (m *Manager) Close(wait time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	deadline := time.Now().Add(wait)
	var errs []error
	for _, g := range m.group {
		for _, d := range g.dirs {
			if err := removeGroup(d, deadline); err != nil {
				errs = append(errs, err)
			}
		}
	}
	m.group = map[string]*Group{}
	for _, d := range m.dirs {
		if err := os.Remove(d); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("cgroups: remove %s: %w", d, err))
		}
	}
	return errors.Join(errs...)
}
