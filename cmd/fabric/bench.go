//go:build linux

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/wasmfabric/fabric/fabric"
	"github.com/wasmfabric/fabric/internal/sandbox"
)

// rayFigures are Ray 2.48's published microbenchmarks on one m5.16xlarge
// (64 vCPU), the figures `fabric bench` prints beside its own.
var rayFigures = map[string]float64{
	"single_client_tasks_sync":       981,
	"single_client_tasks_async":      8041,
	"multi_client_tasks_async":       21230,
	"1_1_actor_calls_sync":           2012,
	"1_1_actor_calls_async":          8664,
	"1_n_actor_calls_async":          8038,
	"n_n_actor_calls_async":          27376,
	"single_client_put_calls":        5173,
	"single_client_get_calls":        10620,
	"single_client_put_gigabytes":    19.9,
	"single_client_wait_1k_refs":     5.08,
	"placement_group_create/removal": 765,
}

// baselineOf names the same-run baseline each figure is compared with.
var baselineOf = map[string]string{
	"single_client_tasks_sync":            "baseline_goroutine_pool_sync",
	"single_client_tasks_async":           "baseline_goroutine_pool_async",
	"multi_client_tasks_async":            "baseline_goroutine_pool_async",
	"1_1_actor_calls_sync":                "baseline_goroutine_pool_sync",
	"1_1_actor_calls_async":               "baseline_goroutine_pool_async",
	"1_1_async_actor_calls_sync":          "baseline_goroutine_pool_sync",
	"1_1_async_actor_calls_async":         "baseline_goroutine_pool_async",
	"1_n_actor_calls_async":               "baseline_goroutine_pool_async",
	"n_n_actor_calls_async":               "baseline_goroutine_pool_async",
	"single_client_put_calls":             "baseline_goroutine_pool_sync",
	"single_client_get_calls":             "baseline_goroutine_pool_sync",
	"single_client_put_gigabytes":         "baseline_memcpy_gigabytes",
	"placement_group_create/removal":      "baseline_goroutine_pool_sync",
	"matmul_256_go_guest":                 "matmul_256_go_guest_uninterruptible",
	"matmul_256_c_guest":                  "matmul_256_c_guest_uninterruptible",
	"matmul_256_go_guest_uninterruptible": "matmul_256_native",
	"matmul_256_c_guest_uninterruptible":  "matmul_256_native",
	"cold_start_go_guest":                 "baseline_wazero_call",
	"cold_start_c_guest":                  "baseline_wazero_call",
	"actor_creation_go_guest":             "baseline_goroutine_pool_sync",
	"actor_creation_c_guest":              "baseline_goroutine_pool_sync",
	"parked_go_task_memory":               "go_guest_instance_memory",
}

// benchResult is one row of `fabric bench --json`.
type benchResult struct {
	Name     string   `json:"name"`
	Value    float64  `json:"value"`
	Unit     string   `json:"unit"`
	SD       *float64 `json:"sd,omitempty"`
	Ray      *float64 `json:"ray,omitempty"`
	Ratio    *float64 `json:"ratio,omitempty"` // value / Ray's figure (for times: Ray's / ours)
	Baseline string   `json:"baseline,omitempty"`
	Runs     int      `json:"runs,omitempty"`
}

type benchOptions struct {
	spillProf   string // a CPU profile of single_client_tasks_async_spilled
	filter      string
	jsonOut     bool
	module      string
	cModule     string
	trial       time.Duration
	warmup      time.Duration
	trials      int
	updateDoc   string
	storeMemory string
	check       string
	cMatmul     string
	cActors     string
}

