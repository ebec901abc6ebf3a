package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/wasmfabric/fabric/fabric"
	"github.com/wasmfabric/fabric/internal/gcpace"
)

func newAgentCmd() *cobra.Command {
	var (
		cfg                      fabric.AgentConfig
		join, labels, ress       []string
		memory, store            string
		spill, jobLog, tenantMem string
		moduleDisk               string
		drainTimeout             time.Duration
		cpus, gpus               float64
		config, tokenFile        string
	)
	cmd := &cobra.Command{
		Use:   "agent [flags]",
		Short: "Run a long-lived node of a cluster (agent and workers)",
		Long: `Agent runs one node of a Fabric cluster until it is interrupted. The first
agent creates the cluster: a gossip key, a certificate authority (CA) for
mutual TLS, and the cluster's admin token, all in its data directory (the
admin token in api-token, which local commands read; nothing secret is
printed). Every other node joins with a join token, made on a member with
fabric join-token create (one-time, expiring; --server for a node that
holds the control state too): pass it in FABRIC_JOIN_TOKEN or a file
readable by its owner only (--token-file). The new node makes its own key,
and a server signs its certificate; the CA's key stays on the servers.

Every flag may also come from the environment (FABRIC_ and its name in
upper case: --num-cpus is FABRIC_NUM_CPUS; --token is FABRIC_JOIN_TOKEN)
or from a JSON config file (--config, or config.json in the data
directory), an object of flag names and values, e.g.
{"num-cpus": 8, "labels": {"tier": "edge"}, "join": ["10.0.0.1:7946"]}.
The command line comes first, then the environment, then the file.`,
		Example: `  fabric agent                                          # the first node: makes the cluster
  fabric join-token create --save node2.token           # on the first node
  fabric agent --token-file node2.token --labels tier=edge   # on the new node
  fabric agent --data-dir /var/lib/fabric --num-cpus 8 --memory 16GiB`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := applySettings(cmd.Flags(), map[string]string{"token": "FABRIC_JOIN_TOKEN", "token-file": "FABRIC_JOIN_TOKEN_FILE"}, config, cfg.DataDir); err != nil {
				return err
			}
			var err error
			if tokenFile != "" {
				if cfg.Token != "" {
					return errors.New("--token and --token-file: pass one")
				}
				if cfg.Token, err = readTokenFile(tokenFile); err != nil {
					return err
				}
			}
			if cfg.Labels, err = parseKVs("labels", labels); err != nil {
				return err
			}
			res, err := parseKVs("resources", ress)
			if err != nil {
				return err
			}
			cfg.Join = join
			cfg.Node.NumCPUs, cfg.Node.GPUs = cpus, gpus
			if memory != "" {
				if cfg.Node.Memory, err = ParseSize(memory); err != nil {
					return fmt.Errorf("--memory: %w", err)
				}
			}
			if tenantMem != "" {
				if cfg.Node.TenantMemory, err = ParseSize(tenantMem); err != nil {
					return fmt.Errorf("--tenant-memory: %w", err)
				}
			}
			if spill != "" {
				if cfg.Node.SpillLimit, err = ParseSize(spill); err != nil {
					return fmt.Errorf("--spill-limit: %w", err)
				}
			}
			if moduleDisk != "" {
				if cfg.ModuleDiskLimit, err = ParseSize(moduleDisk); err != nil {
					return fmt.Errorf("--module-disk-limit: %w", err)
				}
			}
			if jobLog != "" {
				if cfg.JobLogLimit, err = ParseSize(jobLog); err != nil {
					return fmt.Errorf("--job-log-limit: %w", err)
				}
			}
			if store != "" {
				if cfg.Node.ObjectStoreMemory, err = ParseSize(store); err != nil {
					return fmt.Errorf("--object-store-memory: %w", err)
				}
			}
			for k, v := range res {
				f, err := strconv.ParseFloat(v, 64)
				if err != nil {
					return fmt.Errorf("--resources: %s=%q is not a number", k, v)
				}
				if cfg.Node.Resources == nil {
					cfg.Node.Resources = map[string]float64{}
				}
				cfg.Node.Resources[k] = f
			}
			out := cmd.OutOrStdout()
			switch {
			case cfg.ServeAddr == "off":
				cfg.ServeAddr = ""
			case !cmd.Flags().Changed("serve-addr"):
				// The default port may be another agent's on this machine:
				// then this one runs without an ingress, and says so.
				cfg.ServeOptional = true
			}
			cfg.Node.Stdout, cfg.Node.Stderr = out, cmd.ErrOrStderr()
			cfg.Log = cmd.ErrOrStderr() // membership changes; serf's own lines stay out
			cfg.GossipLog = io.Discard
			// The agent serves others: its collector runs at the pace
			// of a server's tail latency (internal/gcpace).
			defer gcpace.Start(gcpace.DefaultHeadroom)()
			a, err := fabric.StartAgent(cfg)
			if err != nil {
				return err
			}
			files := map[string]string{apiAddrFile: "https://" + a.HTTPAddr()}
			if tok := a.APIToken(); tok != "" {
				files[apiTokenFile] = tok
			}
			for name, v := range files {
				if err := os.WriteFile(filepath.Join(cfg.DataDir, name), []byte(v+"\n"), 0o600); err != nil {
					_ = a.Close()
					return err
				}
			}
			if unannounce, err := announceLocalAgent(cfg.DataDir); err == nil {
				defer unannounce()
			}
			fmt.Fprintf(out, "fabric agent %s\n", a.ID)
			fmt.Fprintf(out, "  gossip:     %s\n", a.GossipAddr())
			fmt.Fprintf(out, "  HTTP API:   https://%s\n", a.HTTPAddr())
			fmt.Fprintf(out, "  data dir:   %s\n", cfg.DataDir)
			fmt.Fprintf(out, "  QUIC:       %s\n", a.QUICAddr())
			if a.IngressAddr() != "" {
				fmt.Fprintf(out, "  Serve:      http://%s (fabric serve deploy)\n", a.IngressAddr())
			}
			if a.APIToken() != "" {
				fmt.Fprintf(out, "  API token:  in %s (local commands read it)\n", filepath.Join(cfg.DataDir, apiTokenFile))
			}
			fmt.Fprintln(out, "Add a node: make a join token here (fabric join-token create --save FILE), then on the node: fabric agent --token-file FILE")
			// SIGUSR1 writes the node's state to stderr, for operators.
			usr1 := make(chan os.Signal, 1)
			signal.Notify(usr1, syscall.SIGUSR1)
			defer signal.Stop(usr1)
			go func() {
				for range usr1 {
					fmt.Fprint(cmd.ErrOrStderr(), a.DebugState())
				}
			}()
			sig := make(chan os.Signal, 2)
			signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
			<-sig
			// Drain first: no new work, the work here ends; a second
			// signal, or --drain-timeout, cuts it short.
			fmt.Fprintf(out, "fabric agent: draining (up to %s; signal again to leave now)\n", drainTimeout)
			ctx, cancel := context.WithTimeout(context.Background(), drainTimeout)
			go func() {
				select {
				case <-sig:
				case <-ctx.Done():
				}
				cancel()
			}()
			_ = a.Drain(ctx)
			cancel()
			fmt.Fprintln(out, "fabric agent: leaving the cluster")
			return a.Leave()
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.DataDir, "data-dir", defaultDataDir(), "directory for the cluster's secrets and the node's state (env FABRIC_DATA_DIR)")
	f.StringVar(&cfg.GossipAddr, "gossip-addr", fabric.DefaultGossipAddr, "gossip address (UDP and TCP)")
	f.StringVar(&cfg.QUICAddr, "quic-addr", fabric.DefaultQUICAddr, "QUIC address for objects and control messages")
	f.StringVar(&cfg.HTTPAddr, "http-addr", fabric.DefaultHTTPAddr, "HTTP API address")
	f.StringVar(&cfg.ServeAddr, "serve-addr", fabric.DefaultServeAddr, "Serve's HTTP ingress, where deployments answer (off: none; when the default is taken, the agent runs without one)")
	f.StringVar(&cfg.AdvertiseHost, "advertise", "", "host or IP other nodes reach this one at (default: picked by the gossip layer)")
	f.StringVar(&cfg.AdvertiseQUIC, "advertise-quic", "", "host:port other nodes dial for QUIC, when a NAT or relay forwards it (default: the QUIC address)")
	f.StringSliceVar(&join, "join", nil, "gossip address of any member to join, host:port (repeatable)")
	f.StringVar(&cfg.Token, "token", "", "join token, from fabric join-token create on a member (env FABRIC_JOIN_TOKEN; better: --token-file)")
	f.StringVar(&tokenFile, "token-file", "", "read the join token from this file, readable by its owner only (env FABRIC_JOIN_TOKEN_FILE)")
	f.DurationVar(&cfg.CertTTL, "cert-ttl", fabric.DefaultCertTTL, "on a server: how long the node certificates it signs are valid (nodes renew theirs when a third is left)")
	f.BoolVar(&cfg.Bootstrap, "bootstrap", false, "form a new control plane from this server (for the first agent of a cluster made before the control plane; never on two agents)")
	f.StringSliceVar(&labels, "labels", nil, "node labels for label selectors, KEY=VALUE,...")
	f.Float64Var(&cpus, "num-cpus", 0, "CPUs the node offers (default: the machine's cores)")
	f.Float64Var(&gpus, "num-gpus", 0, "GPUs the node offers")
	f.StringVar(&memory, "memory", "", "memory the node offers to tasks, e.g. 16GiB (default: the machine's)")
	f.StringVar(&store, "object-store-memory", "", "size of the shared object arena (default 1GiB); a quarter of it bounds the objects' records and small values in the agent's memory")
	f.StringVar(&spill, "spill-limit", "", "disk space objects past the arena may spill to (default: 4x the arena)")
	f.StringVar(&cfg.Node.TenantCgroups, "tenant-cgroups", fabric.CgroupsAuto, "put each tenant's worker processes in a control group of its own, with a memory limit and a CPU weight: auto (where the kernel offers cgroups), on (required) or off")
	f.StringVar(&tenantMem, "tenant-memory", "", "the memory a tenant's workers here hold together when its quota sets none, e.g. 8GiB (default: half the node's memory; needs control groups)")
	f.StringSliceVar(&ress, "resources", nil, "custom resources, NAME=AMOUNT,...")
	f.DurationVar(&drainTimeout, "drain-timeout", 5*time.Minute, "on SIGTERM, how long to wait for the jobs and tasks here to end before leaving")
	f.IntVar(&cfg.Node.TaskHistory, "task-history", 0, "records of ended tasks kept here for fabric list tasks (default 100000; -1: none); when full, the tenant with the most loses its oldest")
	f.IntVar(&cfg.MaxRunningJobs, "max-running-jobs", 0, "drivers that run here at once; later jobs wait, pending (default 32)")
	f.StringVar(&moduleDisk, "module-disk-limit", "", "disk for modules and their compiled code (default 8GiB); past it, what no job uses is removed, least recently used first (compiled code first), keeping one copy of each uploaded module")
	f.StringVar(&jobLog, "job-log-limit", "", "output kept of each job whose driver runs here (default 16MiB); past it, output is counted, not kept")
	f.StringVar(&config, "config", "", "JSON file of flag values (default: config.json in the data directory, when there)")
	return cmd
}
