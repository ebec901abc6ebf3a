package main

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/wasmfabric/fabric/fabric"
)

// listed says on stderr which nodes did not answer (so what of theirs is
// missing), and prints list as JSON or YAML when -o asks; done reports
// that it printed.
func (c *clientFlags) listed(cmd *cobra.Command, missing string, nodes []string, list any) (done bool, err error) {
	if len(nodes) > 0 {
		fmt.Fprintf(cmd.ErrOrStderr(), "fabric: nodes %s did not answer in time: their %s\n", strings.Join(nodes, ", "), missing)
	}
	if c.output == "json" || c.output == "yaml" {
		return true, printAs(cmd.OutOrStdout(), c.output, list)
	}
	return false, nil
}

// taskFilters reads --filter k=v flags into a task query.
func taskFilters(filters []string, limit int) (fabric.TaskQuery, error) {
	q := fabric.TaskQuery{Limit: limit}
	for _, f := range filters {
		k, v, ok := strings.Cut(f, "=")
		if !ok || v == "" {
			return q, fmt.Errorf("--filter %q: want KEY=VALUE, KEY one of job, state, name", f)
		}
		switch k {
		case "job":
			q.Job = v
		case "state":
			q.State = v
		case "name":
			q.Name = v
		default:
			return q, fmt.Errorf("--filter %q: filter by job, state (pending, running, finished, failed) or name", f)
		}
	}
	return q, nil
}

func newListTasksCmd() *cobra.Command {
	var (
		cf      clientFlags
		filters []string
		limit   int
	)
	cmd := &cobra.Command{
		Use:   "tasks",
		Short: "List the cluster's tasks (the newest, oldest first): state, node, attempts, errors",
		Long: `Tasks lists the tasks your token sees, from every node of the cluster: one
row per task that has not ended and per attempt that has, with its job,
function, state (pending, running, finished or failed), the node it ran on
and a failed task's error. Ended tasks are kept per node up to a bound
(the agent's --task-history); --limit shows the newest N that match.`,
		Example: "  fabric list tasks\n  fabric list tasks --filter job=train --filter state=failed\n  fabric list tasks --filter name=square -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			q, err := taskFilters(filters, limit)
			if err != nil {
				return err
			}
			cl, err := cf.client()
			if err != nil {
				return err
			}
			list, err := cl.Tasks(cmd.Context(), q)
			if err != nil {
				return err
			}
			if done, err := cf.listed(cmd, "tasks are not listed", list.Missing, list); done {
				return err
			}
			if err := printTasks(cmd.OutOrStdout(), list.Tasks, cf.output == "wide"); err != nil {
				return err
			}
			if len(list.Tasks) < list.Total {
				fmt.Fprintf(cmd.ErrOrStderr(), "fabric: the newest %d of %d tasks; --limit shows more (up to 10000), --filter fewer\n", len(list.Tasks), list.Total)
			}
			return nil
		},
	}
	cf.register(cmd, true)
	cmd.Flags().StringArrayVar(&filters, "filter", nil, "show only tasks with KEY=VALUE: job, state (pending, running, finished, failed) or name (repeatable)")
	cmd.Flags().IntVar(&limit, "limit", 100, "show the newest N tasks that match (1 to 10000)")
	return cmd
}

func printTasks(w io.Writer, tasks []fabric.TaskInfo, wide bool) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	head := "TASK\tJOB\tNAME\tKIND\tSTATE\tNODE\tATTEMPT\tDURATION\tERROR"
	if wide {
		head += "\tTENANT\tPID\tSUBMITTED\tACTOR"
	}
	fmt.Fprintln(tw, head)
	for _, t := range tasks {
		id := t.ID
		if !wide && len(id) > 16 {
			id = id[:16]
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s", id, t.Job, t.Name, t.Kind, t.State, t.Node, t.Attempt, taskDuration(t), orDash(errorLine(t.ErrorType, t.Error, wide)))
		if wide {
			pid := "-"
			if t.Pid != 0 {
				pid = fmt.Sprint(t.Pid)
			}
			fmt.Fprintf(tw, "\t%s\t%s\t%s\t%s", orDash(t.Tenant), pid, t.Submitted.Local().Format(time.DateTime), orDash(t.Actor))
		}
		fmt.Fprintln(tw)
	}
	return tw.Flush()
}