func newBenchCmd() *cobra.Command {
	var o benchOptions
	cmd := &cobra.Command{
		Use:   "bench [--filter REGEX] [--json]",
		Short: "Run Ray's microbenchmarks on an embedded node, beside Ray's figures and same-run baselines",
		Long: `Bench runs Fabric's equivalents of Ray's microbenchmarks (ray_perf.py), with
Ray's names and definitions, driven by a guest module as Ray's are driven by
a Python driver: a warm-up, then trials of at least --trial each, reported
as mean ± standard deviation. Beside each figure it prints Ray 2.48's figure
on a 64-vCPU m5.16xlarge and a baseline measured in the same run: a native
goroutine pool doing the same no-op work, memcpy bandwidth, or a bare call
into a sandbox. It also measures cold starts of a Go and a C guest, and a
256x256 matmul natively, in a Go guest and in a C guest, and the state API
at scale: the p99 of the dashboard's pages and of the list commands against
two agents holding 10,000 actors and 100,000 finished tasks (target: under
500 ms; --check fails past it).`,
		Example: "  fabric bench\n  fabric bench --filter 'tasks' --json\n  make bench   # also rewrites the table in docs/PERFORMANCE.md",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runBench(cmd.Context(), o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.spillProf, "cpuprofile-spilled", "", "write a CPU profile of the two agents while single_client_tasks_async_spilled runs to this file, and print their peer links' counters")
	f.StringVar(&o.filter, "filter", ".", "run only the benchmarks whose name matches this regular expression")
	f.BoolVar(&o.jsonOut, "json", false, "print one JSON array of {name, value, unit, sd, ray, ratio}")
	f.StringVar(&o.module, "module", "", "the driver module (default: bin/testguests/raybench.wasm beside this binary)")
	f.StringVar(&o.cModule, "c-module", "", "a C guest for the C cold start (default: bin/examples/c_add.wasm beside this binary)")
	f.DurationVar(&o.trial, "trial", 2*time.Second, "minimum duration of one trial")
	f.DurationVar(&o.warmup, "warmup", time.Second, "warm-up before the trials")
	f.IntVar(&o.trials, "trials", 4, "number of trials")
	f.StringVar(&o.updateDoc, "update-doc", "", "rewrite the table between the bench markers of this Markdown file")
	f.StringVar(&o.storeMemory, "object-store-memory", "2GiB", "size of the node's object arena")
	f.StringVar(&o.cMatmul, "c-matmul-module", "", "the C guest with bench_matmul (default: bin/testguests/cmatmul.wasm beside this binary)")
	f.StringVar(&o.cActors, "c-actors-module", "", "the C guest with the Counter actor (default: bin/testguests/cactors.wasm beside this binary)")
	f.StringVar(&o.check, "check", "", "fail when a figure, as a ratio to its same-run baseline, falls below the floor this JSON file gives it")
	return cmd
}

// besideBinary finds a file relative to the directory of this executable's
// parent (bin/fabric -> bin/REL).
func besideBinary(rel string) string {
	exe, err := os.Executable()
	if err != nil {
		return rel
	}
	return filepath.Join(filepath.Dir(exe), rel)
}

func runBench(ctx context.Context, o benchOptions, stdout, stderr io.Writer) error {
	if ctx == nil {
		ctx = context.Background()
	}
	re, err := regexp.Compile(o.filter)
	if err != nil {
		return fmt.Errorf("--filter: %w", err)
	}
	if o.module == "" {
		o.module = besideBinary(filepath.Join("testguests", "raybench.wasm"))
	}
	if o.cModule == "" {
		o.cModule = besideBinary(filepath.Join("examples", "c_add.wasm"))
	}
	wasm, err := os.ReadFile(o.module)
	if err != nil {
		return fmt.Errorf("read the bench driver: %w (build it with `make guests`, or pass --module)", err)
	}
	store, err := ParseSize(o.storeMemory)
	if err != nil {
		return fmt.Errorf("--object-store-memory: %w", err)
	}
	cpus := runtime.NumCPU()
	progress := func(r benchResult) {
		if !o.jsonOut {
			return
		}
		fmt.Fprintf(stderr, "  %-32s %s\n", r.Name, formatValue(r))
	}
	results := []benchResult{} // --json prints [] when nothing matches
	add := func(r benchResult) {
		results = append(results, r)
		progress(r)
	}
	if !o.jsonOut {
		fmt.Fprintf(stderr, "fabric bench: %d CPUs, trials of %s after %s of warm-up, %d trials\n", cpus, o.trial, o.warmup, o.trials)
	}

	// Same-run baselines first, on a quiet machine.
	for _, b := range nativeBaselines(o) {
		if re.MatchString(b.Name) || anyMatchUses(re, b.Name) {
			add(b)
		}
	}

	// Ray's benchmarks, driven by the guest.
	lines := &benchLineWriter{onResult: func(r benchResult) { add(r) }}
	// "custom" is the resource Ray's placement-group benchmark reserves.
	node, err := fabric.Start(fabric.Config{NumCPUs: float64(cpus), ObjectStoreMemory: store, GuestMemoryLimit: 4 << 30,
		Resources: map[string]float64{"custom": 100}, Stdout: lines, Stderr: stderr})
	if err != nil {
		return err
	}
	jobArgs := []string{o.filter, strconv.FormatFloat(o.trial.Seconds(), 'f', -1, 64),
		strconv.FormatFloat(o.warmup.Seconds(), 'f', -1, 64), strconv.Itoa(o.trials), strconv.Itoa(cpus)}
	err = node.RunJob(ctx, wasm, jobArgs)
	_ = node.Close()
	lines.flush()
	if err != nil {
		return fmt.Errorf("bench driver failed: %w", err)
	}

	// Cold starts, with the module already compiled.
	if re.MatchString("cold_start_go_guest") {
		r, err := coldStart(ctx, wasm, "small_value", []byte{0x80}, "cold_start_go_guest")
		if err != nil {
			return err
		}
		add(r)
	}
	if re.MatchString("cold_start_c_guest") {
		cw, err := os.ReadFile(o.cModule)
		if err != nil {
			return fmt.Errorf("read the C guest: %w (build it with `make examples`, or pass --c-module)", err)
		}
		r, err := coldStart(ctx, cw, "add", []byte{0x82, 0x01, 0x02}, "cold_start_c_guest")
		if err != nil {
			return err
		}
		add(r)
	}

	density, err := densityResults(ctx, re, o, wasm)
	if err != nil {
		return err
	}
	for _, r := range density {
		add(r)
	}

	if re.MatchString("matmul_256_native") || re.MatchString("matmul_256_go_guest") || re.MatchString("matmul_256_c_guest") || re.MatchString("matmul_256_go_guest_uninterruptible") || re.MatchString("matmul_256_c_guest_uninterruptible") {
		rs, err := matmulResults(ctx, o, wasm)
		if err != nil {
			return err
		}
		for _, r := range rs {
			if re.MatchString(r.Name) || anyMatchUses(re, r.Name) {
				add(r)
			}
		}
	}
	cluster, err := clusterResults(ctx, re, o, wasm, stderr)
	if err != nil {
		return fmt.Errorf("cluster benchmarks: %w", err)
	}
	for _, r := range cluster {
		add(r)
	}
	served, err := serveResults(ctx, re, o, stderr)
	if err != nil {
		return fmt.Errorf("serve benchmarks: %w", err)
	}
	for _, r := range served {
		add(r)
	}
	state, misses, err := stateResults(ctx, re, o, wasm, stderr)
	if err != nil {
		return fmt.Errorf("state API benchmarks: %w", err)
	}
	for _, r := range state {
		if re.MatchString(r.Name) || anyMatchUses(re, r.Name) {
			add(r)
		}
	}
	if len(results) == 0 {
		fmt.Fprintf(stderr, "fabric bench: no benchmark matches --filter %q\n", o.filter)
	}

	decorate(results)
	if o.updateDoc != "" {
		if err := updateDoc(o.updateDoc, results, cpus); err != nil {
			return err
		}
	}
	if o.jsonOut {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(results); err != nil {
			return err
		}
	} else {
		printTable(stdout, results)
	}
	if o.check != "" {
		err := checkFloors(o.check, results, stderr)
		for _, m := range misses {
			fmt.Fprintf(stderr, "check %s REGRESSION\n", m)
		}
		if len(misses) > 0 {
			err = errors.Join(err, fmt.Errorf("%w: %s", ErrBenchRegression, strings.Join(misses, "; ")))
		}
		return err
	}
	return nil
}

// ErrBenchRegression is returned by --check when a figure fell below its floor.
var ErrBenchRegression = errors.New("benchmark regression")

// checkFloors compares each figure's ratio to its same-run baseline (for
// times, the baseline's period over the figure) with the floors in path: a
// JSON object from benchmark name to the lowest acceptable ratio. Ratios to
// a baseline measured in the same run keep the check meaningful on a
// noisy, shared machine.
func checkFloors(path string, results []benchResult, stderr io.Writer) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var floors map[string]float64
	if err := json.Unmarshal(b, &floors); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	byName := map[string]benchResult{}
	for _, r := range results {
		byName[r.Name] = r
	}
	var failed []string
	names := make([]string, 0, len(floors))
	for n := range floors {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		floor := floors[name]
		r, ok := byName[name]
		if !ok {
			failed = append(failed, name+": not measured")
			continue
		}
		base, ok := byName[r.Baseline]
		if !ok || base.Value == 0 || r.Value == 0 {
			failed = append(failed, name+": no baseline "+r.Baseline)
			continue
		}
		ratio := r.Value / base.Value
		switch r.Unit {
		case "µs": // a time against a rate: smaller is better
			ratio = 1e6 / r.Value / base.Value
		case "ms", "KiB": // a time against a time, memory against memory
			ratio = base.Value / r.Value
		}
		status := "ok"
		if ratio < floor {
			status = "REGRESSION"
			failed = append(failed, fmt.Sprintf("%s: %.3g of %s, floor %.3g", name, ratio, r.Baseline, floor))
		}
		fmt.Fprintf(stderr, "check %-30s %.3g of %s (floor %.3g) %s\n", name, ratio, r.Baseline, floor, status)
	}
	if len(failed) > 0 {
		return fmt.Errorf("%w: %s", ErrBenchRegression, strings.Join(failed, "; "))
	}
	return nil
}

