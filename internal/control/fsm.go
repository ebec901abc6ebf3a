package control

import (
	"fmt"
	"io"

	"github.com/hashicorp/raft"

	"github.com/wasmfabric/fabric/internal/controlstate"
)

// maxSnapshot bounds a snapshot a server restores.
const maxSnapshot = 1 << 30

// fsm is the server as raft's state machine.
type fsm Server

// Apply applies a committed command; its error (a command that does not
// fit the state) is the proposal's answer.
func (f *fsm) Apply(l *raft.Log) any {
	c, err := controlstate.DecodeCommand(l.Data)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.state.Apply(c)
}

// Snapshot encodes the state while raft waits; raft writes it after.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	b, err := f.state.Snapshot()
	if err != nil {
		return nil, err
	}
	return snapshot(b), nil
}

// Restore replaces the state with a snapshot's.
func (f *fsm) Restore(r io.ReadCloser) error {
	defer r.Close()
	b, err := io.ReadAll(io.LimitReader(r, maxSnapshot+1))
	if err != nil {
		return err
	}
	if len(b) > maxSnapshot {
		return fmt.Errorf("control: a snapshot of more than %d bytes", maxSnapshot)
	}
	st, err := controlstate.Restore(b)
	if err != nil {
		return err
	}
	f.mu.Lock()
	f.state = st
	f.mu.Unlock()
	return nil
}

type snapshot []byte

func (s snapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(s); err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

func (snapshot) Release() {}
