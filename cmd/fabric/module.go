package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

func newUploadCmd() *cobra.Command {
	var (
		cf      clientFlags
		name    string
		sigFile string
	)
	cmd := &cobra.Command{
		Use:   "upload FILE.wasm",
		Short: "Store a module on the cluster, by its digest, for fabric call and jobs",
		Long: `Upload validates a module and stores it on the agent, recorded in the cluster's
control state under its SHA-256 digest, which it prints. fabric call runs its
task functions by that digest. A terminal shows the upload's progress.`,
		Example: "  fabric upload fns.wasm\n  fabric call $(fabric upload fns.wasm) square --args '[7]'",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := os.Open(args[0])
			if err != nil {
				return err
			}
			defer f.Close()
			st, err := f.Stat()
			if err != nil {
				return err
			}
			cl, err := cf.client()
			if err != nil {
				return err
			}
			var r io.Reader = f
			if isTerminal(os.Stderr) {
				p := &uploadProgress{total: st.Size(), start: time.Now()}
				r = io.TeeReader(f, p)
				stop := p.show(os.Stderr)
				defer stop()
			}
			sig, err := moduleSignatureFor(args[0], sigFile)
			if err != nil {
				return err
			}
			m, err := cl.UploadSigned(cmd.Context(), r, strings.TrimSpace(firstNonEmpty(name, filepath.Base(args[0]))), sig)
			if err != nil {
				return err
			}
			if cf.output == "json" || cf.output == "yaml" {
				return printAs(cmd.OutOrStdout(), cf.output, m)
			}
			fmt.Fprintln(cmd.OutOrStdout(), m.Digest)
			return nil
		},
	}
	cf.register(cmd, false)
	cmd.Flags().StringVar(&name, "name", "", "a name to list the module by (default: the file's)")
	cmd.Flags().StringVar(&sigFile, "signature", "", "the module's signature file (default: FILE.wasm.sig when it is there)")
	cmd.Flags().StringVarP(&cf.output, "output", "o", "", "json or yaml prints the whole record, not only the digest")
	return cmd
}

// isTerminal reports whether f is a terminal.
func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// uploadProgress counts bytes and shows them on a terminal.
type uploadProgress struct {
	total int64
	done  atomic.Int64
	start time.Time
}

func (p *uploadProgress) Write(b []byte) (int, error) {
	p.done.Add(int64(len(b)))
	return len(b), nil
}

func (p *uploadProgress) show(w io.Writer) (stop func()) {
	quit := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			d := p.done.Load()
			fmt.Fprintf(w, "\ruploading: %s of %s (%d%%)", formatBytes(float64(d)), formatBytes(float64(p.total)), 100*d/max(p.total, 1))
			select {
			case <-quit:
				fmt.Fprintf(w, "\ruploaded %s in %s%20s\n", formatBytes(float64(p.done.Load())), time.Since(p.start).Round(time.Millisecond), "")
				return
			case <-t.C:
			}
		}
	}()
	return func() { close(quit); <-finished }
}

func newCallCmd() *cobra.Command {
	var (
		cf      clientFlags
		args    string
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "call DIGEST FUNCTION [--args JSON]",
		Short: "Run one task function of an uploaded module and print its result as JSON",
		Long: `Call runs one task function (registered with sdk.Task...) of a module stored with
fabric upload, on the agent, with --args as a JSON array of its arguments, and
prints the value it returns as JSON. What the function prints goes to stderr.`,
		Example: "  fabric call 3f5a… square --args '[7]'",
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, pos []string) error {
			cl, err := cf.client()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			if timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, timeout)
				defer cancel()
			}
			res, err := cl.Call(ctx, pos[0], pos[1], args)
			if err != nil {
				return err
			}
			if res.Output != "" {
				fmt.Fprint(cmd.ErrOrStderr(), res.Output)
			}
			fmt.Fprintln(cmd.OutOrStdout(), string(res.Value))
			return nil
		},
	}
	cf.register(cmd, false)
	cmd.Flags().StringVar(&args, "args", "[]", "the function's arguments, a JSON array")
	cmd.Flags().DurationVar(&timeout, "timeout", 0, "give up after this long (default: no bound)")
	return cmd
}

func newModuleCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "module", Short: "List and delete uploaded modules; make keys and sign modules"}
	var lf clientFlags
	list := &cobra.Command{
		Use:   "list",
		Short: "List the uploaded modules: digest, name, size, the nodes that hold them",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := lf.client()
			if err != nil {
				return err
			}
			ms, err := cl.Modules(cmd.Context())
			if err != nil {
				return err
			}
			if lf.output == "json" || lf.output == "yaml" {
				return printAs(cmd.OutOrStdout(), lf.output, ms)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "DIGEST\tNAME\tSIZE\tADDED\tNODES")
			for _, m := range ms {
				digest := m.Digest
				if lf.output != "wide" {
					digest = digest[:12]
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", digest, orDash(m.Name), formatBytes(float64(m.Size)), m.Added.Local().Format(time.DateTime), strings.Join(m.Nodes, ","))
			}
			return tw.Flush()
		},
	}
	lf.register(list, true)
	var df clientFlags
	del := &cobra.Command{
		Use:   "delete DIGEST",
		Short: "Delete an uploaded module (refused while a job that has not ended uses it)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := df.client()
			if err != nil {
				return err
			}
			if err := cl.DeleteModule(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "module %s deleted\n", args[0])
			return nil
		},
	}
	df.register(del, false)
	cmd.AddCommand(list, del, newModuleKeygenCmd(), newModuleSignCmd())
	return cmd
}
