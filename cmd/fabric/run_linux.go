package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/wasmfabric/fabric/fabric"
	"github.com/wasmfabric/fabric/internal/sandbox"
)

// nodeCommands are the commands that run a node (an agent, an embedded
// node, a worker): Linux only.
func nodeCommands() []*cobra.Command {
	return []*cobra.Command{newRunCmd(), newBuildCmd(), newBenchCmd(), newAgentCmd(), newWorkerCmd(), newDevCmd()}
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
			// On a terminal, a line below the output counts the job's
			// tasks as they finish.
			prog := newProgress(os.Stderr)
			defer prog.clear()
			cfg := fabric.Config{NumCPUs: cpus, GPUs: gpus, Stdout: prog.wrap(os.Stdout), Stderr: prog.wrap(os.Stderr)}
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
			if prog.active() {
				go func() {
					t := time.NewTicker(250 * time.Millisecond)
					defer t.Stop()
					for range t.C {
						if finished, failed, total := node.TaskProgress(); total > 0 {
							prog.set(progressLine(finished, failed, total))
						}
						if !prog.active() {
							return
						}
					}
				}()
			}
			// The job has the node to itself: its output waits for a slow
			// terminal instead of being dropped.
			err = node.RunJobWith(ctx, wasm, jobArgs, fabric.JobOptions{Lossless: true})
			prog.clear()
			if err != nil {
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
	f.IntVar(&cfg.StartFD, "start-fd", 0, "file descriptor to read one byte from before starting")
	return cmd
}
