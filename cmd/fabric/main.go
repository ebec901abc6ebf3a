// Command fabric is the single binary of Fabric: it runs jobs on an embedded
// node (`fabric run`), builds Go guests (`fabric build`) and serves as the
// worker process that agents start (`fabric worker`).
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/wasmfabric/fabric/fabric"
	"github.com/wasmfabric/fabric/internal/sandbox"
)

func main() {
	os.Exit(profiled(func() int { return run(os.Args[1:]) }))
}

// profiled runs f under the CPU profiler when FABRIC_CPUPROFILE names a
// directory: each process (agent or worker) writes PROCESS-PID.pprof there.
// Workers stop profiling on SIGTERM, which the agent sends before SIGKILL
// while the variable is set.
func profiled(f func() int) int {
	dir := os.Getenv("FABRIC_CPUPROFILE")
	if dir == "" {
		return f()
	}
	role := "agent"
	if len(os.Args) > 1 && os.Args[1] == "worker" {
		role = "worker"
	}
	out, err := os.Create(filepath.Join(dir, fmt.Sprintf("%s-%d.pprof", role, os.Getpid())))
	if err != nil {
		fmt.Fprintln(os.Stderr, "fabric: profile:", err)
		return f()
	}
	if err := pprof.StartCPUProfile(out); err != nil {
		fmt.Fprintln(os.Stderr, "fabric: profile:", err)
		return f()
	}
	stop := func() { pprof.StopCPUProfile(); _ = out.Close() }
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM)
	go func() {
		<-sig
		stop()
		os.Exit(143)
	}()
	code := f()
	stop()
	return code
}

// jobExitCode is the code the fabric command exits with for a failed job:
// the driver's own exit code when it called os.Exit with one, else 1.
func jobExitCode(err error) int {
	var je *fabric.JobError
	if errors.As(err, &je) && je.ExitCode > 0 && je.ExitCode < 256 {
		return je.ExitCode
	}
	return 1
}

// jobFailed prints msg and ends the command with the job's exit code.
func jobFailed(msg, err error) error {
	code := jobExitCode(err)
	if code == 1 {
		return msg
	}
	fmt.Fprintln(os.Stderr, "fabric:", firstLine(msg.Error()))
	return exitError{code}
}

// exitError carries an exit code without printing usage.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }

func run(args []string) int {
	root := newRoot()
	root.SetArgs(args)
	if err := root.Execute(); err != nil {
		var ee exitError
		if errors.As(err, &ee) {
			return ee.code
		}
		fmt.Fprintln(os.Stderr, "fabric:", strings.TrimPrefix(firstLine(err.Error()), "fabric: "))
		return 1
	}
	return 0
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "fabric",
		Short:         "Fabric runs Ray-style tasks, actors and objects in WebAssembly sandboxes",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newRunCmd(), newBuildCmd(), newBenchCmd(), newAgentCmd(), newSubmitCmd(), newJobCmd(), newUploadCmd(), newCallCmd(), newModuleCmd(), newListCmd(), newStatusCmd(), newWorkerCmd(), newVersionCmd(), newDevCmd())
	root.Version = buildVersion().String()
	root.SetVersionTemplate("{{.Version}}\n")
	return root
}

func newRunCmd() *cobra.Command {
	var (
		cpus, gpus  float64
		memory      string
		storeMemory string
		timeout     time.Duration
		outputCap   string
		verbose     bool
		resources   []string
	)
	cmd := &cobra.Command{
		Use:   "run FILE.wasm [flags] [-- ARGS...]",
		Short: "Run a job's main on an embedded node (no network listener)",
		Long: `Run starts an embedded node (an agent and its worker processes, state in a
temporary directory), calls the module's main with ARGS and exits 0 when it
succeeds or 1 with a one-line error when it fails. Task output is shown
prefixed with the task's name and worker pid.`,
		Example: "  fabric run quickstart.wasm\n  fabric run job.wasm --num-cpus 4 --memory 256MiB --timeout 1m -- input.txt",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			wasm, err := os.ReadFile(args[0])
			if err != nil {
				return fmt.Errorf("read module: %w", err)
			}
			cfg := fabric.Config{NumCPUs: cpus, GPUs: gpus}
			if memory != "" {
				if cfg.GuestMemoryLimit, err = ParseSize(memory); err != nil {
					return fmt.Errorf("--memory: %w", err)
				}
			}
			if storeMemory != "" {
				if cfg.ObjectStoreMemory, err = ParseSize(storeMemory); err != nil {
					return fmt.Errorf("--object-store-memory: %w", err)
				}
			}
			if outputCap != "" {
				if cfg.OutputCap, err = ParseSize(outputCap); err != nil {
					return fmt.Errorf("--output-cap: %w", err)
				}
			}
			for _, r := range resources {
				k, v, ok := strings.Cut(r, "=")
				f, perr := strconv.ParseFloat(v, 64)
				if !ok || perr != nil || k == "" {
					return fmt.Errorf("--resources: %q is not NAME=AMOUNT", r)
				}
				if cfg.Resources == nil {
					cfg.Resources = map[string]float64{}
				}
				cfg.Resources[k] = f
			}
			node, err := fabric.Start(cfg)
			if err != nil {
				return err
			}
			defer node.Close()
			ctx := context.Background()
			if timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, timeout)
				defer cancel()
			}
			var jobArgs []string
			if len(args) > 1 {
				jobArgs = args[1:]
			}
			// The job has the node to itself: its output waits for a slow
			// terminal instead of being dropped.
			if err := node.RunJobWith(ctx, wasm, jobArgs, fabric.JobOptions{Lossless: true}); err != nil {
				if verbose {
					fmt.Fprintln(os.Stderr, "fabric: job failed:", err)
					return exitError{jobExitCode(err)}
				}
				return jobFailed(fmt.Errorf("job failed: %s", strings.TrimPrefix(firstLine(err.Error()), "fabric: ")), err)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.Float64Var(&cpus, "num-cpus", 0, "CPUs of the node (default: the machine's cores)")
	f.Float64Var(&gpus, "num-gpus", 0, "GPUs of the node")
	f.StringVar(&memory, "memory", "", "memory cap of each guest, e.g. 64MiB (default 2GiB)")
	f.StringVar(&storeMemory, "object-store-memory", "", "size of the shared object arena; objects past it spill to disk (default 1GiB)")
	f.DurationVar(&timeout, "timeout", 0, "bound on the whole job, e.g. 30s (default: none)")
	f.StringVar(&outputCap, "output-cap", "", "output kept per task call (default 8MiB)")
	f.StringSliceVar(&resources, "resources", nil, "custom resources of the node, NAME=AMOUNT,...")
	f.BoolVarP(&verbose, "verbose", "v", false, "print the whole error (message and stack) when the job fails")
	return cmd
}

