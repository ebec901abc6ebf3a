//go:build linux

package fabric

import (
	"context"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// tenantClient makes a tenant (with info's quota) and a user token of
// it, and returns a client with that token.
func tenantClient(t *testing.T, ctx context.Context, a *Agent, info TenantInfo) *Client {
	t.Helper()
	admin := a.Client(a.APIToken())
	if _, err := admin.CreateTenantWith(ctx, info); err != nil {
		t.Fatal(err)
	}
	nt, err := admin.CreateToken(ctx, TokenRequest{Tenant: info.Name, Role: "user"})
	if err != nil {
		t.Fatal(err)
	}
	return a.Client(nt.Token)
}

// waitUsageReport waits until a, alone, has reported its usage to itself
// since now: what the leader answers then holds the quotas set before.
func waitUsageReport(t *testing.T, a *Agent) {
	t.Helper()
	since := time.Now()
	waitFor(t, 10*time.Second, "a usage report since the quota", func() bool {
		a.quotas.mu.Lock()
		defer a.quotas.mu.Unlock()
		return a.quotas.nodes[a.ID].at.After(since)
	})
}

// groupsAgent starts an agent whose tenants' workers go in control
// groups; the test is skipped only where the kernel offers none.
func groupsAgent(t *testing.T) *Agent {
	t.Helper()
	a := startJobsAgent(t, func(c *AgentConfig) { c.Node.TenantCgroups = CgroupsAuto })
	if a.node.groups == nil {
		t.Skip("the kernel offers no cgroups here (see the agent's message)")
	}
	t.Logf("cgroups v2: %v", a.node.groups.m.V2())
	return a
}

// TestTenantCgroupMemory: six tasks that declare neither CPU nor memory
// cannot take more between them than their tenant's memory quota: the
// kernel kills their process past it, the tenant's job sees its tasks
// fail, and another tenant's tasks beside them hold what they ask.
func TestTenantCgroupMemory(t *testing.T) {
	a := groupsAgent(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	hog := tenantClient(t, ctx, a, TenantInfo{Name: "hog", MaxMemory: 192 << 20})
	other := tenantClient(t, ctx, a, TenantInfo{Name: "other"})
	waitUsageReport(t, a)
	waitFor(t, 10*time.Second, "the node has hog's memory quota", func() bool { return a.node.groups.memoryOf("hog") == 192<<20 })
	hostile := guestBytes(t, "internal/testguests/hostile")
	otherDone := make(chan string, 1)
	go func() {
		var out strings.Builder
		err := other.Submit(ctx, hostile, []string{"memhold", "2", "64", "3000"}, &out)
		otherDone <- fmt.Sprintf("%v\n%s", err, out.String())
	}()
	var out strings.Builder
	err := hog.Submit(ctx, hostile, []string{"memhold", "6", "64", "1500"}, &out)
	u, ok := a.node.TenantGroupUsage("hog")
	t.Logf("hog: %v %s; its group: %+v", err, strings.TrimSpace(out.String()), u)
	// The tasks run in the driver's process or in the job's other one:
	// the kernel kills the one that holds most, and the job fails, or
	// its driver sees its tasks fail.
	if err == nil && !regexp.MustCompile(`memhold: [0-5] of 6 held 64 MiB`).MatchString(out.String()) {
		t.Fatalf("six tasks of 64 MiB under a quota of 192 MiB:\n%s", out.String())
	}
	if err != nil && !strings.Contains(err.Error(), "killed") {
		t.Fatalf("hog's job: %v", err)
	}
	if !ok || u.Killed < 1 || u.Peak > 193<<20 { // the kernel may overshoot by a page or so
		t.Fatalf("hog's group: %+v", u)
	}
	if s := <-otherDone; !strings.HasPrefix(s, "<nil>") || !strings.Contains(s, "memhold: 2 of 2 held 64 MiB") {
		t.Fatalf("the other tenant, beside: %s", s)
	}
}

// TestTenantCgroupCPU: tasks that declare no CPU and spin take the CPU
// only from what declared work leaves: a one-CPU task beside three jobs
// of spinners of another tenant takes about as long as alone.
func TestTenantCgroupCPU(t *testing.T) {
	a := groupsAgent(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	spinner := tenantClient(t, ctx, a, TenantInfo{Name: "spinner"})
	worker := tenantClient(t, ctx, a, TenantInfo{Name: "worker"})
	hostile := guestBytes(t, "internal/testguests/hostile")
	work := func() time.Duration {
		t.Helper()
		var out strings.Builder
		if err := worker.Submit(ctx, hostile, []string{"work", "150000000"}, &out); err != nil {
			t.Fatalf("work: %v\n%s", err, out.String())
		}
		m := regexp.MustCompile(`work: (\d+) ns`).FindStringSubmatch(out.String())
		if m == nil {
			t.Fatalf("work's output:\n%s", out.String())
		}
		ns, _ := strconv.ParseInt(m[1], 10, 64)
		return time.Duration(ns)
	}
	// The best of two, alone and beside: other tests share the machine.
	alone := min(work(), work())
	spinCtx, stopSpinning := context.WithCancel(ctx)
	defer stopSpinning()
	for range 3 {
		go func() { _ = spinner.Submit(spinCtx, hostile, []string{"burn", "2", "30000"}, io.Discard) }()
	}
	waitFor(t, 30*time.Second, "six spinners run", func() bool {
		a.node.mu.Lock()
		defer a.node.mu.Unlock()
		return a.node.core.Stats().Tasks >= 9 // 3 drivers, 6 spinners
	})
	time.Sleep(2 * weighInterval)
	beside := min(work(), work())
	t.Logf("a one-CPU task alone %s, beside six spinners of no declared CPU %s (%.2fx)", alone.Round(time.Millisecond), beside.Round(time.Millisecond), float64(beside)/float64(alone))
	if beside > alone*3/2 {
		t.Errorf("a one-CPU task beside spinners of no declared CPU took %s, more than 1.5x its %s alone", beside, alone)
	}
}
