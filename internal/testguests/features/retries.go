//go:build wasip1

package main

import (
	"errors"
	"fmt"

	"github.com/wasmfabric/fabric/sdk"
)

func init() { moreCases["task_retries_remote"] = taskRetriesRemote }

// taskRetriesRemote: MaxTaskRetries for an actor that lives on another
// node than its owner's. Its call exits the actor's process on the first
// attempt; the owner restarts the actor and runs the call again. It needs
// a cluster: on one node it fails, saying so.
func taskRetriesRemote() error {
	nodes, err := sdk.Nodes()
	if err != nil {
		return err
	}
	other := ""
	for _, n := range nodes {
		if n.ID != sdk.NodeID() {
			other = n.ID
		}
	}
	if other == "" {
		return errors.New("task_retries_remote needs another node")
	}
	p := phoenixClass.Options(sdk.NodeAffinity(other, false)).Remote()
	v, err := phoenixRise.Remote(p).Get()
	check("remote_actor_call_retried_after_restart", err == nil && v == 1, fmt.Sprint(v, err))
	where, err := phoenixWhere.Remote(p).Get()
	check("remote_actor_lives_elsewhere", err == nil && where == other, fmt.Sprint(where, other, err))
	return nil
}

var phoenixWhere = sdk.NewMethod0(phoenixClass, "where", func(*Phoenix) (string, error) { return sdk.NodeID(), nil })
