package main

import (
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/wasmfabric/fabric/fabric"
)

// newJoinTokenCmd is `fabric join-token create | list | delete`.
func newJoinTokenCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "join-token", Short: "Create, list and delete join tokens: each admits one node, once",
		Long: `A join token admits one node to the cluster, once, before it expires (--ttl,
default 1h). The new node makes its own key and sends a certificate request
to a server, which spends the token and signs the node's certificate; the
CA's key stays on the servers (a --server token makes a server, which gets
it). The token's secret is shown once, when it is made: pass it to the new
node in FABRIC_JOIN_TOKEN or a file only its owner reads (--token-file).
Takes a cluster admin token.`}
	var (
		cf, lf, df clientFlags
		req        fabric.JoinTokenRequest
		save       string
		quiet      bool
	)
	create := &cobra.Command{
		Use:   "create [--ttl D] [--server] [--save FILE]",
		Short: "Make a join token and print it on stdout, alone (or --save it to a new file only its owner reads)",
		Example: `  fabric join-token create --save node2.token          # then, on the new node:
  fabric agent --token-file node2.token
  fabric join-token create --server --ttl 10m --save server2.token`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := cf.client()
			if err != nil {
				return err
			}
			out, err := createSecretFile(save)
			if err != nil {
				return err
			}
			t, err := cl.CreateJoinToken(cmd.Context(), req)
			if err != nil {
				out.discard()
				return err
			}
			kind := "a node"
			if t.Server {
				kind = "a server"
			}
			if out != nil {
				if err := out.write(t.Token); err != nil {
					return fmt.Errorf("--save: %w (the join token %s was made: delete it)", err, t.ID)
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "join token %s for %s, expires %s, saved to %s\n", t.ID, kind, t.Expires.Local().Format(time.DateTime), save)
				return nil
			}
			if !quiet {
				fmt.Fprintf(cmd.ErrOrStderr(), "join token %s for %s, expires %s; it is shown once:\n", t.ID, kind, t.Expires.Local().Format(time.DateTime))
			}
			fmt.Fprintln(cmd.OutOrStdout(), t.Token)
			return nil
		},
	}
	cf.register(create, false)
	create.Flags().DurationVar(&req.TTL, "ttl", fabric.DefaultJoinTokenTTL, "how long the token works (at most 168h)")
	create.Flags().BoolVar(&req.Server, "server", false, "the node that joins holds the control state and the CA's key")
	create.Flags().StringVar(&req.Note, "note", "", "what the token is for, shown in listings")
	create.Flags().BoolVarP(&quiet, "quiet", "q", false, "print the token alone, nothing on stderr")
	create.Flags().StringVar(&save, "save", "", "write the token to this new file (mode 0600) instead of stdout")
	list := &cobra.Command{
		Use:   "list",
		Short: "List the join tokens (never their secrets): ID, kind, state, expiry, the node that used it",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := lf.client()
			if err != nil {
				return err
			}
			ts, err := cl.JoinTokens(cmd.Context())
			if err != nil {
				return err
			}
			if lf.output == "json" || lf.output == "yaml" {
				return printAs(cmd.OutOrStdout(), lf.output, ts)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tKIND\tSTATE\tCREATED\tEXPIRES\tUSED BY\tNOTE")
			for _, t := range ts {
				kind := "node"
				if t.Server {
					kind = "server"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, kind, t.State, t.Created.Local().Format(time.DateTime),
					t.Expires.Local().Format(time.DateTime), orDash(t.UsedBy), orDash(t.Note))
			}
			return tw.Flush()
		},
	}
	lf.register(list, true)
	del := &cobra.Command{
		Use:   "delete ID",
		Short: "Delete a join token: it admits no one after",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := df.client()
			if err != nil {
				return err
			}
			if err := cl.DeleteJoinToken(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "join token %s deleted\n", args[0])
			return nil
		},
	}
	df.register(del, false)
	cmd.AddCommand(create, list, del)
	return cmd
}

