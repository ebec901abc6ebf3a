package sandbox

import (
	"context"
	"encoding/binary"
	"strings"
	"testing"

	"github.com/wasmfabric/fabric/internal/abi"
	"github.com/wasmfabric/fabric/internal/objects"
	"github.com/wasmfabric/fabric/internal/wire"
)

// fakeHost answers every host call with fixed, well-formed results.
type fakeHost struct{}

func (fakeHost) Submit(spec []byte, actor bool, n int) ([]objects.ID, error) {
	return make([]objects.ID, n), nil
}
func (fakeHost) Put(parts [][]byte, refs []objects.ID) (objects.ID, error)   { return objects.NilID, nil }
func (fakeHost) Yield(parts [][]byte, refs []objects.ID, index uint32) error { return nil }
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
func (fakeHost) ActorLookup(ns, name string) (objects.ID, error)   { return objects.NilID, nil }
func (fakeHost) ActorList() ([]byte, error)                        { return []byte{0x80}, nil }
func (fakeHost) ActorKill(id objects.ID, noRestart bool) error     { return nil }
func (fakeHost) Log(level int32, msg []byte)                       {}
func (fakeHost) GroupCreate(spec []byte) (objects.ID, error)       { return objects.NilID, nil }
func (fakeHost) GroupWait(id objects.ID, timeoutMs int64) (bool, error) {
	return false, nil
}
func (fakeHost) GroupRemove(id objects.ID) error { return nil }
func (fakeHost) NodeID() string                  { return "fuzz-node" }
func (fakeHost) Cancelled() bool                 { return false }
func (fakeHost) PlacementGroups() ([]byte, error) {
	return []byte{0xa1, 0x66, 'g', 'r', 'o', 'u', 'p', 's', 0x80}, nil
}
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
	inst := minimalInstance(f)
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

// minimalInstance is an instance of the smallest valid guest, with one
// page of memory for host functions to read and write.
func minimalInstance(tb testing.TB) *Instance {
	ctx := context.Background()
	e, err := NewEngine(ctx, EngineConfig{MemoryLimit: 1 << 20})
	if err != nil {
		tb.Fatal(err)
	}
	mod, err := e.Compile(ctx, valMinimal())
	if err != nil {
		tb.Fatal(err)
	}
	inst, err := mod.Instantiate(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	return inst
}

// hostFuncNamed returns the host function called name.
func hostFuncNamed(t testing.TB, name string) hostFunc {
	for _, hf := range hostFuncs {
		if hf.name == name {
			return hf
		}
	}
	t.Fatalf("no host function %q", name)
	return hostFunc{}
}

// FuzzReturnErrorTypes hands return_error_types arbitrary bytes in guest
// memory: they become error types or the call's error, never a crash.
func FuzzReturnErrorTypes(f *testing.F) {
	inst := minimalInstance(f)
	hf := hostFuncNamed(f, "return_error_types")
	f.Add([]byte{0x81, 0xa2, 0x64, 'n', 'a', 'm', 'e', 0x61, 'E', 0x65, 'v', 'a', 'l', 'u', 'e', 0x41, 0x01})
	f.Add([]byte{0x80})
	f.Add([]byte{0x9f, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 4096 {
			return
		}
		inst.mod.Memory().Write(16, b)
		cs := &callState{host: fakeHost{}, mod: inst.mod}
		hf.fn(cs, []uint64{16, uint64(len(b))})
		var again []abi.ErrorType
		if cs.hostErr == "" && wire.Unmarshal(b, &again) != nil {
			t.Fatalf("accepted %x, which does not decode", b)
		}
	})
}

// TestReturnErrorTypes: well-formed types are kept; garbage, an oversized
// list and a bad pointer are the call's error.
func TestReturnErrorTypes(t *testing.T) {
	inst := minimalInstance(t)
	good, _ := wire.Marshal([]abi.ErrorType{{Name: "*app.NotFound", Value: []byte{0xa0}}, {Name: "sentinel:busy"}})
	hf := hostFuncNamed(t, "return_error_types")
	cases := []struct {
		name    string
		data    []byte
		ptr, n  uint64
		wantErr string
	}{
		{"well formed", good, 16, uint64(len(good)), ""},
		{"not CBOR", []byte{0xff, 0x00}, 16, 2, "not a CBOR array of error types"},
		{"a map", []byte{0xa0}, 16, 1, "not a CBOR array of error types"},
		{"outside memory", nil, 1 << 30, 8, "outside guest memory"},
		{"too large", nil, 16, abi.MaxErrorTypes + 1, "the limit is 65536"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			inst.mod.Memory().Write(16, c.data)
			cs := &callState{host: fakeHost{}, mod: inst.mod}
			hf.fn(cs, []uint64{c.ptr, c.n})
			if c.wantErr == "" {
				if cs.hostErr != "" || len(cs.errTypes) != 2 || cs.errTypes[0].Name != "*app.NotFound" || cs.errTypes[1].Name != "sentinel:busy" {
					t.Fatalf("types %+v, error %q", cs.errTypes, cs.hostErr)
				}
				return
			}
			if !strings.Contains(cs.hostErr, c.wantErr) || cs.errTypes != nil {
				t.Fatalf("error %q (want %q), types %+v", cs.hostErr, c.wantErr, cs.errTypes)
			}
		})
	}
}

// TestYieldValue: yield_value checks its pieces, references and index,
// and hands a good item to the host.
func TestYieldValue(t *testing.T) {
	inst := minimalInstance(t)
	iov := binary.LittleEndian.AppendUint32(binary.LittleEndian.AppendUint32(nil, 64), 3)
	inst.mod.Memory().Write(16, iov)
	hf := hostFuncNamed(t, "yield_value")
	cases := []struct {
		name    string
		args    []uint64
		wantErr string
	}{
		{"first item", []uint64{16, 1, 0, 0, abi.FirstItem}, ""},
		{"the end's index", []uint64{16, 1, 0, 0, 1}, "index 1 is not between 2 and"},
		{"past the last item", []uint64{16, 1, 0, 0, abi.FirstItem + abi.MaxItems}, "is not between"},
		{"parts outside memory", []uint64{1 << 30, 1, 0, 0, abi.FirstItem}, "parts outside guest memory"},
		{"refs outside memory", []uint64{16, 1, 1 << 30, 2, abi.FirstItem}, "nested refs outside guest memory"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cs := &callState{host: fakeHost{}, mod: inst.mod}
			st := append([]uint64(nil), c.args...)
			hf.fn(cs, st)
			msg := ""
			if len(cs.staged) > 0 {
				msg = string(cs.staged[0].Data)
			}
			if c.wantErr == "" && int32(uint32(st[0])) != 0 || c.wantErr != "" && (int32(uint32(st[0])) != -1 || !strings.Contains(msg, c.wantErr)) {
				t.Errorf("yield_value%v = %d %q, want %q", c.args, int32(uint32(st[0])), msg, c.wantErr)
			}
		})
	}
}
