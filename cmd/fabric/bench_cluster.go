//go:build linux

package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
	"regexp"
	"runtime"
	"runtime/pprof"
	"strconv"
	"sync"
	"time"

	"github.com/wasmfabric/fabric/fabric"
	"github.com/wasmfabric/fabric/internal/membership"
	"github.com/wasmfabric/fabric/internal/secrets"
	"github.com/wasmfabric/fabric/internal/transport"
)

// Rows of the cluster part of `fabric bench`: objects between agents on
// loopback, against raw quic-go and TCP in the same run.
var clusterRows = []string{
	"baseline_quic_stream_gigabytes", "baseline_tcp_gigabytes",
	"object_transfer_gigabytes", "object_transfer_compressible_gigabytes", "object_broadcast_1gib_3_nodes",
	"single_client_tasks_async_spilled",
}

func init() {
	baselineOf["object_transfer_gigabytes"] = "baseline_quic_stream_gigabytes"
	baselineOf["object_transfer_compressible_gigabytes"] = "baseline_quic_stream_gigabytes"
	baselineOf["object_broadcast_1gib_3_nodes"] = "baseline_quic_stream_gigabytes"
	// The same tasks, run on the driver's node, in the same run.
	baselineOf["single_client_tasks_async_spilled"] = "single_client_tasks_async"
}

const transferSize = 256 << 20

func gbps(size int64, ds []time.Duration) benchResult {
	xs := make([]float64, len(ds))
	for i, d := range ds {
		xs[i] = float64(size) / d.Seconds() / 1e9
	}
	m, sd := meanSD(xs)
	return benchResult{Value: m, SD: &sd, Unit: "GB/s", Runs: len(ds)}
}

func wantsAny(re *regexp.Regexp, names ...string) bool {
	for _, n := range names {
		if re.MatchString(n) || anyMatchUses(re, n) {
			return true
		}
	}
	return false
}

