package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// version is the release this binary is; `make release` sets it with
// -ldflags "-X main.version=...". A build from a checkout says "dev".
var version = "dev"

// versionInfo is what `fabric version` prints.
type versionInfo struct {
	Version string `json:"version"`
	Commit  string `json:"commit"` // "" when the build has no VCS stamp
	Dirty   bool   `json:"dirty,omitempty"`
	Built   string `json:"built,omitempty"` // the commit's time
	Go      string `json:"go"`
	OS      string `json:"os"`
	Arch    string `json:"arch"`
}

func buildVersion() versionInfo {
	v := versionInfo{Version: version, Go: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				v.Commit = s.Value
			case "vcs.modified":
				v.Dirty = s.Value == "true"
			case "vcs.time":
				v.Built = s.Value
			}
		}
	}
	return v
}

func (v versionInfo) String() string {
	commit := v.Commit
	switch {
	case commit == "":
		commit = "unknown commit"
	case len(commit) > 12:
		commit = commit[:12]
	}
	if v.Dirty {
		commit += "+changes"
	}
	s := fmt.Sprintf("fabric %s (%s", v.Version, commit)
	if v.Built != "" {
		s += ", " + v.Built
	}
	return s + fmt.Sprintf(", %s, %s/%s)", v.Go, v.OS, v.Arch)
}

func newVersionCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:     "version",
		Short:   "Print fabric's version and the commit it was built from",
		Example: "  fabric version\n  fabric version -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v := buildVersion()
			switch output {
			case "", "text":
				fmt.Fprintln(cmd.OutOrStdout(), v)
				return nil
			case "json", "yaml":
				return printAs(cmd.OutOrStdout(), output, v)
			}
			return fmt.Errorf("unknown output format %q (text, json or yaml)", output)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text, json or yaml")
	return cmd
}