// newNodeCmd is `fabric node list | revoke`.
func newNodeCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "node", Short: "List the nodes the cluster admitted; revoke one"}
	var lf, rf clientFlags
	list := &cobra.Command{
		Use:   "list",
		Short: "List the admitted nodes, revoked ones too (fabric list nodes shows the members gossip knows)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := lf.client()
			if err != nil {
				return err
			}
			ns, err := cl.AdmittedNodes(cmd.Context())
			if err != nil {
				return err
			}
			if lf.output == "json" || lf.output == "yaml" {
				return printAs(cmd.OutOrStdout(), lf.output, ns)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tROLE\tJOINED\tREVOKED")
			for _, n := range ns {
				role, revoked := "client", "-"
				if n.Server {
					role = "server"
				}
				if !n.Revoked.IsZero() {
					revoked = n.Revoked.Local().Format(time.DateTime)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", n.ID, role, n.Joined.Local().Format(time.DateTime), revoked)
			}
			return tw.Flush()
		},
	}
	lf.register(list, true)
	revoke := &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke a node: every member refuses it from then on, and its certificate is not renewed",
		Long: `Revoke a node: every member refuses its handshakes and closes what it has
open with it (within seconds), its certificate is not renewed, and its ID is
never admitted again. Its work is lost as if it had failed. Rotate the
gossip key after revoking a node that may be hostile: it still holds the
current one.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := rf.client()
			if err != nil {
				return err
			}
			if err := cl.RevokeNode(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "node %s revoked\n", args[0])
			return nil
		},
	}
	rf.register(revoke, false)
	cmd.AddCommand(list, revoke)
	return cmd
}

// secretFile is a new file, readable by its owner only, that a secret
// is written to; made before the secret, so that a file in the way
// costs none.
type secretFile struct {
	f    *os.File
	path string
}

// createSecretFile makes path ("": none, and a nil secretFile).
func createSecretFile(path string) (*secretFile, error) {
	if path == "" {
		return nil, nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("--save: %w", err)
	}
	return &secretFile{f: f, path: path}, nil
}

// discard removes the file (nothing was made to write in it).
func (s *secretFile) discard() {
	if s != nil {
		s.f.Close()
		os.Remove(s.path)
	}
}

func (s *secretFile) write(secret string) error {
	if _, err := fmt.Fprintln(s.f, secret); err != nil {
		s.f.Close()
		return err
	}
	return s.f.Close()
}

// newGossipKeyCmd is `fabric gossip-key rotate`.
func newGossipKeyCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "gossip-key", Short: "Rotate the key that encrypts the cluster's gossip"}
	var cf clientFlags
	rotate := &cobra.Command{
		Use:   "rotate",
		Short: "Move every member to a new gossip key (after revoking a node: it still holds the old one)",
		Long: `Rotate draws a new gossip key on a server and tells every alive member that
is not revoked, over mutual TLS: install it, use it, drop the old one. A
revoked node is not told, so it can no longer read or join the gossip. A
member that could not be told keeps the cluster on both keys (the old one is
not dropped): rotate again once it is back, or revoke it. A node that was
down during a rotation asks a server for the new key when it starts again.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := cf.client()
			if err != nil {
				return err
			}
			out, err := cl.RotateGossipKey(cmd.Context())
			if err != nil {
				return err
			}
			if cf.output == "json" || cf.output == "yaml" {
				return printAs(cmd.OutOrStdout(), cf.output, out)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "the gossip key was rotated on %d nodes\n", len(out.Nodes))
			if out.OldKeyKept {
				fmt.Fprintf(cmd.OutOrStdout(), "not told: %v; the old key is kept for them: rotate again once they are back, or revoke them\n", out.Missed)
			}
			return nil
		},
	}
	cf.register(rotate, true)
	cmd.AddCommand(rotate)
	return cmd
}