// taskDuration is how long a task ran (or runs), from its start, else
// from its placement.
func taskDuration(t fabric.TaskInfo) string {
	from := cmp.Or(t.Started, t.Placed)
	if from == nil {
		return "-"
	}
	to := time.Now()
	if t.Ended != nil {
		to = *t.Ended
	}
	return to.Sub(*from).Round(time.Millisecond).String()
}

// errorLine is an error's first line, cut to fit a table unless wide.
func errorLine(kind, msg string, wide bool) string {
	if msg == "" {
		return ""
	}
	line, _, _ := strings.Cut(msg, "\n")
	if kind != "" {
		line = kind + ": " + line
	}
	if !wide && len(line) > 60 {
		line = line[:57] + "..."
	}
	return line
}

func newSummaryCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "summary", Short: "Count the cluster's tasks, actors and objects"}
	var (
		cf      clientFlags
		filters []string
	)
	tasks := &cobra.Command{
		Use:     "tasks",
		Short:   "Count the tasks your token sees, cluster-wide, by function and state",
		Example: "  fabric summary tasks\n  fabric summary tasks --filter job=train -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			q, err := taskFilters(filters, 0)
			if err != nil {
				return err
			}
			cl, err := cf.client()
			if err != nil {
				return err
			}
			sum, err := cl.TaskSummary(cmd.Context(), q)
			if err != nil {
				return err
			}
			if done, err := cf.listed(cmd, "tasks are not counted", sum.Missing, sum); done {
				return err
			}
			states := []string{"pending", "running", "finished", "failed"}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tKIND\tTOTAL\tPENDING\tRUNNING\tFINISHED\tFAILED\tRETRIES")
			for _, r := range sum.Rows {
				fmt.Fprintf(tw, "%s\t%s\t%d", r.Name, r.Kind, r.Total)
				for _, s := range states {
					fmt.Fprintf(tw, "\t%d", r.States[s])
				}
				fmt.Fprintf(tw, "\t%d\n", r.Retries)
			}
			return tw.Flush()
		},
	}
	cf.register(tasks, true)
	tasks.Flags().StringArrayVar(&filters, "filter", nil, "count only tasks with KEY=VALUE: job, state or name (repeatable)")
	cmd.AddCommand(tasks, newSummaryActorsCmd(), newSummaryObjectsCmd())
	return cmd
}

func newSummaryActorsCmd() *cobra.Command {
	var (
		cf      clientFlags
		filters []string
	)
	cmd := &cobra.Command{
		Use:     "actors",
		Short:   "Count the actors your token sees, cluster-wide, by class and state, with their restarts",
		Example: "  fabric summary actors\n  fabric summary actors --filter job=train -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			job, err := jobFilter(filters)
			if err != nil {
				return err
			}
			cl, err := cf.client()
			if err != nil {
				return err
			}
			sum, err := cl.ActorSummary(cmd.Context(), fabric.ActorQuery{Job: job})
			if err != nil {
				return err
			}
			if done, err := cf.listed(cmd, "actors are not counted", sum.Missing, sum); done {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "CLASS\tTOTAL\tPENDING\tALIVE\tRESTARTING\tDEAD\tRESTARTS")
			for _, r := range sum.Rows {
				fmt.Fprintf(tw, "%s\t%d", r.Class, r.Total)
				for _, s := range []string{"pending", "alive", "restarting", "dead"} {
					fmt.Fprintf(tw, "\t%d", r.States[s])
				}
				fmt.Fprintf(tw, "\t%d\n", r.Restarts)
			}
			return tw.Flush()
		},
	}
	cf.register(cmd, true)
	cmd.Flags().StringArrayVar(&filters, "filter", nil, "count only one job's actors: job=ID")
	return cmd
}

