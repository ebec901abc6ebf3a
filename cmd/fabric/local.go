package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// A local agent leaves a pointer to its data directory in localAgentsDir,
// so that commands on its machine find its API address and token
// whatever --data-dir was.

// localAgentsDir holds one file per agent of this user on this machine,
// naming the agent's data directory.
func localAgentsDir() string {
	return filepath.Join(os.TempDir(), fmt.Sprintf("fabric-%d", os.Getuid()), "agents")
}

// announceLocalAgent writes the pointer to dataDir; the returned function
// removes it.
func announceLocalAgent(dataDir string) (func(), error) {
	abs, err := filepath.Abs(dataDir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(localAgentsDir(), 0o700); err != nil {
		return nil, err
	}
	sum := sha256.Sum256([]byte(abs))
	path := filepath.Join(localAgentsDir(), hex.EncodeToString(sum[:8]))
	if err := os.WriteFile(path, []byte(abs+"\n"), 0o600); err != nil {
		return nil, err
	}
	return func() { _ = os.Remove(path) }, nil
}

// findLocalAgent returns the data directory of the one agent of this user
// running on this machine; stale pointers are removed. With none it
// returns "", and with several an error that names them.
func findLocalAgent() (string, error) {
	entries, _ := os.ReadDir(localAgentsDir())
	var alive []string
	for _, e := range entries {
		path := filepath.Join(localAgentsDir(), e.Name())
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		dir := strings.TrimSpace(string(b))
		if !agentAlive(dir) {
			_ = os.Remove(path)
			continue
		}
		alive = append(alive, dir)
	}
	switch len(alive) {
	case 0:
		return "", nil
	case 1:
		return alive[0], nil
	}
	return "", fmt.Errorf("%d agents run on this machine (data directories %s): say which with --address and --token, or FABRIC_DATA_DIR", len(alive), strings.Join(alive, ", "))
}
