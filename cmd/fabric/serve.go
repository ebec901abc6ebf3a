package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/wasmfabric/fabric/fabric"
)

// serveConfig is `fabric serve deploy`'s file: Ray Serve's config, its
// deployments each naming a module by path (uploaded first) or digest.
type serveConfig struct {
	Deployments []fabric.DeploymentSpec `json:"deployments"`
}

// readServeConfig reads a deploy file, YAML or JSON, refusing fields it
// does not know (a typo would otherwise deploy something else).
func readServeConfig(path string) (serveConfig, error) {
	var cfg serveConfig
	b, err := os.ReadFile(path)
	if err != nil {
		return cfg, err
	}
	var generic any
	if err := yaml.Unmarshal(b, &generic); err != nil { // YAML reads JSON too
		return cfg, fmt.Errorf("%s: %w", path, err)
	}
	j, err := json.Marshal(generic)
	if err != nil {
		return cfg, fmt.Errorf("%s: %w", path, err)
	}
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		return cfg, fmt.Errorf("%s: %w (see fabric serve deploy --help)", path, err)
	}
	if len(cfg.Deployments) == 0 {
		return cfg, fmt.Errorf("%s: no deployments: write `deployments:` and a list (see fabric serve deploy --help)", path)
	}
	seen := map[string]bool{}
	for i, d := range cfg.Deployments {
		switch {
		case d.Name == "":
			return cfg, fmt.Errorf("%s: deployment %d has no name", path, i+1)
		case seen[d.Name]:
			return cfg, fmt.Errorf("%s: two deployments are named %q", path, d.Name)
		case d.Module == "" || d.Class == "":
			return cfg, fmt.Errorf("%s: deployment %q needs a module (a .wasm path or a digest) and a class", path, d.Name)
		}
		seen[d.Name] = true
	}
	return cfg, nil
}

// isDigest reports whether s is a module's SHA-256 digest.
func isDigest(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func newServeCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Deploy Wasm classes behind HTTP, with replicas (Ray Serve)",
		Long: `Serve runs deployments: classes of a module registered with sdk.Deployment,
whose replicas (actors) answer the HTTP requests under a route prefix on every
agent's ingress (fabric agent --serve-addr, default 127.0.0.1:8000).`,
	}
	cmd.AddCommand(newServeDeployCmd(), newServeStatusCmd(), newServeLogsCmd(), newServeDeleteCmd())
	return cmd
}

func newServeDeployCmd() *cobra.Command {
	var cf clientFlags
	cmd := &cobra.Command{
		Use:   "deploy FILE",
		Short: "Create or update the deployments a YAML or JSON file describes",
		Long: `Deploy reads a file of deployments, uploads the modules it names by path
(a digest names one uploaded before), and creates or replaces each
deployment. A replaced deployment's replicas are started again with the new
version. Each deployment takes:

  name                  the deployment's name (your tenant's)
  module                a .wasm path (relative to the file) or a digest
  class                 the class registered with sdk.Deployment
  route_prefix          the path prefix it answers (default: /NAME)
  num_replicas          replicas across the cluster (default 1)
  max_ongoing_requests  requests one replica holds at once (default 5);
                        past it on every replica the ingress answers 503
  resources             what each replica reserves: {CPU: 0.5, memory: 1e9}
  public                answer requests without a token (default: a token
                        of your tenant, Authorization: Bearer TOKEN)
  autoscaling_config    let the cluster choose the replicas:
    min_replicas            0 scales to zero when idle; the next request
                            starts a replica and waits for it
    max_replicas
    target_ongoing_requests requests in flight per replica aimed at (2)
    upscale_delay_s         wanting more this long before adding (3)
    downscale_delay_s       wanting fewer this long before removing (60)
                        num_replicas is then how many to start with
                        (default: min_replicas)`,
		Example: `  cat > serve.yaml <<EOF
  deployments:
    - name: model
      module: model.wasm
      class: Model
      route_prefix: /model
      num_replicas: 3
      public: true
  EOF
  fabric serve deploy serve.yaml
  curl -d '{"input": 42}' http://127.0.0.1:8000/model`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := readServeConfig(args[0])
			if err != nil {
				return err
			}
			cl, err := cf.client()
			if err != nil {
				return err
			}
			uploaded := map[string]string{} // path -> digest
			var out []fabric.DeploymentInfo
			for _, d := range cfg.Deployments {
				if !isDigest(d.Module) {
					path := d.Module
					if !filepath.IsAbs(path) {
						path = filepath.Join(filepath.Dir(args[0]), path)
					}
					digest, ok := uploaded[path]
					if !ok {
						f, err := os.Open(path)
						if err != nil {
							return fmt.Errorf("deployment %s: %w", d.Name, err)
						}
						m, err := cl.Upload(cmd.Context(), f, filepath.Base(path))
						f.Close()
						if err != nil {
							return fmt.Errorf("deployment %s: uploading %s: %w", d.Name, path, err)
						}
						digest = m.Digest
						uploaded[path] = digest
					}
					d.Module = digest
				}
				info, err := cl.Deploy(cmd.Context(), d)
				if err != nil {
					return fmt.Errorf("deployment %s: %w", d.Name, err)
				}
				out = append(out, info)
			}
			if cf.output == "json" || cf.output == "yaml" {
				return printAs(cmd.OutOrStdout(), cf.output, out)
			}
			for _, info := range out {
				fmt.Fprintf(cmd.OutOrStdout(), "deployment %s: version %d, %d replicas at %s (fabric serve status shows them start)\n",
					info.Name, info.Version, info.NumReplicas, info.RoutePrefix)
			}
			return nil
		},
	}
	cf.register(cmd, true)
	return cmd
}