func newSummaryObjectsCmd() *cobra.Command {
	var (
		cf      clientFlags
		filters []string
	)
	cmd := &cobra.Command{
		Use:     "objects",
		Short:   "Count the objects your token sees, cluster-wide, by job: how many, their size, their state, spilled",
		Long:    "Summary objects counts each object once however many nodes hold a copy of it.",
		Example: "  fabric summary objects\n  fabric summary objects --filter job=train -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			job, err := jobFilter(filters)
			if err != nil {
				return err
			}
			cl, err := cf.client()
			if err != nil {
				return err
			}
			sum, err := cl.ObjectSummary(cmd.Context(), job)
			if err != nil {
				return err
			}
			if len(sum.Truncated) > 0 {
				fmt.Fprintf(cmd.ErrOrStderr(), "fabric: these nodes hold more objects than a summary counts, and only some are counted: %s\n", strings.Join(sum.Truncated, ", "))
			}
			if done, err := cf.listed(cmd, "objects are not counted", sum.Missing, sum); done {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "JOB\tOBJECTS\tSIZE\tPENDING\tREADY\tERROR\tSPILLED\tSPILLED SIZE")
			for _, r := range sum.Rows {
				fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%d\t%d\t%d\t%s\n", orDash(r.Job), r.Objects, formatBytes(float64(r.Bytes)),
					r.States["pending"], r.States["ready"], r.States["error"], r.Spilled, formatBytes(float64(r.SpilledBytes)))
			}
			return tw.Flush()
		},
	}
	cf.register(cmd, true)
	cmd.Flags().StringArrayVar(&filters, "filter", nil, "count only one job's objects: job=ID")
	return cmd
}

func newListActorsCmd() *cobra.Command {
	var (
		cf      clientFlags
		filters []string
		limit   int
	)
	cmd := &cobra.Command{
		Use:   "actors",
		Short: "List the cluster's actors: class, name, state, node, restarts, why a dead one died",
		Long: `Actors lists the actors your token sees, from every node of the cluster, as
their owners (the nodes whose jobs created them) know them: pending,
alive, restarting or dead (while their job runs), with the node each lives
on and its restarts.`,
		Example: "  fabric list actors\n  fabric list actors --filter state=dead -o wide\n  fabric list actors --filter job=train --filter class=Counter -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			q := fabric.ActorQuery{Limit: limit}
			for _, f := range filters {
				k, v, ok := strings.Cut(f, "=")
				switch {
				case !ok || v == "":
					return fmt.Errorf("--filter %q: want KEY=VALUE, KEY one of job, state, class", f)
				case k == "job":
					q.Job = v
				case k == "state":
					q.State = v
				case k == "class":
					q.Class = v
				default:
					return fmt.Errorf("--filter %q: filter by job, state (pending, alive, restarting, dead) or class", f)
				}
			}
			cl, err := cf.client()
			if err != nil {
				return err
			}
			list, err := cl.Actors(cmd.Context(), q)
			if err != nil {
				return err
			}
			if done, err := cf.listed(cmd, "actors are not listed", list.Missing, list); done {
				return err
			}
			wide := cf.output == "wide"
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			head := "ACTOR\tCLASS\tNAME\tJOB\tSTATE\tNODE\tRESTARTS\tAGE"
			if wide {
				head += "\tTENANT\tNAMESPACE\tPID\tDETACHED\tDEATH CAUSE"
			}
			fmt.Fprintln(tw, head)
			for _, a := range list.Actors {
				id := a.ID
				if !wide && len(id) > 16 {
					id = id[:16]
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s", id, a.Class, orDash(a.Name), a.Job, a.State, a.Node, a.Restarts, time.Since(a.Created).Round(time.Second))
				if wide {
					pid := "-"
					if a.Pid != 0 {
						pid = fmt.Sprint(a.Pid)
					}
					fmt.Fprintf(tw, "\t%s\t%s\t%s\t%v\t%s", orDash(a.Tenant), orDash(a.Namespace), pid, a.Detached, orDash(errorLine("", a.DeathCause, true)))
				}
				fmt.Fprintln(tw)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if len(list.Actors) < list.Total {
				fmt.Fprintf(cmd.ErrOrStderr(), "fabric: the newest %d of %d actors; --limit shows more (up to 10000), --filter fewer\n", len(list.Actors), list.Total)
			}
			return nil
		},
	}
	cf.register(cmd, true)
	cmd.Flags().StringArrayVar(&filters, "filter", nil, "show only actors with KEY=VALUE: job, state (pending, alive, restarting, dead) or class (repeatable)")
	cmd.Flags().IntVar(&limit, "limit", 100, "show the newest N actors that match (1 to 10000)")
	return cmd
}

func newTimelineCmd() *cobra.Command {
	var (
		cf  clientFlags
		out string
	)
	cmd := &cobra.Command{
		Use:   "timeline JOB",
		Short: "Write a job's task spans as a Chrome trace (chrome://tracing, ui.perfetto.dev)",
		Long: `Timeline writes the spans of a job's tasks, each attempt where it ran (node)
and in which worker process, as a Chrome trace: open the file in
chrome://tracing or https://ui.perfetto.dev. The spans are those of the
task records the nodes keep (--task-history on the agents).`,
		Example: "  fabric timeline train\n  fabric timeline train -o trace.json",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := cf.client()
			if err != nil {
				return err
			}
			trace, err := cl.Timeline(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			var events []json.RawMessage
			if err := json.Unmarshal(trace, &events); err != nil {
				return fmt.Errorf("the agent's timeline: %w", err)
			}
			if out == "-" {
				_, err := cmd.OutOrStdout().Write(append(trace, '\n'))
				return err
			}
			if out == "" {
				out = "timeline-" + strings.NewReplacer(":", "-", "/", "-").Replace(args[0]) + ".json"
			}
			if err := os.WriteFile(out, trace, 0o644); err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "wrote %d spans to %s: open it in chrome://tracing or https://ui.perfetto.dev\n", len(events), out)
			return nil
		},
	}
	cf.register(cmd, false)
	cmd.Flags().StringVarP(&out, "output", "o", "", "the file to write (default timeline-JOB.json; - for standard output)")
	return cmd
}

