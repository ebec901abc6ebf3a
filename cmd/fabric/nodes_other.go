//go:build !linux

package main

import (
	"fmt"
	"runtime"

	"github.com/spf13/cobra"
)

// nodeCommands stand in for the commands that run a node, which need
// Linux: they say so.
func nodeCommands() []*cobra.Command {
	var out []*cobra.Command
	for _, name := range []string{"run", "build", "bench", "agent", "dev"} {
		out = append(out, &cobra.Command{
			Use:                name,
			Short:              "Linux only: run it on a Linux machine (this build has the client commands)",
			DisableFlagParsing: true,
			RunE: func(*cobra.Command, []string) error {
				return fmt.Errorf("fabric %s runs nodes, which need Linux (this is %s/%s): run it on a Linux machine, and use this build's client commands (submit, job, upload, call, module, list, status) against it", name, runtime.GOOS, runtime.GOARCH)
			},
		})
	}
	return out
}
