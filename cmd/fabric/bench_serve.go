//go:build linux

package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wasmfabric/fabric/fabric"
	"github.com/wasmfabric/fabric/internal/gcpace"
	"github.com/wasmfabric/fabric/internal/membership"
)

// Serve's benchmarks: an Echo deployment behind the ingress of an agent
// in this process, against a plain net/http handler doing the same (the
// request's body written back) in the same run, driven by the same
// client: concurrent keep-alive connections posting small bodies.
//
//   - baseline_http_echo_rps, serve_echo_rps: requests answered per
//     second at full load.
//   - serve_latency_p50_added_ms, serve_latency_p99_added_ms: at half
//     the baseline's rate, the deployment's latency less net/http's.
//   - serve_c_echo_rps, serve_c_latency_*: the same with the echo
//     written in C (cactors' Echo): the ingress's own cost, with little
//     of the guest's.
//   - serve_cold_start_go_ms, serve_cold_start_c_ms: a request to a
//     deployment scaled to zero, answered (the median of a few; each
//     time the deployment went back to zero first), against
//     baseline_http_p50_ms, net/http's median latency at half load. The
//     first such request, which also starts the worker process and
//     loads the module, is printed beside them.

var serveRows = []string{"baseline_http_echo_rps", "serve_echo_rps", "serve_latency_p50_added_ms", "serve_latency_p99_added_ms",
	"serve_c_echo_rps", "serve_c_latency_p50_added_ms", "serve_c_latency_p99_added_ms", "baseline_http_p50_ms",
	"serve_cold_start_go_ms", "serve_cold_start_c_ms"}

func init() {
	baselineOf["serve_echo_rps"] = "baseline_http_echo_rps"
	baselineOf["serve_c_echo_rps"] = "baseline_http_echo_rps"
	baselineOf["serve_cold_start_go_ms"] = "baseline_http_p50_ms"
	baselineOf["serve_cold_start_c_ms"] = "baseline_http_p50_ms"
}

const serveClients = 32

// loadResult is what a load run measured.
type loadResult struct {
	rps      float64
	lat      []time.Duration
	failures int64
}