// anyMatchUses reports whether a selected benchmark uses baseline b.
func anyMatchUses(re *regexp.Regexp, b string) bool {
	for name, base := range baselineOf {
		if base == b && re.MatchString(name) {
			return true
		}
	}
	return false
}

// decorate fills in Ray's figures, ratios and baseline names.
func decorate(results []benchResult) {
	for i := range results {
		r := &results[i]
		if ray, ok := rayFigures[r.Name]; ok {
			v := ray
			ratio := r.Value / ray
			if r.Unit == "ms" || r.Unit == "µs" { // a time: Ray's over ours
				ratio = ray / r.Value
			}
			r.Ray, r.Ratio = &v, &ratio
		}
		r.Baseline = baselineOf[r.Name]
	}
}

func formatValue(r benchResult) string {
	s := humanNumber(r.Value)
	if r.SD != nil {
		s += " ± " + humanNumber(*r.SD)
	}
	return s + " " + r.Unit
}

func humanNumber(v float64) string {
	switch {
	case v >= 100:
		return addCommas(strconv.FormatFloat(math.Round(v), 'f', 0, 64))
	case v >= 1:
		return strconv.FormatFloat(v, 'f', 2, 64)
	default:
		return strconv.FormatFloat(v, 'g', 3, 64)
	}
}

