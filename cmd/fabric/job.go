package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/wasmfabric/fabric/fabric"
)

func newJobCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "job",
		Short: "Submit jobs that outlive the connection, list them, follow their logs, stop and delete them",
		Long: `A job is a module's main run on the cluster. It is recorded in the cluster's
replicated control state with an ID, runs whatever happens to the client that
submitted it, and keeps its output on the node that ran its driver, readable
from any agent after it ends.`,
	}
	cmd.AddCommand(newJobSubmitCmd("submit FILE.wasm [flags] [-- ARGS...]"), newJobListCmd(), newJobStatusCmd(),
		newJobLogsCmd(), newJobStopCmd(), newJobDeleteCmd())
	return cmd
}

// newJobSubmitCmd is `fabric job submit`, and `fabric submit` as its
// short form.
func newJobSubmitCmd(use string) *cobra.Command {
	var (
		cf          clientFlags
		timeout     time.Duration
		noWait      bool
		id          string
		maxRestarts int
		sigFile     string
	)
	cmd := &cobra.Command{
		Use:   use,
		Short: "Run a job on the cluster; follow its output unless --no-wait",
		Long: `Submit uploads a module to an agent and runs its main with ARGS on the
cluster as a job with an ID. Without --no-wait it follows the job's output
and exits with the job's result: 0 when it succeeds, else its driver's exit
code or 1. Ctrl-C stops following; the job runs on (fabric job stop ID ends
it). With --no-wait it prints the job's ID and returns at once.`,
		Example: `  fabric job submit job.wasm -- input.txt
  fabric job submit --no-wait --id nightly-42 job.wasm
  fabric job logs -f nightly-42`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			wasm, err := os.ReadFile(args[0])
			if err != nil {
				return fmt.Errorf("read module: %w", err)
			}
			cl, err := cf.client()
			if err != nil {
				return err
			}
			sig, err := moduleSignatureFor(args[0], sigFile)
			if err != nil {
				return err
			}
			o := fabric.SubmitOptions{ID: id, MaxRestarts: maxRestarts, Signature: sig}
			if noWait {
				j, err := cl.SubmitDetached(cmd.Context(), wasm, args[1:], o)
				if err != nil {
					return err
				}
				if cf.output == "json" || cf.output == "yaml" {
					return printAs(cmd.OutOrStdout(), cf.output, j)
				}
				fmt.Fprintln(cmd.OutOrStdout(), j.ID)
				return nil
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, timeout)
				defer cancel()
			}
			prog := newProgress(cmd.ErrOrStderr())
			defer prog.clear()
			o.Submitted = func(id string) {
				fmt.Fprintf(cmd.ErrOrStderr(), "fabric: job %s submitted; following its output (Ctrl-C stops following, not the job)\n", id)
				if prog.on {
					go followProgress(ctx, cl, id, prog)
				}
			}
			jobID, err := cl.SubmitWith(ctx, wasm, args[1:], o, prog.wrap(cmd.OutOrStdout()), prog.wrap(cmd.ErrOrStderr()))
			prog.clear()
			if ctx.Err() != nil && jobID != "" {
				if errors.Is(ctx.Err(), context.DeadlineExceeded) {
					// --timeout bounds the job itself.
					sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
					defer cancel()
					if _, serr := cl.StopJob(sctx, jobID); serr != nil {
						return fmt.Errorf("the job ran past --timeout %s, and stopping it failed: %v (fabric job stop %s)", timeout, serr, jobID)
					}
					return fmt.Errorf("job %s ran past --timeout %s and was stopped", jobID, timeout)
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "fabric: stopped following job %s; it runs on (fabric job logs -f %s, fabric job stop %s)\n", jobID, jobID, jobID)
				return exitError{130}
			}
			if err != nil {
				return jobFailed(fmt.Errorf("%s", strings.TrimPrefix(firstLine(err.Error()), "fabric: ")), err)
			}
			return nil
		},
	}
	cf.register(cmd, false)
	f := cmd.Flags()
	f.DurationVar(&timeout, "timeout", 0, "stop the job if it runs longer, e.g. 30m (default: no bound)")
	f.BoolVar(&noWait, "no-wait", false, "print the job's ID and return without following it")
	f.StringVar(&sigFile, "signature", "", "the module's signature file (default: FILE.wasm.sig when it is there)")
	f.StringVar(&id, "id", "", "the job's ID, unique within your tenant (default: made up; 1 to 64 letters, digits, '-', '_', '.'); the cluster's operator sees it as TENANT:ID")
	f.IntVar(&maxRestarts, "max-restarts", 0, "start the driver again, up to this many times, when its node fails")
	f.StringVarP(&cf.output, "output", "o", "", "with --no-wait: json or yaml prints the whole job, not only its ID")
	return cmd
}

