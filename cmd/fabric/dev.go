//go:build linux

package main

import (
	"path/filepath"

	"github.com/spf13/cobra"
)

// newDevCmd is `fabric dev`: one agent on loopback for local work. It is
// `fabric agent` with every address on 127.0.0.1 and its own data
// directory; the other commands on the machine find it by themselves.
func newDevCmd() *cobra.Command {
	var dataDir, cpus, memory, httpAddr string
	cmd := &cobra.Command{
		Use:   "dev [flags]",
		Short: "Run a one-node cluster on loopback for local work",
		Long: `Dev runs one agent that listens on 127.0.0.1 only, keeping its state in
its own data directory (default ~/.fabric/dev), until it is interrupted.
Commands on this machine (fabric status, submit, list) find it without
--address or --token. For a cluster, run fabric agent instead.`,
		Example: "  fabric dev\n  fabric dev --num-cpus 4   # then, in another terminal: fabric submit job.wasm",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			agent := newAgentCmd()
			agent.SetOut(cmd.OutOrStdout())
			agent.SetErr(cmd.ErrOrStderr())
			set := map[string]string{
				// Nobody joins a dev node: gossip and QUIC take any free port.
				"data-dir": dataDir, "gossip-addr": "127.0.0.1:0", "quic-addr": "127.0.0.1:0",
				"http-addr": httpAddr, "advertise": "127.0.0.1",
			}
			if cpus != "" {
				set["num-cpus"] = cpus
			}
			if memory != "" {
				set["memory"] = memory
			}
			for k, v := range set {
				if err := agent.Flags().Set(k, v); err != nil {
					return err
				}
			}
			cmd.Println("fabric dev: one node on loopback; in another terminal, `fabric status` and `fabric submit FILE.wasm` find it.")
			return agent.RunE(agent, nil)
		},
	}
	f := cmd.Flags()
	f.StringVar(&dataDir, "data-dir", filepath.Join(defaultDataDir(), "dev"), "directory for the dev node's state")
	f.StringVar(&httpAddr, "http-addr", "127.0.0.1:7948", "HTTP API address (loopback)")
	f.StringVar(&cpus, "num-cpus", "", "CPUs the node offers (default: the machine's cores)")
	f.StringVar(&memory, "memory", "", "memory the node offers to tasks, e.g. 4Gi (default: the machine's)")
	return cmd
}