func addCommas(s string) string {
	n := len(s)
	if n <= 3 {
		return s
	}
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (n-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

func printTable(w io.Writer, results []benchResult) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tFABRIC\tRAY (64 vCPU)\tRATIO\tBASELINE")
	for _, r := range results {
		ray, ratio := "", ""
		if r.Ray != nil {
			ray = humanNumber(*r.Ray) + " " + r.Unit
		}
		if r.Ratio != nil {
			ratio = fmt.Sprintf("%.2fx", *r.Ratio)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Name, formatValue(r), ray, ratio, r.Baseline)
	}
	_ = tw.Flush()
}

// benchLineWriter receives the driver's output and parses BENCH lines.
type benchLineWriter struct {
	mu       sync.Mutex
	buf      []byte
	onResult func(benchResult)
}

func (b *benchLineWriter) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	for {
		i := strings.IndexByte(string(b.buf), '\n')
		if i < 0 {
			return len(p), nil
		}
		b.line(string(b.buf[:i]))
		b.buf = b.buf[i+1:]
	}
}

func (b *benchLineWriter) flush() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.buf) > 0 {
		b.line(string(b.buf))
		b.buf = nil
	}
}

func (b *benchLineWriter) line(s string) {
	js, ok := strings.CutPrefix(s, "BENCH ")
	if !ok {
		return
	}
	var r struct {
		Name  string  `json:"name"`
		Value float64 `json:"value"`
		SD    float64 `json:"sd"`
		Unit  string  `json:"unit"`
		Runs  int     `json:"runs"`
	}
	if json.Unmarshal([]byte(js), &r) != nil {
		return
	}
	sd := r.SD
	b.onResult(benchResult{Name: r.Name, Value: r.Value, SD: &sd, Unit: r.Unit, Runs: r.Runs})
}