func newListObjectsCmd() *cobra.Command {
	var (
		cf      clientFlags
		filters []string
		limit   int
	)
	cmd := &cobra.Command{
		Use:   "objects",
		Short: "List the cluster's objects: size, job, the nodes that hold them, spilled or not, references",
		Long: `Objects lists the objects your token sees, as the nodes' records of them
tell, merged by ID: its size, its job, its state (pending, ready or error),
the nodes that hold its bytes, whether the store spilled it to disk, and
the references the nodes hold.`,
		Example: "  fabric list objects\n  fabric list objects --filter job=train -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			job, err := jobFilter(filters)
			if err != nil {
				return err
			}
			cl, err := cf.client()
			if err != nil {
				return err
			}
			list, err := cl.Objects(cmd.Context(), job, limit)
			if err != nil {
				return err
			}
			if done, err := cf.listed(cmd, "objects are not listed", list.Missing, list); done {
				return err
			}
			wide := cf.output == "wide"
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			head := "OBJECT\tJOB\tSIZE\tSTATE\tLOCATIONS\tSPILLED\tREFS"
			if wide {
				head += "\tTENANT\tPRODUCER\tINLINE"
			}
			fmt.Fprintln(tw, head)
			for _, o := range list.Objects {
				id := o.ID
				if !wide && len(id) > 16 {
					id = id[:16]
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%v\t%d", id, orDash(o.Job), formatBytes(float64(o.Size)), o.State, orDash(strings.Join(o.Locations, ",")), o.Spilled, o.Refs)
				if wide {
					fmt.Fprintf(tw, "\t%s\t%s\t%v", orDash(o.Tenant), orDash(o.Producer), o.Inline)
				}
				fmt.Fprintln(tw)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if len(list.Objects) < list.Total {
				fmt.Fprintf(cmd.ErrOrStderr(), "fabric: %d of %d objects; --limit shows more (up to 10000), --filter fewer\n", len(list.Objects), list.Total)
			}
			return nil
		},
	}
	cf.register(cmd, true)
	cmd.Flags().StringArrayVar(&filters, "filter", nil, "show only objects with KEY=VALUE: job")
	cmd.Flags().IntVar(&limit, "limit", 100, "show at most N objects (1 to 10000)")
	return cmd
}

// jobFilter reads --filter job=ID, the one filter of the listings that
// take no other.
func jobFilter(filters []string) (string, error) {
	job := ""
	for _, f := range filters {
		k, v, ok := strings.Cut(f, "=")
		if !ok || k != "job" || v == "" {
			return "", fmt.Errorf("--filter %q: filter by job=ID", f)
		}
		job = v
	}
	return job, nil
}

func newListGroupsCmd() *cobra.Command {
	var (
		cf      clientFlags
		filters []string
		limit   int
	)
	cmd := &cobra.Command{
		Use:     "placement-groups",
		Aliases: []string{"pgs"},
		Short:   "List the cluster's placement groups: strategy, state, bundles and their nodes",
		Example: "  fabric list placement-groups\n  fabric list placement-groups --filter job=train -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			job, err := jobFilter(filters)
			if err != nil {
				return err
			}
			cl, err := cf.client()
			if err != nil {
				return err
			}
			list, err := cl.PlacementGroups(cmd.Context(), job, limit)
			if err != nil {
				return err
			}
			if done, err := cf.listed(cmd, "groups are not listed", list.Missing, list); done {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "PLACEMENT GROUP\tNAME\tJOB\tSTRATEGY\tSTATE\tBUNDLES\tNODES\tREASON")
			for _, g := range list.Groups {
				bundles := make([]string, len(g.Bundles))
				for i, b := range g.Bundles {
					bundles[i] = "{" + joinAmounts(b) + "}"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", g.ID[:min(16, len(g.ID))], orDash(g.Name), g.Job, g.Strategy, g.State,
					strings.Join(bundles, " "), orDash(strings.Join(g.Nodes, ",")), orDash(errorLine("", g.Reason, cf.output == "wide")))
			}
			return tw.Flush()
		},
	}
	cf.register(cmd, true)
	cmd.Flags().StringArrayVar(&filters, "filter", nil, "show only the groups of job=ID")
	cmd.Flags().IntVar(&limit, "limit", 100, "show at most N groups (1 to 10000)")
	return cmd
}

