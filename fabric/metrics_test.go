//go:build linux

package fabric

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape reads an agent's /metrics with token, parsed by Prometheus's
// text parser.
func scrape(t *testing.T, ctx context.Context, a *Agent, token string) (map[string]*dto.MetricFamily, int) {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+a.HTTPAddr()+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := a.Client("").httpClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil, resp.StatusCode
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}
	return fams, resp.StatusCode
}

// value is the metric's value with labels (name=value pairs), summed
// over the series that match; histograms give their count.
func value(fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	var v float64
	f := fams[name]
	if f == nil {
		return -1
	}
next:
	for _, m := range f.Metric {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, l := range m.Label {
				found = found || l.GetName() == labels[i] && l.GetValue() == labels[i+1]
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			v += m.Counter.GetValue()
		case m.Gauge != nil:
			v += m.Gauge.GetValue()
		case m.Histogram != nil:
			v += float64(m.Histogram.GetSampleCount())
		}
	}
	return v
}

// TestMetrics: /metrics parses with Prometheus's parser, takes the
// cluster's admin token (a tenant's is refused), and its counters move as
// a job runs.
func TestMetrics(t *testing.T) {
	a := startJobsAgent(t, nil)
	b := joinAgent(t, a)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	acme := tenantClient(t, ctx, a, TenantInfo{Name: "acme"})
	if _, code := scrape(t, ctx, a, acme.Token); code != http.StatusForbidden {
		t.Fatalf("a tenant's token: %d, want 403", code)
	}
	// The counters of both nodes, added up: a task runs on either.
	both := func() map[string]*dto.MetricFamily {
		fa, _ := scrape(t, ctx, a, a.APIToken())
		fb, _ := scrape(t, ctx, b, a.APIToken())
		for name, f := range fb {
			if fa[name] == nil {
				fa[name] = f
			} else {
				fa[name].Metric = append(fa[name].Metric, f.Metric...)
			}
		}
		return fa
	}
	before := both()
	hostile := guestBytes(t, "internal/testguests/hostile")
	if _, err := acme.SubmitWith(ctx, hostile, []string{"overlap", "4", "10"}, SubmitOptions{}, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	if _, err := acme.SubmitWith(ctx, hostile, []string{"panic"}, SubmitOptions{}, io.Discard, io.Discard); err != nil {
		t.Fatal(err) // its task fails; the driver prints the error
	}
	// A trap (the stack's limit), a timeout, and values made on both
	// nodes got by the driver: object transfers.
	for _, args := range [][]string{{"recursion"}, {"timeout"}, {"spreadbytes", "4", "2"}} {
		if _, err := acme.SubmitWith(ctx, hostile, args, SubmitOptions{}, io.Discard, io.Discard); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
	}
	after := both()
	for _, c := range []struct {
		name   string
		labels []string
		more   float64 // at least this much more after
	}{
		{"fabric_tasks_ended_total", []string{"result", "finished"}, 4}, // the four tasks, owned here wherever they ran
		{"fabric_tasks_failed_total", []string{"error_type", "task"}, 1},
		{"fabric_task_scheduling_seconds", nil, 1},
		{"fabric_sandbox_instantiations_total", nil, 1},
		{"fabric_peer_messages_total", []string{"event", "sent"}, 1},
		{"fabric_tasks_failed_total", []string{"error_type", "timeout"}, 1},
		{"fabric_sandbox_failures_total", []string{"kind", "app"}, 1},  // panicky
		{"fabric_sandbox_failures_total", []string{"kind", "trap"}, 1}, // recursion
		{"fabric_object_transfers_total", []string{"direction", "in", "result", "ok"}, 1},
		{"fabric_object_transfer_bytes_total", []string{"direction", "in"}, 2 << 20},
		{"fabric_object_transfer_wire_bytes_total", nil, 1},
	} {
		b, af := value(before, c.name, c.labels...), value(after, c.name, c.labels...)
		if af < 0 || af-max(b, 0) < c.more {
			t.Errorf("%s%v: %v before, %v after the jobs; want at least %v more", c.name, c.labels, b, af, c.more)
		}
	}
	for _, name := range []string{"fabric_resources", "fabric_object_store_bytes", "fabric_workers", "fabric_cluster_members", "go_goroutines", "process_resident_memory_bytes"} {
		if _, ok := after[name]; !ok {
			t.Errorf("no %s", name)
		}
	}
	if v := value(after, "fabric_cluster_members", "status", "alive"); v != 4 { // two, as each node sees them
		t.Errorf("alive members: %v", v)
	}
	gossip := 0
	if testing.Verbose() {
		for name := range after {
			if strings.HasPrefix(name, "fabric_") {
				t.Logf("metric %s", name)
			}
		}
	}
	for name := range after {
		if strings.HasPrefix(name, "fabric_memberlist_") || strings.HasPrefix(name, "fabric_serf_") {
			gossip++
		}
	}
	if gossip == 0 {
		t.Error("no serf or memberlist metrics")
	}
}