// timeitNative is the guest's timeit for native baselines.
func timeitNative(o benchOptions, name, unit string, multiplier float64, fn func()) benchResult {
	start := time.Now()
	for time.Since(start) < o.warmup {
		fn()
	}
	rates := make([]float64, 0, o.trials)
	runs := 0
	for range o.trials {
		n := 0
		start := time.Now()
		for time.Since(start) < o.trial {
			fn()
			n++
		}
		runs += n
		rates = append(rates, float64(n)*multiplier/time.Since(start).Seconds())
	}
	mean, sd := meanSD(rates)
	return benchResult{Name: name, Value: mean, SD: &sd, Unit: unit, Runs: runs}
}

func meanSD(xs []float64) (float64, float64) {
	m := 0.0
	for _, x := range xs {
		m += x
	}
	m /= float64(len(xs))
	v := 0.0
	for _, x := range xs {
		v += (x - m) * (x - m)
	}
	return m, math.Sqrt(v / float64(len(xs)))
}

// nativeBaselines measures the floors the guest figures are compared with.
func nativeBaselines(o benchOptions) []benchResult {
	// A pool of one goroutine per CPU running no-op work.
	work := make(chan func() int, 1024)
	done := make(chan int, 1024)
	var wg sync.WaitGroup
	for range runtime.NumCPU() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for f := range work {
				done <- f()
			}
		}()
	}
	noop := func() int { return 0 }
	sync1 := timeitNative(o, "baseline_goroutine_pool_sync", "/s", 1, func() {
		work <- noop
		<-done
	})
	async := timeitNative(o, "baseline_goroutine_pool_async", "/s", 1000, func() {
		go func() {
			for range 1000 {
				work <- noop
			}
		}()
		for range 1000 {
			<-done
		}
	})
	close(work)
	wg.Wait()

	src := make([]byte, 800<<20) // the size of single_client_put_gigabytes' array
	for i := 0; i < len(src); i += 4096 {
		src[i] = 1
	}
	dst := make([]byte, len(src))
	// Ray counts its 800 MiB array as 0.8 GB; so does this baseline.
	memcpy := timeitNative(o, "baseline_memcpy_gigabytes", "GB/s", 0.8, func() { copy(dst, src) })

	out := []benchResult{sync1, async, memcpy}
	if r, err := bareWazeroCall(o); err == nil {
		out = append(out, r)
	}
	return out
}

// bareWazeroCall times calls of a guest export that does nothing: the
// cost of entering a sandbox.
func bareWazeroCall(o benchOptions) (benchResult, error) {
	ctx := context.Background()
	wasm, err := os.ReadFile(o.cModule)
	if err != nil {
		return benchResult{}, err
	}
	e, m, err := compileFresh(ctx, wasm, false)
	if err != nil {
		return benchResult{}, err
	}
	defer e.Close(ctx)
	inst, err := m.Instantiate(ctx)
	if err != nil {
		return benchResult{}, err
	}
	f, err := inst.Export("fabric_abi_version")
	if err != nil {
		return benchResult{}, err
	}
	var callErr error
	r := timeitNative(o, "baseline_wazero_call", "/s", 1000, func() {
		for range 1000 {
			if _, err := f.Call(ctx); err != nil {
				callErr = err
			}
		}
	})
	return r, callErr
}