// drive posts to url from serveClients connections for d; rate > 0
// paces the requests to that many per second in all.
func drive(ctx context.Context, url string, d time.Duration, rate float64) (loadResult, error) {
	tr := &http.Transport{MaxIdleConnsPerHost: serveClients, MaxConnsPerHost: serveClients, DisableCompression: true}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	body := []byte(`{"input": 42}`)
	var (
		n, fails atomic.Int64
		mu       sync.Mutex
		lat      []time.Duration
		firstErr error
		wg       sync.WaitGroup
	)
	start := time.Now()
	end := start.Add(d)
	var tick <-chan time.Time
	if rate > 0 {
		t := time.NewTicker(time.Duration(float64(time.Second) / rate))
		defer t.Stop()
		tick = t.C
	}
	for range serveClients {
		wg.Go(func() {
			var mine []time.Duration
			for time.Now().Before(end) && ctx.Err() == nil {
				if tick != nil {
					select {
					case <-tick:
					case <-time.After(time.Until(end)):
						continue
					}
				}
				t0 := time.Now()
				resp, err := hc.Post(url, "application/json", bytes.NewReader(body))
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if err == nil && resp.StatusCode != http.StatusOK {
						err = fmt.Errorf("status %s", resp.Status)
					}
				}
				if err != nil {
					fails.Add(1)
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					continue
				}
				mine = append(mine, time.Since(t0))
				n.Add(1)
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	r := loadResult{rps: float64(n.Load()) / time.Since(start).Seconds(), lat: lat, failures: fails.Load()}
	if r.failures > int64(len(lat))/100 {
		return r, fmt.Errorf("%d of %d requests failed, the first: %v", r.failures, r.failures+int64(len(lat)), firstErr)
	}
	return r, nil
}

func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(p*float64(len(s))+0.5) - 1
	return s[max(0, min(i, len(s)-1))]
}

// serveResults measures the ingress against net/http.
func serveResults(ctx context.Context, re *regexp.Regexp, o benchOptions, stderr io.Writer) ([]benchResult, error) {
	if !wantsAny(re, serveRows...) {
		return nil, nil
	}
	// The agent in this process runs at the pace `fabric agent` sets
	// (net/http and the client, in the same process, at it too).
	defer gcpace.Start(gcpace.DefaultHeadroom)()
	guest := besideBinary(filepath.Join("testguests", "serve.wasm"))
	wasm, err := os.ReadFile(guest)
	if err != nil {
		return nil, fmt.Errorf("read the serve guest: %w (build it with `make guests`)", err)
	}
	// The baseline: net/http echoing the body.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	plain := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write(b)
	})}
	go func() { _ = plain.Serve(ln) }()
	defer plain.Close()

	dir, err := os.MkdirTemp("", "fabric-bench-serve")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	a, err := fabric.StartAgent(fabric.AgentConfig{DataDir: dir, GossipAddr: "127.0.0.1:0", QUICAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		ServeAddr: "127.0.0.1:0", Timing: membership.Fast,
		Node: fabric.Config{NumCPUs: float64(runtime.NumCPU()), ObjectStoreMemory: 256 << 20, Stdout: io.Discard, Stderr: stderr}})
	if err != nil {
		return nil, err
	}
	defer a.Close()
	admin := a.Client(a.APIToken())
	mod, err := admin.Upload(ctx, bytes.NewReader(wasm), "serve.wasm")
	if err != nil {
		return nil, err
	}
	cwasm, err := os.ReadFile(besideBinary(filepath.Join("testguests", "cactors.wasm")))
	if err != nil {
		return nil, fmt.Errorf("read the C guest: %w (build it with `make guests`)", err)
	}
	cmod, err := admin.Upload(ctx, bytes.NewReader(cwasm), "cactors.wasm")
	if err != nil {
		return nil, err
	}
	replicas := runtime.NumCPU()
	if _, err := admin.Deploy(ctx, fabric.DeploymentSpec{Name: "echo", Module: mod.Digest, Class: "BodyEcho", RoutePrefix: "/echo",
		NumReplicas: &replicas, MaxOngoingRequests: 100, Public: true}); err != nil {
		return nil, err
	}
	if _, err := admin.Deploy(ctx, fabric.DeploymentSpec{Name: "cecho", Module: cmod.Digest, Class: "Echo", RoutePrefix: "/cecho",
		NumReplicas: &replicas, MaxOngoingRequests: 100, Public: true}); err != nil {
		return nil, err
	}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(50 * time.Millisecond) {
		ds, err := admin.Deployments(ctx)
		if err == nil && len(ds) == 2 && ds[0].Status == "HEALTHY" && ds[1].Status == "HEALTHY" {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("the echo deployments were not healthy within a minute: %+v, %v", ds, err)
		}
	}
	plainURL, serveURL, cURL := "http://"+ln.Addr().String()+"/echo", "http://"+a.IngressAddr()+"/echo", "http://"+a.IngressAddr()+"/cecho"
	trial := max(o.trial, time.Second)
	// Warm both up, then alternate the trials.
	for _, u := range []string{plainURL, serveURL, cURL} {
		if resp, err := http.Post(u, "text/plain", strings.NewReader("probe")); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return nil, fmt.Errorf("%s answers %s: %s", u, resp.Status, b)
			}
		}
		if _, err := drive(ctx, u, o.warmup, 0); err != nil {
			return nil, fmt.Errorf("warm-up of %s: %w", u, err)
		}
	}
	var plainRPS, serveRPS, cRPS []float64
	for range max(o.trials, 1) {
		p, err := drive(ctx, plainURL, trial, 0)
		if err != nil {
			return nil, fmt.Errorf("net/http: %w", err)
		}
		var stopProf func()
		if path := os.Getenv("FABRIC_SERVE_CPUPROFILE"); path != "" { // for the work on the ingress's path
			if f, err := os.Create(path); err == nil && pprof.StartCPUProfile(f) == nil {
				stopProf = func() { pprof.StopCPUProfile(); f.Close() }
			}
		}
		s, err := drive(ctx, serveURL, trial, 0)
		if stopProf != nil {
			stopProf()
		}
		if err != nil {
			return nil, fmt.Errorf("the echo deployment: %w", err)
		}
		c, err := drive(ctx, cURL, trial, 0)
		if err != nil {
			return nil, fmt.Errorf("the C echo deployment: %w", err)
		}
		plainRPS, serveRPS, cRPS = append(plainRPS, p.rps), append(serveRPS, s.rps), append(cRPS, c.rps)
	}
	pm, psd := meanSD(plainRPS)
	sm, ssd := meanSD(serveRPS)
	cm, csd := meanSD(cRPS)
	out := []benchResult{
		{Name: "baseline_http_echo_rps", Value: pm, SD: &psd, Unit: "/s", Runs: len(plainRPS)},
		{Name: "serve_echo_rps", Value: sm, SD: &ssd, Unit: "/s", Runs: len(serveRPS)},
		{Name: "serve_c_echo_rps", Value: cm, SD: &csd, Unit: "/s", Runs: len(cRPS)},
	}
	// Latency at half the baseline's rate... or the deployment's full
	// rate, if that is lower: what is added at a load both sustain.
	rate := min(pm, sm) / 2
	p, err := drive(ctx, plainURL, trial, rate)
	if err != nil {
		return nil, fmt.Errorf("net/http at %.0f/s: %w", rate, err)
	}
	s, err := drive(ctx, serveURL, trial, rate)
	if err != nil {
		return nil, fmt.Errorf("the echo deployment at %.0f/s: %w", rate, err)
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	fmt.Fprintf(stderr, "  serve at %.0f/s: net/http p50 %.3f p99 %.3f ms, the deployment p50 %.3f p99 %.3f ms\n", rate,
		ms(percentile(p.lat, 0.5)), ms(percentile(p.lat, 0.99)), ms(percentile(s.lat, 0.5)), ms(percentile(s.lat, 0.99)))
	out = append(out,
		benchResult{Name: "baseline_http_p50_ms", Value: ms(percentile(p.lat, 0.5)), Unit: "ms", Runs: len(p.lat)},
		benchResult{Name: "serve_latency_p50_added_ms", Value: ms(percentile(s.lat, 0.5) - percentile(p.lat, 0.5)), Unit: "ms", Runs: len(s.lat)},
		benchResult{Name: "serve_latency_p99_added_ms", Value: ms(percentile(s.lat, 0.99) - percentile(p.lat, 0.99)), Unit: "ms", Runs: len(s.lat)})
	if wantsAny(re, "serve_c_latency_p50_added_ms", "serve_c_latency_p99_added_ms") {
		crate := min(pm, cm) / 2
		p, err := drive(ctx, plainURL, trial, crate)
		if err != nil {
			return nil, fmt.Errorf("net/http at %.0f/s: %w", crate, err)
		}
		c, err := drive(ctx, cURL, trial, crate)
		if err != nil {
			return nil, fmt.Errorf("the C echo deployment at %.0f/s: %w", crate, err)
		}
		fmt.Fprintf(stderr, "  serve (C) at %.0f/s: net/http p50 %.3f p99 %.3f ms, the deployment p50 %.3f p99 %.3f ms\n", crate,
			ms(percentile(p.lat, 0.5)), ms(percentile(p.lat, 0.99)), ms(percentile(c.lat, 0.5)), ms(percentile(c.lat, 0.99)))
		out = append(out,
			benchResult{Name: "serve_c_latency_p50_added_ms", Value: ms(percentile(c.lat, 0.5) - percentile(p.lat, 0.5)), Unit: "ms", Runs: len(c.lat)},
			benchResult{Name: "serve_c_latency_p99_added_ms", Value: ms(percentile(c.lat, 0.99) - percentile(p.lat, 0.99)), Unit: "ms", Runs: len(c.lat)})
	}
	if wantsAny(re, "serve_cold_start_go_ms", "serve_cold_start_c_ms") {
		for _, g := range []struct{ row, name, module, class string }{
			{"serve_cold_start_go_ms", "coldgo", mod.Digest, "BodyEcho"}, {"serve_cold_start_c_ms", "coldc", cmod.Digest, "Echo"}} {
			ms, first, err := coldStarts(ctx, admin, a.IngressAddr(), g.name, g.module, g.class, max(o.trials, 1)+1)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", g.row, err)
			}
			fmt.Fprintf(stderr, "  %s: %.2f ms at the median of %d; the first, which also started the worker process: %.1f ms\n", g.row, ms, max(o.trials, 1)+1, first)
			out = append(out, benchResult{Name: g.row, Value: ms, Unit: "ms", Runs: max(o.trials, 1) + 1})
		}
	}
	var kept []benchResult
	for _, r := range out {
		if re.MatchString(r.Name) || anyMatchUses(re, r.Name) || strings.HasPrefix(r.Name, "baseline") && wantsAny(re, serveRows...) {
			kept = append(kept, r)
		}
	}
	return kept, nil
}