func newServeStatusCmd() *cobra.Command {
	var cf clientFlags
	cmd := &cobra.Command{
		Use:     "status",
		Short:   "List the deployments your token sees: route, replicas running by node, requests in flight",
		Example: "  fabric serve status\n  fabric serve status -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := cf.client()
			if err != nil {
				return err
			}
			ds, err := cl.Deployments(cmd.Context())
			if err != nil {
				return err
			}
			var missing []string
			for _, d := range ds {
				missing = d.Missing
			}
			if done, err := cf.listed(cmd, "replicas are not counted", missing, ds); done {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tROUTE\tCLASS\tSTATUS\tREPLICAS\tONGOING\tPUBLIC\tVERSION\tNODES")
			for _, d := range ds {
				nodes := make([]string, 0, len(d.Nodes))
				for n, k := range d.Nodes {
					nodes = append(nodes, fmt.Sprintf("%s=%d", n, k))
				}
				sort.Strings(nodes)
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d/%d\t%d\t%v\t%d\t%s\n", d.Name, d.RoutePrefix, d.Class, d.Status, d.Running, d.NumReplicas,
					d.Ongoing, d.Public, d.Version, orDash(strings.Join(nodes, ",")))
			}
			return tw.Flush()
		},
	}
	cf.register(cmd, true)
	return cmd
}

func newServeLogsCmd() *cobra.Command {
	var cf clientFlags
	cmd := &cobra.Command{
		Use:   "logs NAME",
		Short: "Print the latest output of a deployment's replicas, each line prefixed with its node",
		Long: `Logs prints what a deployment's replicas wrote (stdout and stderr), the
latest 64 KiB on each node that hosts them, each line prefixed with its
node: every line already names the replica's call and worker process.`,
		Example: "  fabric serve logs model\n  fabric serve logs model -o json",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := cf.client()
			if err != nil {
				return err
			}
			logs, err := cl.DeploymentLogs(cmd.Context(), args[0])
			if err != nil {
				return fmt.Errorf("deployment %s: %w", args[0], err)
			}
			if cf.output == "json" || cf.output == "yaml" {
				return printAs(cmd.OutOrStdout(), cf.output, logs)
			}
			nodes := make([]string, 0, len(logs.Nodes))
			for n := range logs.Nodes {
				nodes = append(nodes, n)
			}
			sort.Strings(nodes)
			out := cmd.OutOrStdout()
			for _, n := range nodes {
				for _, line := range strings.SplitAfter(logs.Nodes[n], "\n") {
					if line != "" {
						fmt.Fprintf(out, "[%s] %s", n, line)
						if !strings.HasSuffix(line, "\n") {
							fmt.Fprintln(out)
						}
					}
				}
			}
			if len(logs.Missing) > 0 {
				fmt.Fprintf(cmd.ErrOrStderr(), "fabric: nodes %s did not answer: their replicas' output is not shown\n", strings.Join(logs.Missing, ", "))
			}
			return nil
		},
	}
	cf.register(cmd, true)
	return cmd
}

func newServeDeleteCmd() *cobra.Command {
	var cf clientFlags
	cmd := &cobra.Command{
		Use:     "delete NAME...",
		Short:   "Remove deployments: their routes stop answering and their replicas stop",
		Example: "  fabric serve delete model",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := cf.client()
			if err != nil {
				return err
			}
			for _, name := range args {
				if err := cl.DeleteDeployment(cmd.Context(), name); err != nil {
					return fmt.Errorf("deployment %s: %w", name, err)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "deployment %s deleted\n", name)
			}
			return nil
		},
	}
	cf.register(cmd, false)
	return cmd
}
