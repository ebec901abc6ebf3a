package main

import (
	"cmp"
	"fmt"
	"os"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/wasmfabric/fabric/fabric"
)

// newTenantCmd is `fabric tenant create | list | delete`.
func newTenantCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "tenant", Short: "Create, list and delete tenants: the parties that share the cluster",
		Long: `A tenant is a party that shares the cluster. Its members reach the cluster with
the tokens made for it (fabric token create). Managing tenants takes the
cluster's admin token, the one the first agent wrote to its data directory.`}
	var cf, lf, df, qf clientFlags
	var createQ, setQ quotaFlags
	create := &cobra.Command{
		Use:     "create NAME [--max-jobs N] [--max-cpus N] [--max-gpus N] [--max-memory SIZE] [--max-tasks N] [--max-actors N] [--max-object-store SIZE] [--max-spill SIZE]",
		Short:   "Create a tenant, with its quota",
		Example: "  fabric tenant create acme\n  fabric token create --tenant acme --role user > acme.token",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := cf.client()
			if err != nil {
				return err
			}
			info, err := createQ.info(args[0])
			if err != nil {
				return err
			}
			t, err := cl.CreateTenantWith(cmd.Context(), info)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "tenant %s created\n", t.Name)
			return nil
		},
	}
	cf.register(create, false)
	createQ.register(create)
	quota := &cobra.Command{
		Use:   "quota NAME [--max-jobs N] [--max-cpus N] [--max-gpus N] [--max-memory SIZE] [--max-tasks N] [--max-actors N] [--max-object-store SIZE] [--max-spill SIZE]",
		Short: "Set a tenant's quota: what it holds past a lower one stays, what comes next is refused",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := qf.client()
			if err != nil {
				return err
			}
			info, err := setQ.info(args[0])
			if err != nil {
				return err
			}
			t, err := cl.SetQuota(cmd.Context(), info)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "tenant %s: at most %s jobs that have not ended; %s CPUs, %s GPUs, %s of memory, %s tasks running, %s actors; on each node %s of objects, %s of spill files\n",
				t.Name, quotaText(t.MaxJobs), floatQuota(t.MaxCPUs), floatQuota(t.MaxGPUs), memQuota(t.MaxMemory), quotaText(t.MaxTasks), quotaText(t.MaxActors), memQuota(t.MaxObjectStore), memQuota(t.MaxSpill))
			return nil
		},
	}
	qf.register(quota, false)
	setQ.register(quota)
	list := &cobra.Command{
		Use:   "list",
		Short: "List the tenants",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := lf.client()
			if err != nil {
				return err
			}
			ts, err := cl.Tenants(cmd.Context())
			if err != nil {
				return err
			}
			if lf.output == "json" || lf.output == "yaml" {
				return printAs(cmd.OutOrStdout(), lf.output, ts)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tMAX JOBS\tMAX CPUS\tMAX GPUS\tMAX MEMORY\tMAX TASKS\tMAX ACTORS\tMAX OBJECTS\tMAX SPILL\tCREATED")
			for _, t := range ts {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.Name, quotaText(t.MaxJobs), floatQuota(t.MaxCPUs), floatQuota(t.MaxGPUs),
					memQuota(t.MaxMemory), quotaText(t.MaxTasks), quotaText(t.MaxActors), memQuota(t.MaxObjectStore), memQuota(t.MaxSpill), t.Created.Local().Format(time.DateTime))
			}
			return tw.Flush()
		},
	}
	lf.register(list, true)
	del := &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a tenant and its tokens (they stop working on every agent at once)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := df.client()
			if err != nil {
				return err
			}
			if err := cl.DeleteTenant(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "tenant %s deleted, with its tokens\n", args[0])
			return nil
		},
	}
	df.register(del, false)
	cmd.AddCommand(create, list, quota, del, newTenantKeyCmd())
	return cmd
}

// quotaFlags are a tenant's quota on the command line.
type quotaFlags struct {
	jobs, tasks, actors        uint32
	cpus, gpus                 float64
	memory, objectStore, spill string
}