func printJobs(w io.Writer, format string, jobs []fabric.JobInfo) error {
	if format == "json" || format == "yaml" {
		return printAs(w, format, jobs)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	head := "ID\tSTATE\tNODE\tSUBMITTED\tDURATION\tMODULE\tERROR"
	if format == "wide" {
		head += "\tATTEMPT\tMAX RESTARTS"
	}
	fmt.Fprintln(tw, head)
	for _, j := range jobs {
		dur := "-"
		if j.Started != nil {
			end := time.Now()
			if j.Ended != nil {
				end = *j.Ended
			}
			dur = end.Sub(*j.Started).Round(time.Millisecond).String()
		}
		msg := firstLine(j.Error)
		if len(msg) > 60 && format != "wide" {
			msg = msg[:57] + "..."
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%.12s\t%s", j.ID, j.State, j.Node, j.Submitted.Local().Format(time.DateTime), dur, j.Module, orDash(msg))
		if format == "wide" {
			fmt.Fprintf(tw, "\t%d\t%d", j.Attempt, j.MaxRestarts)
		}
		fmt.Fprintln(tw)
	}
	return tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func newJobListCmd() *cobra.Command {
	var cf clientFlags
	cmd := &cobra.Command{
		Use:     "list",
		Short:   "List the cluster's jobs, oldest first",
		Example: "  fabric job list\n  fabric job list -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := cf.client()
			if err != nil {
				return err
			}
			jobs, err := cl.Jobs(cmd.Context())
			if err != nil {
				return err
			}
			return printJobs(cmd.OutOrStdout(), cf.output, jobs)
		},
	}
	cf.register(cmd, true)
	return cmd
}

func newJobStatusCmd() *cobra.Command {
	var cf clientFlags
	cmd := &cobra.Command{
		Use:   "status ID",
		Short: "Show a job: its state, node, times, error and restarts",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := cf.client()
			if err != nil {
				return err
			}
			j, err := cl.Job(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if cf.output == "json" || cf.output == "yaml" {
				return printAs(cmd.OutOrStdout(), cf.output, j)
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "ID:         %s\nState:      %s\nNode:       %s\nModule:     %s\nSubmitted:  %s\n", j.ID, j.State, j.Node, j.Module, j.Submitted.Local().Format(time.DateTime))
			if j.Started != nil {
				fmt.Fprintf(w, "Started:    %s\n", j.Started.Local().Format(time.DateTime))
			}
			if j.Ended != nil {
				fmt.Fprintf(w, "Ended:      %s\n", j.Ended.Local().Format(time.DateTime))
			}
			if len(j.Args) > 0 {
				fmt.Fprintf(w, "Args:       %s\n", strings.Join(j.Args, " "))
			}
			fmt.Fprintf(w, "Attempt:    %d (restarts allowed: %d)\n", j.Attempt, j.MaxRestarts)
			for i, r := range j.Restarts {
				fmt.Fprintf(w, "Restart %d:  %s\n", i+1, r)
			}
			if j.ExitCode != 0 {
				fmt.Fprintf(w, "Exit code:  %d\n", j.ExitCode)
			}
			if j.Error != "" {
				fmt.Fprintf(w, "Error:      %s\n", j.Error)
			}
			return nil
		},
	}
	cf.register(cmd, true)
	return cmd
}

func newJobLogsCmd() *cobra.Command {
	var (
		cf     clientFlags
		follow bool
	)
	cmd := &cobra.Command{
		Use:   "logs ID",
		Short: "Print a job's output (driver and tasks); -f follows it until the job ends",
		Long: `Logs prints the output the cluster kept of a job: its driver's and its tasks'
(each task line marked with its task, worker and node), stdout to stdout and
stderr to stderr. With -f it waits for more until the job ends, then exits
with the job's result as job submit does.`,
		Example: "  fabric job logs nightly-42\n  fabric job logs -f nightly-42",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := cf.client()
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			ended, err := cl.JobLogs(ctx, args[0], follow, cmd.OutOrStdout(), cmd.ErrOrStderr())
			if ctx.Err() != nil {
				return exitError{130}
			}
			if err != nil && (!ended || follow) {
				var je *fabric.JobError
				if errors.As(err, &je) {
					return jobFailed(fmt.Errorf("%s", strings.TrimPrefix(firstLine(err.Error()), "fabric: ")), err)
				}
				return err
			}
			return nil
		},
	}
	cf.register(cmd, false)
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "wait for more output until the job ends")
	return cmd
}

func newJobStopCmd() *cobra.Command {
	var cf clientFlags
	cmd := &cobra.Command{
		Use:   "stop ID",
		Short: "Stop a job: its driver and its tasks end, and it is recorded as stopped",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := cf.client()
			if err != nil {
				return err
			}
			j, err := cl.StopJob(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if cf.output == "json" || cf.output == "yaml" {
				return printAs(cmd.OutOrStdout(), cf.output, j)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "job %s %s\n", j.ID, j.State)
			return nil
		},
	}
	cf.register(cmd, true)
	return cmd
}

func newJobDeleteCmd() *cobra.Command {
	var cf clientFlags
	cmd := &cobra.Command{
		Use:   "delete ID",
		Short: "Delete a job that has ended, and its kept output",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := cf.client()
			if err != nil {
				return err
			}
			if err := cl.DeleteJob(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "job %s deleted\n", args[0])
			return nil
		},
	}
	cf.register(cmd, false)
	return cmd
}
