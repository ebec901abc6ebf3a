package main

import (
	"cmp"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/wasmfabric/fabric/fabric"
	"go.yaml.in/yaml/v3"
)

// defaultDataDir is where `fabric agent` keeps its state, and where the
// other commands look for the API token and address of a local agent.
func defaultDataDir() string {
	if d := os.Getenv("FABRIC_DATA_DIR"); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return filepath.Join(os.TempDir(), "fabric")
	}
	return filepath.Join(home, ".fabric")
}

// Files an agent writes in its data dir for local clients.
const (
	apiTokenFile = "api-token"
	apiAddrFile  = "api-address"
)

func parseKVs(flag string, items []string) (map[string]string, error) {
	out := map[string]string{}
	for _, it := range items {
		k, v, ok := strings.Cut(it, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--%s: %q is not KEY=VALUE", flag, it)
		}
		out[k] = v
	}
	return out, nil
}

// clientFlags are the flags of the commands that talk to an agent.
type clientFlags struct {
	address, token, tokenFile, output, ca string
}

func (c *clientFlags) register(cmd *cobra.Command, withOutput bool) {
	f := cmd.Flags()
	f.StringVar(&c.address, "address", "", "agent HTTP API, e.g. https://10.0.0.1:7948 (env FABRIC_ADDR; default: the local agent's)")
	f.StringVar(&c.ca, "ca", "", "the cluster's CA certificate (PEM), which the agent's is checked against (env FABRIC_CA; default: the local agent's, in its data directory)")
	f.StringVar(&c.token, "token", "", "API token (env FABRIC_TOKEN; default: the local agent's)")
	f.StringVar(&c.tokenFile, "token-file", "", "read the API token from this file, readable by its owner only (env FABRIC_TOKEN_FILE)")
	if withOutput {
		f.StringVarP(&c.output, "output", "o", "table", "output format: table, wide (more columns), json or yaml")
	}
}

// client resolves the address and token: flags, then the environment,
// then the files a local agent wrote in its data dir: the default one
// (FABRIC_DATA_DIR), or that of the one agent running on this machine.
func (c *clientFlags) client() (*fabric.Client, error) {
	switch c.output {
	case "", "table", "wide", "json", "yaml":
	default:
		return nil, fmt.Errorf("--output %q: use table, wide, json or yaml", c.output)
	}
	dir := defaultDataDir()
	local := func(name string) string {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return ""
		}
		return strings.TrimSpace(string(b))
	}
	fromFile, err := readTokenFile(firstNonEmpty(c.tokenFile, os.Getenv("FABRIC_TOKEN_FILE")))
	if err != nil {
		return nil, err
	}
	explicit := c.token != "" || fromFile != "" || os.Getenv("FABRIC_TOKEN") != ""
	if !explicit && os.Getenv("FABRIC_DATA_DIR") == "" && !agentAlive(dir) {
		found, err := findLocalAgent()
		if err != nil {
			return nil, err
		}
		if found != "" {
			dir = found
		}
	}
	addr := firstNonEmpty(c.address, os.Getenv("FABRIC_ADDR"), local(apiAddrFile), "https://"+fabric.DefaultHTTPAddr)
	token := firstNonEmpty(c.token, fromFile, os.Getenv("FABRIC_TOKEN"), local(apiTokenFile))
	if token == "" {
		return nil, fmt.Errorf("no API token: pass --token or set FABRIC_TOKEN (the agent printed it as \"API token\"); no agent runs on this machine")
	}
	// The CA comes with the address: the local agent's for the local
	// agent, --ca or FABRIC_CA for an address given.
	caFile := c.ca
	localCA := filepath.Join(dir, "cluster", "ca.pem")
	if _, err := os.Stat(localCA); caFile == "" && err == nil && c.address == "" && os.Getenv("FABRIC_ADDR") == "" && local(apiAddrFile) != "" {
		caFile = localCA
	}
	caFile = firstNonEmpty(caFile, os.Getenv("FABRIC_CA"))
	if _, err := os.Stat(localCA); caFile == "" && err == nil {
		caFile = localCA
	}
	cl := &fabric.Client{Address: addr, Token: token}
	if caFile != "" {
		b, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("--ca: %w", err)
		}
		cl.CA = x509.NewCertPool()
		if !cl.CA.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("--ca %s: no PEM certificate in it (the cluster's CA is cluster/ca.pem in an agent's data directory)", caFile)
		}
	}
	return cl, nil
}

