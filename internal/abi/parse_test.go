package abi_test

import (
	"bytes"
	"testing"

	"github.com/wasmfabric/fabric/internal/abi"
	"github.com/wasmfabric/fabric/internal/wire"
)

func ptr[T any](v T) *T { return &v }

// specs are shapes the SDK writes, from the least to the most.
var specs = []abi.TaskSpec{
	{Func: "f"},
	{Func: "square", Args: []abi.Arg{{Value: []byte{0x03}}}},
	{Func: "add", Args: []abi.Arg{{Value: []byte{0x01}}, {Ref: bytes.Repeat([]byte{7}, 20)}}, NumReturns: 2,
		Refs: [][]byte{bytes.Repeat([]byte{9}, 20)}},
	{Func: "Counter.incr", Actor: bytes.Repeat([]byte{1}, 20), NumReturns: -1},
	{Func: "g", Options: abi.Options{CPU: ptr(0.25), GPU: 1, Memory: 1 << 30, Resources: map[string]float64{"tpu": 2, "a": 0.5},
		MaxRetries: ptr(-1), RetryExceptions: true, TimeoutMs: 1500, Name: "named", MaxRestarts: 3,
		Labels: map[string]string{"zone": "eu", "bench": "spill"}, Group: bytes.Repeat([]byte{4}, 20), Bundle: ptr(0), GetIfExists: true, MaxTaskRetries: 2}},
	{Func: "h", Options: abi.Options{CPU: ptr(0.0), Bundle: ptr(2)}},
	{Func: "Pool", Options: abi.Options{MaxConcurrency: 100, ConcurrencyGroups: map[string]int{"io": 2, "cpu": 1},
		Lifetime: abi.LifetimeDetached, Namespace: "svc", Name: "pool"}},
	{Func: "Pool.io", Actor: bytes.Repeat([]byte{2}, 20), Options: abi.Options{ConcurrencyGroup: "io", Generator: true}},
}

// ParseTaskSpec reads what AppendCBOR writes, and agrees with the general
// decoder.
func TestParseTaskSpec(t *testing.T) {
	for _, s := range specs {
		b := s.AppendCBOR(nil)
		got, ok := abi.ParseTaskSpec(b)
		if !ok {
			t.Fatalf("%s: not parsed", s.Func)
		}
		var want abi.TaskSpec
		if err := wire.Unmarshal(b, &want); err != nil {
			t.Fatal(err)
		}
		if !equalSpecs(got, want) || !equalSpecs(got, s) {
			t.Fatalf("%s: parsed %+v\ngeneral decoder %+v\nwritten %+v", s.Func, got, want, s)
		}
	}
	for name, b := range map[string][]byte{
		"empty":          nil,
		"not a map":      {0x80},
		"trailing bytes": append(specs[0].AppendCBOR(nil), 0x00),
		"unknown key":    {0xa1, 0x61, 'x', 0x01},
		"repeated key":   {0xa2, 0x62, 'f', 'n', 0x61, 'a', 0x62, 'f', 'n', 0x61, 'b'},
		"tag":            {0xa1, 0x62, 'f', 'n', 0xc0, 0x61, 'a'},
		"indefinite":     {0xbf, 0x62, 'f', 'n', 0x61, 'a', 0xff},
		"huge count":     {0xa1, 0x64, 'a', 'r', 'g', 's', 0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
		"bad utf-8":      {0xa1, 0x62, 'f', 'n', 0x61, 0xff},
	} {
		if _, ok := abi.ParseTaskSpec(b); ok {
			t.Errorf("%s: parsed, want left to the general decoder", name)
		}
	}
}

// equalSpecs compares specs as the agent reads them, by their encoding:
// an absent list or byte string is the same as an empty one, and a NaN
// is the same NaN.
func equalSpecs(a, b abi.TaskSpec) bool {
	return bytes.Equal(a.AppendCBOR(nil), b.AppendCBOR(nil))
}

// FuzzParseTaskSpec holds the fast decoder to the general one: whatever
// it accepts, the general decoder accepts too, with the same result.
func FuzzParseTaskSpec(f *testing.F) {
	for _, s := range specs {
		f.Add(s.AppendCBOR(nil))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, ok := abi.ParseTaskSpec(b)
		if !ok {
			return
		}
		var want abi.TaskSpec
		if err := wire.Unmarshal(b, &want); err != nil {
			t.Fatalf("parsed %x, which the general decoder rejects: %v", b, err)
		}
		if !equalSpecs(got, want) {
			t.Fatalf("%x: parsed %+v, general decoder %+v", b, got, want)
		}
	})
}