// coldStart times a fresh instance to the end of its first call, with the
// module compiled: the median of 50 starts, in microseconds (sd over all).
func coldStart(ctx context.Context, wasm []byte, fn string, args []byte, name string) (benchResult, error) {
	e, m, err := compileFresh(ctx, wasm, false)
	if err != nil {
		return benchResult{}, err
	}
	defer e.Close(ctx)
	src := sandbox.ArgSource{Len: int64(len(args)), Write: func(dst []byte) error { copy(dst, args); return nil }}
	var times []float64
	for range 50 {
		start := time.Now()
		inst, err := m.Instantiate(ctx)
		if err != nil {
			return benchResult{}, err
		}
		res, err := inst.Call(ctx, nil, fn, src, nil, 0)
		elapsed := time.Since(start)
		_ = inst.Close(ctx)
		if err != nil {
			return benchResult{}, err
		}
		if !res.OK {
			return benchResult{}, errors.New(name + ": first call failed: " + res.Error)
		}
		times = append(times, float64(elapsed.Microseconds()))
	}
	_, sd := meanSD(times)
	sort.Float64s(times)
	return benchResult{Name: name, Value: times[len(times)/2], SD: &sd, Unit: "µs", Runs: len(times)}, nil
}

const (
	docStart = "<!-- bench:start -->"
	docEnd   = "<!-- bench:end -->"
)

// updateDoc rewrites the table between the bench markers of a Markdown file.
func updateDoc(path string, results []benchResult, cpus int) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	doc := string(b)
	i, j := strings.Index(doc, docStart), strings.Index(doc, docEnd)
	if i < 0 || j < i {
		return fmt.Errorf("%s has no %s ... %s section", path, docStart, docEnd)
	}
	var t strings.Builder
	fmt.Fprintf(&t, "%s\n\n`make bench` on %d CPUs, %s (`fabric bench`, trials as Ray's: warm-up, then mean ± sd of trials).\n\n",
		docStart, cpus, time.Now().UTC().Format("2006-01-02"))
	t.WriteString("| name | Fabric | Ray 2.48, 64 vCPU | ratio (to Ray; matmul: time over native) | same-run baseline |\n| --- | --- | --- | --- | --- |\n")
	byName := map[string]benchResult{}
	for _, r := range results {
		byName[r.Name] = r
	}
	for _, r := range results {
		ray, ratio, base := "", "", ""
		if r.Ray != nil {
			ray = humanNumber(*r.Ray) + " " + r.Unit
		}
		if r.Ratio != nil {
			ratio = fmt.Sprintf("%.2fx", *r.Ratio)
		}
		if br, ok := byName[r.Baseline]; ok {
			base = fmt.Sprintf("%s: %s", br.Name, formatValue(br))
		}
		fmt.Fprintf(&t, "| %s | %s | %s | %s | %s |\n", r.Name, formatValue(r), ray, ratio, base)
	}
	t.WriteString("\n")
	out := doc[:i] + t.String() + doc[j:]
	return os.WriteFile(path, []byte(out), 0o644)
}

const matmulN = 256

// nativeMatmul is the kernel both guests run: the product of two
// deterministic n x n float64 matrices, summed as a checksum.
func nativeMatmul(n int) float64 {
	a, b, c := make([]float64, n*n), make([]float64, n*n), make([]float64, n*n)
	for i := range a {
		a[i] = float64(i%7) * 0.5
		b[i] = float64(i%5) * 0.25
	}
	for i := 0; i < n; i++ {
		for k := 0; k < n; k++ {
			aik := a[i*n+k]
			for j := 0; j < n; j++ {
				c[i*n+j] += aik * b[k*n+j]
			}
		}
	}
	sum := 0.0
	for _, v := range c {
		sum += v
	}
	return sum
}