// coldStarts deploys class of module scaled to zero and times n+1
// requests, each once the deployment is back at zero: it returns the
// median of the last n, in milliseconds, and the first (which starts
// the deployment's worker process and loads its module).
func coldStarts(ctx context.Context, admin *fabric.Client, ingress, name, module, class string, n int) (float64, float64, error) {
	down := 0.05
	if _, err := admin.Deploy(ctx, fabric.DeploymentSpec{Name: name, Module: module, Class: class, RoutePrefix: "/" + name, Public: true,
		AutoscalingConfig: &fabric.AutoscalingConfig{MinReplicas: 0, MaxReplicas: 1, DownscaleDelayS: &down}}); err != nil {
		return 0, 0, err
	}
	defer func() { _ = admin.DeleteDeployment(context.Background(), name) }()
	url := "http://" + ingress + "/" + name
	var times []float64
	for i := range n + 1 {
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			ds, err := admin.Deployments(ctx)
			if err != nil {
				return 0, 0, err
			}
			zero := false
			for _, d := range ds {
				if d.Name == name {
					zero = d.NumReplicas == 0 && d.Running == 0 && d.Starting == 0
				}
			}
			if zero {
				break
			}
			if time.Now().After(deadline) {
				return 0, 0, fmt.Errorf("deployment %s did not scale to zero within 30 s (request %d)", name, i)
			}
		}
		start := time.Now()
		resp, err := http.Post(url, "text/plain", strings.NewReader("cold"))
		if err != nil {
			return 0, 0, err
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		took := time.Since(start)
		if err != nil || resp.StatusCode != http.StatusOK || string(body) != "cold" {
			return 0, 0, fmt.Errorf("request %d at zero replicas: %s %q, %v", i, resp.Status, body, err)
		}
		times = append(times, float64(took.Microseconds())/1000)
	}
	rest := slices.Clone(times[1:])
	slices.Sort(rest)
	return rest[len(rest)/2], times[0], nil
}
