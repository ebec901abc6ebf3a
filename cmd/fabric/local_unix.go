//go:build unix

package main

import (
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// agentAlive reports whether an agent holds dataDir: its node's lock file
// is locked. A pointer to a directory nobody holds is stale.
func agentAlive(dataDir string) bool {
	f, err := os.Open(filepath.Join(dataDir, "node", "lock"))
	if err != nil {
		return false
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		return true
	}
	_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
	return false
}