// matmulResults times the 256x256 matmul natively, in the Go guest and in
// the C guest (milliseconds per product, median of runs over a second), and
// checks that all three agree. Each guest runs compiled with interruption
// points and without, in alternation, so that the two see the same
// machine: their ratio is the cost of being interruptible.
func matmulResults(ctx context.Context, o benchOptions, goWasm []byte) ([]benchResult, error) {
	if o.cMatmul == "" {
		o.cMatmul = besideBinary(filepath.Join("testguests", "cmatmul.wasm"))
	}
	cWasm, err := os.ReadFile(o.cMatmul)
	if err != nil {
		return nil, fmt.Errorf("read the C matmul guest: %w (build it with `make guests`, or pass --c-matmul-module)", err)
	}
	want := nativeMatmul(matmulN)
	native := timeKernel("matmul_256_native", func() (float64, error) { return nativeMatmul(matmulN), nil })
	out := []benchResult{native.benchResult}
	for _, g := range []struct {
		name string
		wasm []byte
	}{{"matmul_256_go_guest", goWasm}, {"matmul_256_c_guest", cWasm}} {
		var kernels [2]func() (float64, error)
		for k, plain := range []bool{false, true} {
			e, m, err := compileFresh(ctx, g.wasm, plain)
			if err != nil {
				return nil, err
			}
			defer e.Close(ctx)
			inst, err := m.Instantiate(ctx)
			if err != nil {
				return nil, err
			}
			f, err := inst.Export("bench_matmul")
			if err != nil {
				return nil, err
			}
			kernels[k] = func() (float64, error) {
				res, err := f.Call(ctx, matmulN)
				if err != nil {
					return 0, err
				}
				return math.Float64frombits(res[0]), nil
			}
		}
		rs := timeKernels([2]string{g.name, g.name + "_uninterruptible"}, kernels)
		for _, r := range rs {
			if r.err != nil {
				return nil, fmt.Errorf("%s: %w", r.Name, r.err)
			}
			if r.check != want {
				return nil, fmt.Errorf("%s: checksum %v, native %v", r.Name, r.check, want)
			}
			ratio := r.Value / native.Value
			r.Ratio = &ratio
			out = append(out, r.benchResult)
		}
	}
	return out, nil
}

// timeKernels times two kernels in pairs, run back to back (in turns
// first and second), as timeKernel does one. The second's figure is its
// median time. The first's is the second's median times the median of the
// pairs' ratios: a busy spell on a shared machine slows both runs of a
// pair, so the paired ratio holds where the two medians, taken apart,
// moved by a third (two medians of 108 ± 35 and 167 ± 38 ms in one run).
func timeKernels(names [2]string, fns [2]func() (float64, error)) [2]kernelResult {
	var times [2][]float64
	var res [2]kernelResult
	start := time.Now()
	for pair := 0; len(times[0]) < 3 || time.Since(start) < 2*time.Second; pair++ {
		for i := range fns {
			k := i
			if pair%2 == 1 {
				k = 1 - i
			}
			t := time.Now()
			c, err := fns[k]()
			if err != nil {
				res[k].err = err
				return res
			}
			res[k].check = c
			times[k] = append(times[k], float64(time.Since(t).Microseconds())/1000)
		}
	}
	ratios := make([]float64, len(times[0]))
	for i := range ratios {
		ratios[i] = times[0][i] / times[1][i]
	}
	sort.Float64s(ratios)
	for k := range fns {
		_, sd := meanSD(times[k])
		sorted := slices.Sorted(slices.Values(times[k]))
		res[k].benchResult = benchResult{Name: names[k], Value: sorted[len(sorted)/2], SD: &sd, Unit: "ms", Runs: len(times[k])}
	}
	res[0].Value = res[1].Value * ratios[len(ratios)/2]
	return res
}

type kernelResult struct {
	benchResult
	check float64
	err   error
}

func timeKernel(name string, fn func() (float64, error)) kernelResult {
	var times []float64
	var check float64
	start := time.Now()
	for len(times) < 3 || time.Since(start) < time.Second {
		t := time.Now()
		c, err := fn()
		if err != nil {
			return kernelResult{err: err}
		}
		check = c
		times = append(times, float64(time.Since(t).Microseconds())/1000)
	}
	_, sd := meanSD(times)
	sort.Float64s(times)
	return kernelResult{benchResult: benchResult{Name: name, Value: times[len(times)/2], SD: &sd, Unit: "ms", Runs: len(times)}, check: check}
}

// compileFresh compiles a module on an engine of its own (no compile cache),
// so that measurements do not share state. The caller closes the engine.
func compileFresh(ctx context.Context, wasm []byte, uninterruptible bool) (*sandbox.Engine, *sandbox.Module, error) {
	e, err := sandbox.NewEngine(ctx, sandbox.EngineConfig{Uninterruptible: uninterruptible})
	if err != nil {
		return nil, nil, err
	}
	m, err := e.Compile(ctx, wasm)
	if err != nil {
		_ = e.Close(ctx)
		return nil, nil, err
	}
	return e, m, nil
}