// readTokenFile reads a token from path ("": none). A file that others
// may read is refused: the token is a secret.
func readTokenFile(path string) (string, error) {
	if path == "" {
		return "", nil
	}
	st, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("--token-file: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 && runtime.GOOS != "windows" {
		return "", fmt.Errorf("--token-file %s: others may read it (mode %#o); a token is a secret: chmod 600 %s", path, st.Mode().Perm(), path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("--token-file: %w", err)
	}
	token := strings.TrimSpace(string(b))
	if token == "" {
		return "", fmt.Errorf("--token-file %s is empty", path)
	}
	return token, nil
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

func newSubmitCmd() *cobra.Command {
	cmd := newJobSubmitCmd("submit FILE.wasm [flags] [-- ARGS...]")
	cmd.Short = "Run a job on the cluster and follow its output (short for job submit)"
	return cmd
}

func newListCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "list", Short: "List the cluster's nodes, jobs, tasks, actors, objects, placement groups and workers"}
	var cf clientFlags
	nodes := &cobra.Command{
		Use:     "nodes",
		Short:   "List the cluster's nodes, their state, resources and labels",
		Example: "  fabric list nodes\n  fabric list nodes -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := cf.client()
			if err != nil {
				return err
			}
			ns, err := cl.Nodes(cmd.Context())
			if err != nil {
				return err
			}
			if cf.output == "json" || cf.output == "yaml" {
				return printAs(cmd.OutOrStdout(), cf.output, ns)
			}
			wide := cf.output == "wide"
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			head := "ID\tSTATUS\tROLE\tADDRESS\tCPU\tMEMORY\tGPU\tLABELS"
			if wide {
				head += "\tQUIC\tHTTP\tOTHER RESOURCES"
			}
			fmt.Fprintln(tw, head)
			for _, n := range ns {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s", n.ID, n.Status, n.Role, n.Gossip,
					usedOf(n.Used["CPU"], n.Resources["CPU"], false), usedOf(n.Used["memory"], n.Resources["memory"], true),
					usedOf(n.Used["GPU"], n.Resources["GPU"], false), joinKVs(n.Labels))
				if wide {
					other := map[string]float64{}
					for k, v := range n.Resources {
						if k != "CPU" && k != "GPU" && k != "memory" {
							other[k] = v
						}
					}
					fmt.Fprintf(tw, "\t%s\t%s\t%s", cmp.Or(n.QUIC, "-"), cmp.Or(n.HTTP, "-"), cmp.Or(joinAmounts(other), "-"))
				}
				fmt.Fprintln(tw)
			}
			return tw.Flush()
		},
	}
	cf.register(nodes, true)
	jobs := newJobListCmd()
	jobs.Use, jobs.Example = "jobs", "  fabric list jobs\n  fabric list jobs -o json"
	cmd.AddCommand(nodes, jobs, newListTasksCmd(), newListActorsCmd(), newListObjectsCmd(), newListGroupsCmd(), newListWorkersCmd())
	return cmd
}

