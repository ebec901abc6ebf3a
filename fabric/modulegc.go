//go:build linux

package fabric

import (
	"cmp"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/wasmfabric/fabric/internal/controlstate"
	"github.com/wasmfabric/fabric/internal/membership"
	"github.com/wasmfabric/fabric/internal/workerpool"
)

// DefaultModuleDiskLimit bounds the disk an agent's modules and their
// compiled code take before unused ones are removed.
const DefaultModuleDiskLimit = 8 << 30

// moduleGCInterval is how often an agent checks its modules' disk use.
const moduleGCInterval = 30 * time.Second

// moduleGrace keeps modules used (or stored) this recently whatever the
// disk use: a module stored for a job that is being recorded.
const moduleGrace = 10 * time.Minute

// touchModule marks a module used now, for the collector's order.
func (n *Node) touchModule(digest string) {
	now := time.Now()
	_ = os.Chtimes(n.modulePath(digest), now, now)
}

type diskFile struct {
	path string
	size int64
	mod  time.Time
}

// filesIn lists the regular files under dir.
func filesIn(dir string, keep func(name string) bool) ([]diskFile, int64) {
	var out []diskFile
	var total int64
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !keep(d.Name()) {
			return nil
		}
		if info, err := d.Info(); err == nil && info.Mode().IsRegular() {
			out = append(out, diskFile{p, info.Size(), info.ModTime()})
			total += info.Size()
		}
		return nil
	})
	slices.SortFunc(out, func(a, b diskFile) int { return a.mod.Compare(b.mod) })
	return out, total
}

// collectModules runs collectOnce every moduleGCInterval, or when woken.
func (a *Agent) collectModules() {
	defer a.wg.Done()
	t := time.NewTicker(moduleGCInterval)
	defer t.Stop()
	for {
		select {
		case <-a.done:
			return
		case <-t.C:
		case <-a.gcWake:
		}
		a.collectOnce()
	}
}

// wakeCollector asks for a check of the modules' disk use.
func (a *Agent) wakeCollector() {
	select {
	case a.gcWake <- struct{}{}:
	default:
	}
}

// compiledDirs lists the compiled code under the node's cache directory,
// least recently used first: a directory per module (digest set), and
// the files of the layout before it (one directory for all modules, which
// no process of this version uses).
func (n *Node) compiledDirs() ([]compiledCode, int64) {
	root := n.cfg.CacheDir
	if root == "" {
		return nil, 0
	}
	var out []compiledCode
	var total int64
	add := func(path, digest string) {
		info, err := os.Stat(path)
		if err != nil || !info.IsDir() {
			return
		}
		_, size := filesIn(path, func(string) bool { return true })
		out = append(out, compiledCode{diskFile{path, size, info.ModTime()}, digest})
		total += size
	}
	mods := filepath.Dir(workerpool.CompiledDir(root, "x"))
	if ents, err := os.ReadDir(mods); err == nil {
		for _, e := range ents {
			add(filepath.Join(mods, e.Name()), e.Name())
		}
	}
	if ents, err := os.ReadDir(root); err == nil {
		for _, e := range ents {
			if name := e.Name(); name == "instrumented" || strings.HasPrefix(name, "wazero-") {
				add(filepath.Join(root, name), "")
			}
		}
	}
	slices.SortFunc(out, func(a, b compiledCode) int { return a.mod.Compare(b.mod) })
	return out, total
}

// compiledCode is a directory of compiled code: a module's (digest), or
// of the earlier layout ("").
type compiledCode struct {
	diskFile
	digest string
}

// collectOnce removes compiled code and modules, least recently used
// first, while their disk use is past the limit. Compiled code goes first
// (it can be made again): a module's, when no job that has not ended uses
// the module and no worker process of this node runs or starts it (the
// worker pool checks that, and makes processes that start meanwhile wait
// and compile it once). Then modules: one that no job on this node runs
// and no job that has not ended uses, and that is not the last alive copy
// of an uploaded module. Nothing used within moduleGrace goes.
func (a *Agent) collectOnce() {
	limit := cmp.Or(a.cfg.ModuleDiskLimit, DefaultModuleDiskLimit)
	modDir := filepath.Join(a.node.dataDir, "modules")
	mods, modBytes := filesIn(modDir, func(name string) bool { return strings.HasSuffix(name, ".wasm") })
	compiled, compiledBytes := a.node.compiledDirs()
	total := modBytes + compiledBytes
	if total <= limit {
		return
	}
	ans, err := a.control(a.agentCtx, controlRequest{Op: "modules"})
	if err != nil {
		return // without the records, nothing is known to be safe to remove
	}
	jobs, err := a.listJobs(a.agentCtx)
	if err != nil {
		return
	}
	records := map[string]controlstate.Module{}
	for _, m := range ans.Modules {
		records[m.Digest] = m
	}
	inUse := map[string]bool{}
	for _, j := range jobs {
		if !j.State.Ended() {
			inUse[j.Digest] = true
		}
	}
	grace := moduleGrace
	if g := a.gcGrace.Load(); g != 0 {
		grace = time.Duration(g) // tests
	}
	recent := time.Now().Add(-grace)
	for _, c := range compiled {
		if total <= limit || c.mod.After(recent) {
			break
		}
		switch {
		case c.digest == "":
			if os.RemoveAll(c.path) != nil {
				continue
			}
		case inUse[c.digest] || !a.node.pool.DropCompiled(a.node.modulePath(c.digest)):
			continue
		}
		total -= c.size
		a.log.Info("compiled code removed: its node's modules were past their disk limit", "module", cmp.Or(c.digest, filepath.Base(c.path)), "bytes", c.size)
	}
	for _, f := range mods {
		if total <= limit || f.mod.After(recent) {
			break // oldest first: the rest are more recent
		}
		digest := strings.TrimSuffix(filepath.Base(f.path), ".wasm")
		rec, recorded := records[digest]
		if inUse[digest] || (recorded && rec.Uploaded && !a.otherAliveHolder(rec)) {
			continue
		}
		if !a.node.removeModule(digest) {
			continue // a job here runs it
		}
		total -= f.size
		a.log.Info("module removed: its node's modules were past their disk limit", "module", digest[:12], "bytes", f.size)
		if recorded {
			drop := controlstate.DeleteModule{Digest: digest, Node: a.ID}
			if !rec.Uploaded && len(rec.Nodes) <= 1 {
				drop.Node = "" // the last copy of a job's module: the record goes too
			}
			_ = a.propose(a.agentCtx, controlstate.Command{DeleteModule: &drop})
		}
	}
}

// otherAliveHolder reports whether a node other than this one, alive,
// holds the module.
func (a *Agent) otherAliveHolder(m controlstate.Module) bool {
	for _, n := range m.Nodes {
		if mem, ok := a.member(n); ok && n != a.ID && mem.Status == membership.Alive {
			return true
		}
	}
	return false
}