func (q *quotaFlags) register(cmd *cobra.Command) {
	f := cmd.Flags()
	f.Uint32Var(&q.jobs, "max-jobs", 0, "the most jobs of the tenant that have not ended (0: no bound)")
	f.Float64Var(&q.cpus, "max-cpus", 0, "the most CPUs the tenant's running tasks and actors hold, across the cluster (0: no bound)")
	f.Float64Var(&q.gpus, "max-gpus", 0, "the most GPUs they hold (0: no bound)")
	f.StringVar(&q.memory, "max-memory", "", "the most memory they hold, e.g. 8GiB (default: no bound)")
	f.Uint32Var(&q.tasks, "max-tasks", 0, "the most of the tenant's tasks and actors that run at once (0: no bound)")
	f.Uint32Var(&q.actors, "max-actors", 0, "the most of the tenant's actors that live at once, across the cluster (0: no bound)")
	f.StringVar(&q.objectStore, "max-object-store", "", "the most bytes of the tenant's objects on each node, in memory or spilled, e.g. 2GiB (default: no bound)")
	f.StringVar(&q.spill, "max-spill", "", "the most bytes of the tenant's spill files on each node (default: an equal share of the node's spill room)")
}

func (q *quotaFlags) info(name string) (fabric.TenantInfo, error) {
	t := fabric.TenantInfo{Name: name, MaxJobs: q.jobs, MaxCPUs: q.cpus, MaxGPUs: q.gpus, MaxTasks: q.tasks, MaxActors: q.actors}
	if q.memory != "" {
		m, err := ParseSize(q.memory)
		if err != nil {
			return t, fmt.Errorf("--max-memory: %w", err)
		}
		t.MaxMemory = m
	}
	for _, s := range []struct {
		flag, v string
		dst     *int64
	}{{"--max-object-store", q.objectStore, &t.MaxObjectStore}, {"--max-spill", q.spill, &t.MaxSpill}} {
		if s.v == "" {
			continue
		}
		m, err := ParseSize(s.v)
		if err != nil {
			return t, fmt.Errorf("%s: %w", s.flag, err)
		}
		*s.dst = m
	}
	return t, nil
}

func floatQuota(f float64) string {
	if f == 0 {
		return "-"
	}
	return strconv.FormatFloat(f, 'f', -1, 64)
}

func memQuota(b int64) string {
	if b == 0 {
		return "-"
	}
	return fmt.Sprintf("%d MiB", b>>20)
}

// quotaText shows a bound, 0 being none.
func quotaText(n uint32) string {
	if n == 0 {
		return "-"
	}
	return fmt.Sprint(n)
}