func newListWorkersCmd() *cobra.Command {
	var (
		cf      clientFlags
		filters []string
		limit   int
	)
	cmd := &cobra.Command{
		Use:   "workers",
		Short: "List the cluster's workers (sandbox instances of jobs' modules): node, process, state, what each runs",
		Long: `Workers lists the workers your token sees: each is an instance of a job's
module in its job's worker process on a node, running a driver, an actor
or tasks; its state is starting, loading, idle, busy, parked (busy,
blocked in get or wait) or stopping.`,
		Example: "  fabric list workers\n  fabric list workers --filter job=train -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			job, err := jobFilter(filters)
			if err != nil {
				return err
			}
			cl, err := cf.client()
			if err != nil {
				return err
			}
			list, err := cl.Workers(cmd.Context(), job, limit)
			if err != nil {
				return err
			}
			if done, err := cf.listed(cmd, "workers are not listed", list.Missing, list); done {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NODE\tWORKER\tPID\tJOB\tKIND\tSTATE\tRUNNING\tLEASED")
			for _, w := range list.Workers {
				pid := "-"
				if w.Pid != 0 {
					pid = fmt.Sprint(w.Pid)
				}
				fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%v\n", w.Node, w.ID, pid, w.Job, w.Kind, w.State, orDash(w.Running), w.Leased)
			}
			return tw.Flush()
		},
	}
	cf.register(cmd, true)
	cmd.Flags().StringArrayVar(&filters, "filter", nil, "show only the workers of job=ID")
	cmd.Flags().IntVar(&limit, "limit", 100, "show at most N workers (1 to 10000)")
	return cmd
}