func newBuildCmd() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "build DIR [-o FILE.wasm]",
		Short: "Build a Go package to a Fabric guest module",
		Long: "Build runs `go build` for GOOS=wasip1 GOARCH=wasm with -buildmode=c-shared, the flags a Go guest needs,\n" +
			"and checks that the result is a Fabric guest (a package that uses the SDK). The module is named after\n" +
			"the package's directory unless -o says otherwise.",
		Example: "  fabric build ./examples/quickstart            # writes quickstart.wasm\n  fabric build . -o job.wasm",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := args[0]
			absDir, err := filepath.Abs(dir)
			if err != nil {
				return err
			}
			if out == "" { // named after the package's directory, even for "."
				out = filepath.Base(absDir) + ".wasm"
			}
			absOut, err := filepath.Abs(out)
			if err != nil {
				return err
			}
			pkg := "."
			gb := exec.Command("go", "build", "-buildmode=c-shared", "-trimpath", "-o", absOut, pkg)
			gb.Dir = dir
			gb.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
			gb.Stdout, gb.Stderr = os.Stdout, os.Stderr
			if err := gb.Run(); err != nil {
				return fmt.Errorf("go build of %s failed: %w", dir, err)
			}
			wasm, err := os.ReadFile(absOut)
			if err != nil {
				return err
			}
			if _, err := sandbox.Validate(wasm, sandbox.Limits{}); err != nil {
				_ = os.Remove(absOut)
				var ve *sandbox.ValidationError
				if errors.As(err, &ve) && slices.Contains(ve.Missing, "fabric_call") {
					return fmt.Errorf("%s does not use the Fabric SDK: the module it builds exports no fabric_call. Import %q, register the driver with sdk.Main and tasks with sdk.Task in an init function, and build again (see examples/quickstart)",
						dir, "github.com/wasmfabric/fabric/sdk")
				}
				return fmt.Errorf("built module is not a Fabric guest: %w", err)
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "built %s\n", out)
			return nil
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "output file (default: the package directory's name + .wasm)")
	return cmd
}

func newWorkerCmd() *cobra.Command {
	var cfg sandbox.WorkerConfig
	cmd := &cobra.Command{
		Use:    "worker",
		Short:  "Run guests for an agent (started by the agent, not by hand)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := sandbox.RunWorker(context.Background(), cfg); err != nil {
				return fmt.Errorf("worker: %w", err)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Socket, "socket", "", "agent socket")
	f.StringVar(&cfg.Module, "module", "", "module file")
	f.StringVar(&cfg.CacheDir, "cache-dir", "", "compile cache")
	f.StringVar(&cfg.NodeID, "node-id", "local", "the node's ID, for guests that ask")
	f.Int64Var(&cfg.MemoryLimit, "memory", 0, "guest memory cap in bytes")
	f.Int64Var(&cfg.OutputCap, "output-cap", 0, "output bytes per call")
	f.IntVar(&cfg.ArenaFD, "arena-fd", 0, "arena file descriptor")
	f.Int64Var(&cfg.ArenaSize, "arena-size", 0, "arena size")
	f.Int64Var(&cfg.ProcessLimit, "process-limit", 0, "data segment cap of this process")
	return cmd
}

// ParseSize parses sizes such as 64MiB, 1GiB, 512KB, 100M or 1048576.
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
		{"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}, {"Ti", 1 << 40}, // as kubectl writes them
		{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
		{"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(strings.ToUpper(t), strings.ToUpper(u.suffix)) && len(t) > len(u.suffix) {
			t, mult = strings.TrimSpace(t[:len(t)-len(u.suffix)]), u.mult
			break
		}
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || f < 0 {
		return 0, fmt.Errorf("%q is not a size such as 64MiB", s)
	}
	return int64(f * float64(mult)), nil
}
