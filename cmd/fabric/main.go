// Command fabric is the single binary of Fabric: it runs jobs on an embedded
// node (`fabric run`), builds Go guests (`fabric build`) and serves as the
// worker process that agents start (`fabric worker`).
package main

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/wasmfabric/fabric/fabric"
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
	root.AddCommand(nodeCommands()...)
	root.AddCommand(newSubmitCmd(), newJobCmd(), newUploadCmd(), newCallCmd(), newModuleCmd(), newListCmd(), newSummaryCmd(), newTimelineCmd(), newServeCmd(), newStatusCmd(), newVersionCmd(),
		newTenantCmd(), newTokenCmd(), newWhoamiCmd(), newJoinTokenCmd(), newNodeCmd(), newGossipKeyCmd())
	root.Version = buildVersion().String()
	root.SetVersionTemplate("{{.Version}}\n")
	return root
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