func newStatusCmd() *cobra.Command {
	var (
		cf   clientFlags
		wait time.Duration
	)
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the cluster: nodes by state, resources used and total, pending demand, worker processes",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// --wait: an agent that is starting answers soon (and a local
			// one is found once it has written where it listens).
			var st fabric.StatusView
			deadline := time.Now().Add(wait)
			for {
				cl, err := cf.client()
				if err == nil {
					st, err = cl.Status(cmd.Context())
				}
				if err == nil {
					break
				}
				if !time.Now().Before(deadline) {
					return err
				}
				time.Sleep(200 * time.Millisecond)
			}
			if cf.output == "json" || cf.output == "yaml" {
				return printAs(cmd.OutOrStdout(), cf.output, st)
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "Nodes:  %d alive, %d suspect, %d dead, %d left (as %s sees them)\n",
				st.Nodes["alive"], st.Nodes["suspect"], st.Nodes["dead"], st.Nodes["left"], st.Node)
			switch c := st.Control; {
			case c.Role == "client":
				fmt.Fprintf(w, "Control plane: %s is a client; leader %s\n", st.Node, orDash(c.Leader))
			default:
				fmt.Fprintf(w, "Control plane: %s is a %s; leader %s; servers %s; applied %d of %d committed\n",
					st.Node, c.Role, orDash(c.Leader), strings.Join(c.Voters, ", "), c.Applied, c.Committed)
			}
			fmt.Fprintln(w, "Resources (used / total, alive nodes):")
			for _, k := range slices.Sorted(maps.Keys(st.Total)) {
				fmt.Fprintf(w, "  %-10s %s\n", k, usedOf(st.Used[k], st.Total[k], k == "memory"))
			}
			fmt.Fprintf(w, "Pending on %s: %d tasks", st.Node, st.Pending)
			if len(st.PendingDemand) > 0 {
				fmt.Fprintf(w, ", asking for %s", joinAmounts(st.PendingDemand))
			}
			fmt.Fprintln(w)
			fmt.Fprintf(w, "Workers on %s: %d busy (%d parked: blocked, drivers, actors), %d idle; %d running at most, %d in all; %d executions waiting for one; %d worker processes\n",
				st.Node, st.Workers.Busy, st.Workers.Parked, st.Workers.Idle, st.Workers.Max, st.Workers.MaxInstances,
				st.Workers.Waiting, st.Workers.Processes)
			return nil
		},
	}
	cmd.Flags().DurationVar(&wait, "wait", 0, "wait up to this long for the agent to answer (one that is starting), e.g. 30s")
	cf.register(cmd, true)
	return cmd
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// printAs prints v as JSON, or as YAML with the same field names (it goes
// through JSON, so that the two agree).
func printAs(w io.Writer, format string, v any) error {
	if format != "yaml" {
		return printJSON(w, v)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	var generic any
	if err := json.Unmarshal(b, &generic); err != nil {
		return err
	}
	enc := yaml.NewEncoder(w)
	generic = wholeNumbers(generic)
	enc.SetIndent(2)
	if err := enc.Encode(generic); err != nil {
		return err
	}
	return enc.Close()
}

// wholeNumbers turns the whole numbers JSON decoded as float64 back into
// integers, so that YAML writes 25276510208, not 2.5276510208e+10.
func wholeNumbers(v any) any {
	switch v := v.(type) {
	case float64:
		if v == math.Trunc(v) && math.Abs(v) < 1<<53 {
			return int64(v)
		}
	case map[string]any:
		for k, it := range v {
			v[k] = wholeNumbers(it)
		}
	case []any:
		for i, it := range v {
			v[i] = wholeNumbers(it)
		}
	}
	return v
}

func usedOf(used, total float64, bytes bool) string {
	if bytes {
		return formatBytes(used) + "/" + formatBytes(total)
	}
	return strconv.FormatFloat(used, 'g', 4, 64) + "/" + strconv.FormatFloat(total, 'g', 4, 64)
}

func formatBytes(b float64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	i := 0
	for b >= 1024 && i < len(units)-1 {
		b /= 1024
		i++
	}
	return fmt.Sprintf("%.4g%s", b, units[i])
}

func joinKVs(m map[string]string) string {
	if len(m) == 0 {
		return "-"
	}
	parts := make([]string, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, k+"="+m[k])
	}
	return strings.Join(parts, ",")
}

func joinAmounts(m map[string]float64) string {
	parts := make([]string, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		v := strconv.FormatFloat(m[k], 'g', 4, 64)
		if k == "memory" {
			v = formatBytes(m[k])
		}
		parts = append(parts, k+" "+v)
	}
	return strings.Join(parts, ", ")
}