// clusterResults starts agents in this process, on loopback, and times
// object transfers between them, and tasks sent from one to the other
// (wasm is the bench driver).
func clusterResults(ctx context.Context, re *regexp.Regexp, o benchOptions, wasm []byte, stderr io.Writer) ([]benchResult, error) {
	if !wantsAny(re, clusterRows...) {
		return nil, nil
	}
	var out []benchResult
	add := func(name string, r benchResult) {
		if re.MatchString(name) || anyMatchUses(re, name) {
			r.Name = name
			out = append(out, r)
		}
	}
	const trials = 3
	c, err := secrets.Create()
	if err != nil {
		return nil, err
	}
	cert, err := c.NodeCertificate("bench", []string{"127.0.0.1"}, false, time.Hour)
	if err != nil {
		return nil, err
	}
	qs, err := transport.MeasureQUIC(c.TLSConfig(cert, secrets.TLSOptions{}), transferSize, trials)
	if err != nil {
		return nil, err
	}
	add("baseline_quic_stream_gigabytes", gbps(transferSize, qs))
	ts, err := transport.MeasureTCP(transferSize, trials)
	if err != nil {
		return nil, err
	}
	add("baseline_tcp_gigabytes", gbps(transferSize, ts))

	broadcast := wantsAny(re, "object_broadcast_1gib_3_nodes")
	n := 2
	if broadcast {
		n = 4
	}
	agents := make([]*fabric.Agent, 0, n)
	defer func() {
		for _, a := range agents {
			_ = a.Close()
		}
	}()
	for i := range n {
		dir, err := os.MkdirTemp("", "fabric-bench-agent")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		cfg := fabric.AgentConfig{DataDir: dir, GossipAddr: "127.0.0.1:0", QUICAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
			Timing: membership.Fast,
			// Each arena holds the 1 GiB broadcast object; pages are only
			// used when touched.
			Node: fabric.Config{NumCPUs: 1, ObjectStoreMemory: 1280 << 20, Stdout: io.Discard, Stderr: stderr}}
		if i > 0 {
			cfg.Join = []string{agents[0].GossipAddr()}
			if cfg.Token, _, err = agents[0].CreateJoinToken(ctx, fabric.JoinTokenOptions{}); err != nil {
				return nil, err
			}
		}
		if i == 1 { // the node spilled tasks go to, with the machine's CPUs as in single_client_tasks_async
			cfg.Labels = map[string]string{"bench": "spill"}
			cfg.Node.NumCPUs = float64(runtime.NumCPU())
		}
		a, err := fabric.StartAgent(cfg)
		if err != nil {
			return nil, err
		}
		agents = append(agents, a)
	}
	src := agents[0]
	deadline := time.Now().Add(10 * time.Second)
	for (len(agents[n-1].Members().Members()) < n || agents[0].Node().NodeCount() < n) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	pull := func(to *fabric.Agent, data []byte, times int) ([]time.Duration, error) {
		id, err := src.Node().PutObject(data)
		if err != nil {
			return nil, err
		}
		defer src.Node().DeleteObject(id)
		var ds []time.Duration
		for range times {
			start := time.Now()
			st, err := to.PullObject(ctx, src.ID, id, transport.PullOptions{})
			if err != nil {
				return nil, err
			}
			ds = append(ds, time.Since(start))
			to.Node().DeleteObject(id)
			if st.Size != int64(len(data)) {
				return nil, fmt.Errorf("pulled %d bytes of %d", st.Size, len(data))
			}
		}
		return ds, nil
	}
	random := make([]byte, transferSize)
	for i := 0; i+8 <= len(random); i += 8 {
		binary.LittleEndian.PutUint64(random[i:], uint64(i)*0x9E3779B97F4A7C15^uint64(i>>3)*0xBF58476D1CE4E5B9)
	}
	if wantsAny(re, "object_transfer_gigabytes") {
		ds, err := pull(agents[1], random, trials)
		if err != nil {
			return nil, err
		}
		add("object_transfer_gigabytes", gbps(transferSize, ds))
	}
	if wantsAny(re, "object_transfer_compressible_gigabytes") {
		// A float64 array as the SDK encodes it: an RFC 8746 tag around
		// little-endian elements, here a smooth series (sensor-like data).
		arr := make([]byte, 7, transferSize+7)
		arr[0], arr[1], arr[2] = 0xd8, 86, 0x5a
		binary.BigEndian.PutUint32(arr[3:], transferSize)
		for i := range transferSize / 8 {
			arr = binary.LittleEndian.AppendUint64(arr, math.Float64bits(math.Round(math.Sin(float64(i)/1000)*1e4)/1e4))
		}
		ds, err := pull(agents[1], arr, trials)
		if err != nil {
			return nil, err
		}
		add("object_transfer_compressible_gigabytes", gbps(int64(len(arr)), ds))
	}
	if wantsAny(re, "single_client_tasks_async_spilled") {
		lines := &benchLineWriter{onResult: func(r benchResult) { add(r.Name, r) }}
		args := []string{"^single_client_tasks_async_spilled$", strconv.FormatFloat(o.trial.Seconds(), 'f', -1, 64),
			strconv.FormatFloat(o.warmup.Seconds(), 'f', -1, 64), strconv.Itoa(o.trials), strconv.Itoa(runtime.NumCPU()), "spill"}
		if o.spillProf != "" && os.Getenv("FABRIC_CPUPROFILE") == "" { // one profile at a time
			f, err := os.Create(o.spillProf)
			if err != nil {
				return nil, err
			}
			defer f.Close()
			if err := pprof.StartCPUProfile(f); err != nil {
				return nil, err
			}
		}
		err := agents[0].Node().RunJobWith(ctx, wasm, args, fabric.JobOptions{Stdout: lines, Stderr: stderr})
		if o.spillProf != "" && os.Getenv("FABRIC_CPUPROFILE") == "" {
			pprof.StopCPUProfile()
			fmt.Fprint(stderr, agents[0].DebugState(), agents[1].DebugState())
		}
		lines.flush()
		if err != nil {
			return nil, fmt.Errorf("spilled tasks: %w", err)
		}
	}
	if broadcast {
		big := make([]byte, 1<<30)
		for i := 0; i < len(big); i += len(random) {
			copy(big[i:], random)
		}
		id, err := src.Node().PutObject(big)
		if err != nil {
			return nil, err
		}
		start := time.Now()
		var wg sync.WaitGroup
		errs := make(chan error, 3)
		for _, to := range agents[1:] {
			wg.Add(1)
			go func() {
				defer wg.Done()
				st, err := to.PullObject(ctx, src.ID, id, transport.PullOptions{})
				if err == nil && st.Size != int64(len(big)) {
					err = fmt.Errorf("pulled %d bytes of %d", st.Size, len(big))
				}
				to.Node().DeleteObject(id)
				errs <- err
			}()
		}
		wg.Wait()
		close(errs)
		d := time.Since(start)
		src.Node().DeleteObject(id)
		for err := range errs {
			if err != nil {
				return nil, err
			}
		}
		add("object_broadcast_1gib_3_nodes", gbps(3<<30, []time.Duration{d}))
	}
	return out, nil
}
