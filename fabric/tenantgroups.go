//go:build linux

package fabric

import (
	"fmt"
	"sync"
	"time"

	"github.com/wasmfabric/fabric/internal/cgroups"
	"github.com/wasmfabric/fabric/internal/scheduler"
)

// Tenant control groups. Where the kernel offers cgroups, an agent puts
// each tenant's worker processes in a group of the tenant's
// (internal/cgroups), so that what a guest uses, not only what it
// declares, is bounded:
//
//   - memory: a named tenant's workers on the node together hold at most
//     its memory quota, or TenantMemory without one (half the node's
//     memory by default); past it the kernel kills one of its processes,
//     whose work fails as a crashed worker's does. The operator's are not
//     bounded.
//   - CPU: each group's weight follows the CPUs that the tenant's work
//     running on the node declared (1 + 100 per CPU), so work that
//     declared none spins only on what declared work leaves.

// Settings of Config.TenantCgroups.
const (
	CgroupsOff  = "off"  // no control groups
	CgroupsAuto = "auto" // where the kernel offers them
	CgroupsOn   = "on"   // required: the node does not start without
)

// tenantGroups is a node's control groups.
type tenantGroups struct {
	m          *cgroups.Manager
	defaultMem int64
	mu         sync.Mutex
	quotaMem   map[string]int64 // tenants' memory quotas, from the leader
}

// openTenantGroups opens the node's groups as cfg says: nil when off, or
// auto and the kernel offers none.
func openTenantGroups(cfg Config) (*tenantGroups, error) {
	mode := cfg.TenantCgroups
	if mode == "" || mode == CgroupsOff {
		return nil, nil
	}
	if mode != CgroupsAuto && mode != CgroupsOn {
		return nil, fmt.Errorf("fabric: tenant cgroups %q: want %s, %s or %s", mode, CgroupsAuto, CgroupsOn, CgroupsOff)
	}
	m, err := cgroups.Open(cgroups.AgentDir(cfg.NodeID))
	if err != nil {
		if mode == CgroupsAuto {
			fmt.Fprintf(cfg.Stderr, "fabric: no control groups for tenants (%v): a guest is held to its process's memory cap, not its tenant's\n", err)
			return nil, nil
		}
		return nil, fmt.Errorf("fabric: --tenant-cgroups=on: %w", err)
	}
	mem := cfg.TenantMemory
	if mem <= 0 {
		mem = cfg.Memory / 2
	}
	return &tenantGroups{m: m, defaultMem: mem}, nil
}

// memoryOf is a tenant's memory limit (0: none, the operator's).
func (g *tenantGroups) memoryOf(tenant string) int64 {
	if tenant == "" {
		return 0
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if q, ok := g.quotaMem[tenant]; ok && q >= 0 {
		return max(q, 16<<20) // a quota below a worker's own needs would only crash it
	}
	return g.defaultMem
}

// setQuotas records the tenants' memory quotas (negative: no bound).
func (g *tenantGroups) setQuotas(mem map[string]int64) {
	g.mu.Lock()
	g.quotaMem = mem
	g.mu.Unlock()
}

// place returns the function that puts a new worker process of tenant's
// in its group.
func (g *tenantGroups) place(tenant string) func(pid int) error {
	return func(pid int) error {
		grp, err := g.m.Group(tenant)
		if err != nil {
			return err
		}
		if err := grp.SetLimits(g.memoryOf(tenant), cgroups.DefaultWeight); err != nil {
			return err
		}
		return grp.Add(pid)
	}
}

// weigh sets each group's limits from what the tenants' work on the node
// declared now (cpu: LocalCPU).
func (g *tenantGroups) weigh(cpu map[string]int64) error {
	var errs []error
	for tenant, c := range cpu {
		grp, err := g.m.Group(tenant)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		w := 1 + uint64(c)*100/uint64(scheduler.Unit)
		if err := grp.SetLimits(g.memoryOf(tenant), w); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return errs[0]
	}
	return nil
}

// weighInterval is how often a node weighs its tenants' groups.
const weighInterval = 200 * time.Millisecond

// weighLoop weighs the node's groups until it closes.
func (n *Node) weighLoop() {
	defer n.wg.Done()
	t := time.NewTicker(weighInterval)
	defer t.Stop()
	failed := false
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		}
		n.mu.Lock()
		cpu := n.core.LocalCPU()
		n.mu.Unlock()
		if err := n.groups.weigh(cpu); err != nil && !failed {
			failed = true // once: the next ticks would say it again
			n.log.write(true, []byte("fabric: tenant control groups: "+err.Error()+"\n"))
		}
	}
}

// SetTenantMemoryQuotas gives the node its tenants' memory quotas (bytes;
// negative: no bound), which bound their control groups.
func (n *Node) SetTenantMemoryQuotas(mem map[string]int64) {
	if n.groups != nil {
		n.groups.setQuotas(mem)
	}
}

// TenantGroupUsage returns what a tenant's worker processes on the node
// use, from its control group; false when the node has none for it.
func (n *Node) TenantGroupUsage(tenant string) (cgroups.Usage, bool) {
	if n.groups == nil {
		return cgroups.Usage{}, false
	}
	grp, err := n.groups.m.Group(tenant)
	if err != nil {
		return cgroups.Usage{}, false
	}
	u, err := grp.Usage()
	return u, err == nil
}