// newTokenCmd is `fabric token create | list | revoke`.
func newTokenCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "token", Short: "Create, list and revoke tenants' API tokens",
		Long: `A token opens the cluster's API to a tenant's member, with a role: admin
(the tenant's tokens too), operator (every job and module of the tenant) or
user (its own jobs). Tokens are stored hashed in the control state: a token's
secret is printed once, when it is made, and never again. A token may expire
(--ttl), and a revoked one stops working on every agent at once.

A tenant's token opens the job and module routes (submit, list, status, logs,
stop, delete, upload, call: the tenant's own jobs and modules only), the
cluster's nodes and status, and fabric whoami; managing tenants and tokens
takes a cluster admin token (a token of no tenant: the first agent's, in its
data directory, or one made with fabric token create --role admin).`}
	var (
		cf   clientFlags
		req  fabric.TokenRequest
		lf   clientFlags
		tnt  string
		rf   clientFlags
		quit bool
		save string
	)
	create := &cobra.Command{
		Use:   "create [--tenant T] --role admin|operator|user [--ttl D]",
		Short: "Make a token and print it on stdout, alone (or --save it to a new file only its owner reads)",
		Example: `  fabric token create --tenant acme --role user --ttl 720h --save acme.token
  fabric whoami --token-file acme.token`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if req.Role == "" || req.Tenant == "" && req.Role != "admin" {
				return fmt.Errorf("--tenant and --role are needed (a cluster admin token: --role admin alone)")
			}
			cl, err := cf.client()
			if err != nil {
				return err
			}
			var out *os.File
			if save != "" {
				// Made before the token, so that a file in the way costs no
				// token; readable by its owner only, as --token-file wants.
				if out, err = os.OpenFile(save, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600); err != nil {
					return fmt.Errorf("--save: %w", err)
				}
				defer out.Close()
			}
			t, err := cl.CreateToken(cmd.Context(), req)
			if err != nil {
				if out != nil {
					out.Close()
					os.Remove(save)
				}
				return err
			}
			if out != nil {
				if _, err := fmt.Fprintln(out, t.Token); err != nil {
					return fmt.Errorf("--save: %w (the token %s was made: revoke it)", err, t.ID)
				}
				if err := out.Close(); err != nil {
					return fmt.Errorf("--save: %w (the token %s was made: revoke it)", err, t.ID)
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "token %s of tenant %s, role %s, saved to %s\n", t.ID, t.Tenant, t.Role, save)
				return nil
			}
			if !quit {
				expires := "never"
				if !t.Expires.IsZero() {
					expires = t.Expires.Local().Format(time.DateTime)
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "token %s of tenant %s, role %s, expires %s; it is shown once:\n", t.ID, t.Tenant, t.Role, expires)
			}
			fmt.Fprintln(cmd.OutOrStdout(), t.Token)
			return nil
		},
	}
	cf.register(create, false)
	create.Flags().StringVar(&req.Tenant, "tenant", "", "the tenant the token is for (none, with --role admin: the cluster's, over every tenant)")
	create.Flags().StringVar(&req.Role, "role", "", "admin, operator or user")
	create.Flags().DurationVar(&req.TTL, "ttl", 0, "how long the token works (default: until revoked)")
	create.Flags().StringVar(&req.Note, "note", "", "what the token is for, shown in listings")
	create.Flags().BoolVarP(&quit, "quiet", "q", false, "print the token alone, nothing on stderr")
	create.Flags().StringVar(&save, "save", "", "write the token to this new file (mode 0600) instead of stdout")
	list := &cobra.Command{
		Use:   "list [--tenant T]",
		Short: "List the tokens (never their secrets): ID, tenant, role, state, expiry",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := lf.client()
			if err != nil {
				return err
			}
			ts, err := cl.Tokens(cmd.Context(), tnt)
			if err != nil {
				return err
			}
			if lf.output == "json" || lf.output == "yaml" {
				return printAs(cmd.OutOrStdout(), lf.output, ts)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tTENANT\tROLE\tSTATE\tCREATED\tEXPIRES\tNOTE")
			for _, t := range ts {
				expires := "-"
				if !t.Expires.IsZero() {
					expires = t.Expires.Local().Format(time.DateTime)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, t.Tenant, t.Role, t.State, t.Created.Local().Format(time.DateTime), expires, orDash(t.Note))
			}
			return tw.Flush()
		},
	}
	lf.register(list, true)
	list.Flags().StringVar(&tnt, "tenant", "", "only this tenant's tokens")
	revoke := &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke a token: it stops working on every agent at once",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := rf.client()
			if err != nil {
				return err
			}
			if err := cl.RevokeToken(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "token %s revoked\n", args[0])
			return nil
		},
	}
	rf.register(revoke, false)
	cmd.AddCommand(create, list, revoke)
	return cmd
}

// newWhoamiCmd is `fabric whoami`.
func newWhoamiCmd() *cobra.Command {
	var cf clientFlags
	cmd := &cobra.Command{
		Use:   "whoami",
		Short: "Say who the API token is: the cluster's, or a tenant's (tenant, role, state)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := cf.client()
			if err != nil {
				return err
			}
			id, err := cl.Whoami(cmd.Context())
			if err != nil {
				return err
			}
			if cf.output == "json" || cf.output == "yaml" {
				return printAs(cmd.OutOrStdout(), cf.output, id)
			}
			if id.Cluster {
				fmt.Fprintf(cmd.OutOrStdout(), "token %s: a cluster admin token, every route, every tenant (%s)\n", cmp.Or(id.Token.ID, "-"), cmp.Or(id.Token.State, "active"))
				return nil
			}
			fmt.Fprintf(cmd.OutOrStdout(), "token %s of tenant %s, role %s (%s)\n", id.Token.ID, id.Token.Tenant, id.Token.Role, id.Token.State)
			return nil
		},
	}
	cf.register(cmd, true)
	return cmd
}
