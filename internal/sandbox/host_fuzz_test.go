package sandbox

import (
	"context"
	"encoding/binary"
	"testing"

	"github.com/wasmfabric/fabric/internal/objects"
)

// fakeHost answers every host call with fixed, well-formed results.
type fakeHost struct{}

func (fakeHost) Submit(spec []byte, actor bool, n int) ([]objects.ID, error) {
	return make([]objects.ID, n), nil
}
func (fakeHost) Put(parts [][]byte, refs []objects.ID) (objects.ID, error) { return objects.NilID, nil }
func (fakeHost) Get(ids []objects.ID, timeoutMs int64) ([]Staged, func(), bool, error) {
	items := make([]Staged, len(ids))
	for i := range items {
		items[i] = Staged{Data: []byte{0x01, 0x02, 0x03}}
	}
	return items, nil, false, nil
}
func (fakeHost) Wait(ids []objects.ID, n int, timeoutMs int64) ([]bool, error) {
	return make([]bool, len(ids)), nil
}
func (fakeHost) Cancel(id objects.ID, force, recursive bool) error { return nil }
func (fakeHost) Release(ids []objects.ID)                          {}
func (fakeHost) ActorLookup(name string) (objects.ID, error)       { return objects.NilID, nil }
func (fakeHost) ActorKill(id objects.ID, noRestart bool) error     { return nil }
func (fakeHost) Log(level int32, msg []byte)                       {}
func (fakeHost) GroupCreate(spec []byte) (objects.ID, error)       { return objects.NilID, nil }
func (fakeHost) GroupWait(id objects.ID, timeoutMs int64) (bool, error) {
	return false, nil
}
func (fakeHost) GroupRemove(id objects.ID) error { return nil }
func (fakeHost) NodeID() string                  { return "fuzz-node" }
func (fakeHost) ClusterInfo() ([]byte, error) {
	return []byte{0xa1, 0x65, 'n', 'o', 'd', 'e', 's', 0x80}, nil
}
func (fakeHost) RuntimeContext() ([]byte, error) {
	return []byte{0xa1, 0x63, 'j', 'o', 'b', 0x61, 'j'}, nil
}

// FuzzHostFuncs calls every host function with arbitrary pointers and
// lengths against a one-page guest memory: a bad one is an error for that
// call (or ignored for functions without a result), never a host crash.
func FuzzHostFuncs(f *testing.F) {
	ctx := context.Background()
	e, err := NewEngine(ctx, EngineConfig{MemoryLimit: 1 << 20})
	if err != nil {
		f.Fatal(err)
	}
	mod, err := e.Compile(ctx, valMinimal())
	if err != nil {
		f.Fatal(err)
	}
	inst, err := mod.Instantiate(ctx)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(uint8(0), make([]byte, 40))
	f.Add(uint8(7), []byte{0xf0, 0xff, 0xff, 0xff, 1, 0, 0, 0})
	f.Add(uint8(15), []byte{0, 0, 0, 0, 0, 0, 1, 0, 0xff, 0xff, 0, 0})
	f.Fuzz(func(t *testing.T, which uint8, raw []byte) {
		hf := hostFuncs[int(which)%len(hostFuncs)]
		st := make([]uint64, max(len(hf.params), len(hf.results)))
		for i := range hf.params {
			if len(raw) >= 4 {
				st[i] = uint64(binary.LittleEndian.Uint32(raw))
				raw = raw[4:]
			}
		}
		cs := &callState{host: fakeHost{}, mod: inst.mod}
		// stage something so that staged_* have data to read
		cs.stage([]Staged{{Data: []byte("abc")}}, nil)
		hf.fn(cs, st)
	})
}
