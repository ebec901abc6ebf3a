package abi

import (
	"reflect"
	"testing"

	"github.com/fxamacker/cbor/v2"
)

func TestTaskSpecAppendCBOR(t *testing.T) {
	one, two := 1.5, 2
	zero := 0
	cases := map[string]TaskSpec{
		"bare":      {Func: "small_value"},
		"args":      {Func: "f", Args: []Arg{{Value: []byte{0x01}}, {Ref: make([]byte, IDSize)}}, NumReturns: 3},
		"method":    {Func: "Actor.m", Actor: make([]byte, IDSize), Refs: [][]byte{make([]byte, IDSize), {1, 2}}},
		"cpu zero":  {Func: "f", Options: Options{CPU: new(float64)}},
		"bundle 0":  {Func: "f", Options: Options{Group: []byte{9}, Bundle: &zero}},
		"negatives": {Func: "f", NumReturns: -1, Options: Options{Memory: -5, TimeoutMs: -1, MaxRestarts: -1, MaxRetries: new(int)}},
		"all options": {Func: "f", Options: Options{
			CPU: &one, GPU: 0.25, Memory: 1 << 40, Resources: map[string]float64{"b": 1, "a": 0.001},
			MaxRetries: &two, RetryExceptions: true, TimeoutMs: 1000, Name: "n", MaxRestarts: 3,
			Labels: map[string]string{"tier": "edge", "zone": "z"}, Group: []byte{1, 2}, Bundle: &two, GetIfExists: true, MaxTaskRetries: -1,
			RetryOn: []string{"*main.Transient", "sentinel:busy"}, Strategy: "SPREAD", Node: "n1", Soft: true,
			Selector:       []LabelTerm{{Key: "zone", Op: "in", Values: []string{"a", "b"}}, {Key: "gpu", Op: "exists"}},
			MaxConcurrency: 100, ConcurrencyGroups: map[string]int{"io": 2, "compute": 4}, ConcurrencyGroup: "io",
			Generator: true, Lifetime: "detached", Namespace: "svc",
		}},
	}
	for name, spec := range cases {
		t.Run(name, func(t *testing.T) {
			b := spec.AppendCBOR(nil)
			var got TaskSpec
			if err := cbor.Unmarshal(b, &got); err != nil {
				t.Fatalf("fxamacker cannot read %x: %v", b, err)
			}
			if !reflect.DeepEqual(got, spec) {
				t.Fatalf("read back %+v, want %+v", got, spec)
			}
			want, err := cbor.Marshal(spec)
			if err != nil {
				t.Fatal(err)
			}
			var fromLib TaskSpec
			if err := cbor.Unmarshal(want, &fromLib); err != nil || !reflect.DeepEqual(fromLib, got) {
				t.Fatalf("fxamacker's own encoding reads back %+v, %v", fromLib, err)
			}
			if len(spec.Options.Resources) < 2 && len(spec.Options.Labels) < 2 && string(b) != string(want) {
				t.Errorf("AppendCBOR = %x, fxamacker writes %x", b, want)
			}
		})
	}
}

func BenchmarkTaskSpecAppendCBOR(b *testing.B) {
	spec := TaskSpec{Func: "small_value"}
	var buf []byte
	for range b.N {
		buf = spec.AppendCBOR(buf[:0])
	}
}
