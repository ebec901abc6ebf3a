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
)

// DefaultModuleDiskLimit bounds the disk an agent's modules take before
// unused ones are removed.
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

// collectOnce removes modules, least recently used first, while their
// disk use is past the limit: a module that no job on this node runs and
// no job that has not ended uses, and that is not the last alive copy of
// an uploaded module. Nothing used within moduleGrace goes. Compiled
// code is not collected: its files cannot be told apart by use (reading
// one does not touch it), and removing code that processes are about to
// load makes each of them compile it again, at once.
func (a *Agent) collectOnce() {
	limit := cmp.Or(a.cfg.ModuleDiskLimit, DefaultModuleDiskLimit)
	modDir := filepath.Join(a.node.dataDir, "modules")
	mods, modBytes := filesIn(modDir, func(name string) bool { return strings.HasSuffix(name, ".wasm") })
	if modBytes <= limit {
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
	for _, f := range mods {
		if modBytes <= limit || f.mod.After(recent) {
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
		modBytes -= f.size
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
