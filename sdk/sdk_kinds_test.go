package sdk

import (
	"bytes"
	"errors"
	"testing"

	"github.com/wasmfabric/fabric/internal/abi"
)

// Every kind the host stores has its sentinel, so errors.Is works for all
// of them (the SDK's list once lacked object_lost).
func TestEveryErrorKindHasSentinel(t *testing.T) {
	seen := map[error]abi.ErrorKind{}
	for _, k := range abi.ErrorKinds {
		if k == KindTask {
			continue
		}
		s, ok := kindErrors[k]
		if !ok {
			t.Errorf("kind %q has no sentinel", k)
			continue
		}
		if other, dup := seen[s]; dup {
			t.Errorf("kinds %q and %q share a sentinel", k, other)
		}
		seen[s] = k
		if !errors.Is(&TaskError{Kind: k}, s) {
			t.Errorf("errors.Is(TaskError{%q}, %v) = false", k, s)
		}
	}
	if errors.Is(&TaskError{Kind: KindTask}, ErrTaskCancelled) {
		t.Error("a task error matches ErrTaskCancelled")
	}
}

// A task's options are encoded once per list of extra options, and the
// cached encoding is what encoding them afresh gives.
func TestEncodedOptionsCache(t *testing.T) {
	d := &taskDef{name: "f", opts: []Option{CPUs(0.5)}}
	f := Func0[int]{d: d}
	spill := f.Options(NodeLabel("bench", "spill"))
	eu := f.Options(NodeLabel("zone", "eu"), MaxRetries(2))
	for range 2 {
		for _, g := range []Func0[int]{f, spill, eu, spill} {
			o := applyOptions(d.opts, g.extra)
			want := o.AppendCBOR(nil)
			if got := d.encodedOptions(g.extra); !bytes.Equal(got, want) {
				t.Fatalf("options %x, want %x", got, want)
			}
		}
	}
}
