//go:build !wasip1

package sdk

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/wasmfabric/fabric/internal/abi"
)

// memHost is an in-process host for testing the SDK without wasm: it runs
// every submitted call at once through dispatch, as the agent would.
type memHost struct {
	objs     map[ObjectID]staged
	next     byte
	logs     []string
	calls    int
	specs    []abi.TaskSpec // submitted, in order
	released []ObjectID
	gen      ObjectID // the generator running, whose items yield makes
	items    int
}

func newMemHost(t *testing.T) *memHost {
	h := &memHost{objs: map[ObjectID]staged{}}
	old := host
	host = h
	t.Cleanup(func() { host = old; actor = nil })
	return h
}

func (h *memHost) newID() ObjectID {
	h.next++
	var id ObjectID
	id[0] = h.next
	return id
}

func (h *memHost) log(level int, msg []byte) { h.logs = append(h.logs, string(msg)) }

func (h *memHost) args(spec abi.TaskSpec) ([]byte, error) {
	b := []byte{0x80 | byte(len(spec.Args))}
	for _, a := range spec.Args {
		if a.Ref == nil {
			b = append(b, a.Value...)
			continue
		}
		var id ObjectID
		copy(id[:], a.Ref)
		o, ok := h.objs[id]
		if !ok {
			return nil, fmt.Errorf("unknown ref")
		}
		if o.kind != abi.StagedValue {
			return nil, errors.New("argument failed")
		}
		b = append(b, o.data...)
	}
	return b, nil
}

func (h *memHost) run(name string, spec abi.TaskSpec, n int) []ObjectID {
	h.calls++
	ids := make([]ObjectID, n)
	for i := range ids {
		ids[i] = h.newID()
	}
	args, err := h.args(spec)
	var value []byte
	if err == nil {
		var parts [][]byte
		gen, items := h.gen, h.items
		if spec.Options.Generator {
			h.gen, h.items = ids[0], 0
		}
		parts, _, err = dispatch(name, args)
		value = bytes.Join(parts, nil)
		if spec.Options.Generator { // the agent counts the items
			value, _ = cbor.Marshal(h.items)
		}
		h.gen, h.items = gen, items
	}
	if err != nil {
		v := abi.ErrorValue{Kind: "task", Message: err.Error(), Task: name}
		if b := encodeErrorTypes(errorTypesOf(err)); b != nil { // as return_error_types
			if err := cbor.Unmarshal(b, &v.Types); err != nil {
				panic(err)
			}
		}
		ev, _ := cbor.Marshal(v)
		for _, id := range ids {
			h.objs[id] = staged{kind: abi.StagedError, data: ev}
		}
		return ids
	}
	if n == 1 {
		h.objs[ids[0]] = staged{data: value}
		return ids
	}
	var parts []cbor.RawMessage
	if err := cbor.Unmarshal(value, &parts); err != nil || len(parts) != n {
		panic(fmt.Sprintf("bad multi-return value: %v", err))
	}
	for i, id := range ids {
		h.objs[id] = staged{data: parts[i]}
	}
	return ids
}

func (h *memHost) submit(b []byte, n int) ([]ObjectID, error) {
	var spec abi.TaskSpec
	if err := cbor.Unmarshal(b, &spec); err != nil {
		return nil, err
	}
	h.specs = append(h.specs, spec)
	return h.run(spec.Func, spec, n), nil
}

func (h *memHost) actorCreate(b []byte) (ObjectID, error) {
	var spec abi.TaskSpec
	if err := cbor.Unmarshal(b, &spec); err != nil {
		return ObjectID{}, err
	}
	ids := h.run(spec.Func+abi.ActorInitSuffix, spec, 1)
	if h.objs[ids[0]].kind != abi.StagedValue {
		return ObjectID{}, errors.New("constructor failed")
	}
	return h.newID(), nil
}

func (h *memHost) put(parts [][]byte, refs []ObjectID) (ObjectID, error) {
	id := h.newID()
	h.objs[id] = staged{data: bytes.Join(parts, nil)}
	return id, nil
}

func (h *memHost) yield(parts [][]byte, refs []ObjectID, index uint32) error {
	if h.gen == (ObjectID{}) {
		return errHost("yield from a call that is not a generator")
	}
	h.objs[objectIDWithIndex(h.gen, index)] = staged{data: bytes.Join(parts, nil)}
	h.items++
	return nil
}

func (h *memHost) get(ids []ObjectID, timeoutMs int64) ([]staged, error) {
	out := make([]staged, len(ids))
	for i, id := range ids {
		o, ok := h.objs[id]
		if !ok {
			return nil, errHost("object not found")
		}
		out[i] = o
	}
	return out, nil
}

func (h *memHost) wait(ids []ObjectID, numReady int, timeoutMs int64) ([]bool, error) {
	ready := make([]bool, len(ids))
	for i, id := range ids {
		_, ready[i] = h.objs[id]
	}
	return ready, nil
}

func (h *memHost) cancel(ObjectID, bool, bool) error { return nil }
func (h *memHost) release(ids []ObjectID)            { h.released = append(h.released, ids...) }
func (h *memHost) actorList() ([]byte, error)        { return []byte{0x80}, nil }
func (h *memHost) actorLookup(ns, name string) (ObjectID, error) {
	return ObjectID{}, errHost("no actor named " + name)
}
func (h *memHost) actorKill(ObjectID, bool) error { return nil }
func (h *memHost) groupCreate(spec []byte) (ObjectID, error) {
	var gs abi.GroupSpec
	if err := cbor.Unmarshal(spec, &gs); err != nil {
		return ObjectID{}, err
	}
	return h.newID(), nil
}
func (h *memHost) groupWait(ObjectID, int64) (bool, error) { return false, nil }
func (h *memHost) groupRemove(ObjectID) error              { return nil }
func (h *memHost) nodeID() string                          { return "test-node" }
func (h *memHost) cancelled() bool                         { return false }
func (h *memHost) clusterInfo() ([]byte, error) {
	return encMode.Marshal(abi.ClusterInfo{Nodes: []abi.NodeInfo{
		{ID: "a", Total: map[string]float64{"CPU": 2, "GPU": 1}, Available: map[string]float64{"CPU": 0.5, "GPU": 1}},
		{ID: "b", Labels: map[string]string{"zone": "edge"}, Total: map[string]float64{"CPU": 4}, Available: map[string]float64{"CPU": 4}},
	}})
}

func (h *memHost) groupTable() ([]byte, error) {
	return encMode.Marshal(abi.GroupTable{Groups: []abi.GroupInfo{
		{ID: append(make([]byte, IDSize-1), 7), Name: "train", Strategy: "PACK", State: "created",
			Bundles: []map[string]float64{{"CPU": 1}}, Nodes: []string{"a"}},
		{ID: append(make([]byte, IDSize-1), 8), Strategy: "SPREAD", State: "failed", Reason: "can never be placed",
			Bundles: []map[string]float64{{"CPU": 100}}},
	}})
}

func (h *memHost) runtimeContext() ([]byte, error) {
	return encMode.Marshal(abi.RuntimeContext{Job: "j1", Task: make([]byte, IDSize), Node: "test-node", Attempt: 2,
		Resources: map[string]float64{"CPU": 0.5}})
}

// Registrations are global, as in a guest; each name is used once.
var (
	tAdd = Task2("t_add", func(a, b int) (int, error) { return a + b, nil })
	tSum = Task1("t_sum", func(xs []float64) (float64, error) {
		s := 0.0
		for _, x := range xs {
			s += x
		}
		return s, nil
	})
	tPanic  = Task0("t_panic", func() (int, error) { panic("kaboom") })
	tFail   = Task0("t_fail", func() (int, error) { return 0, errors.New("plain failure") })
	tNested = Task1("t_nested", func(refs []Ref[int]) (int, error) {
		vs, err := GetAll(refs)
		s := 0
		for _, v := range vs {
			s += v
		}
		return s, err
	})
	tDivmod  = Task1x2("t_divmod", func(x int) (int, int, error) { return x / 10, x % 10, nil })
	tSplit   = Task1N("t_split", 3, func(s string) ([]string, error) { return strings.SplitN(s, ",", 3), nil })
	tWrongN  = Task1N("t_wrong_n", 2, func(int) ([]int, error) { return []int{1}, nil })
	tCounter = Actor1("TCounter", func(start int) (*tCount, error) { return &tCount{n: start}, nil })
	tIncr    = NewMethod1(tCounter, "incr", func(c *tCount, by int) (int, error) { c.n += by; return c.n, nil })
)

type tCount struct{ n int }

func TestTasksThroughDispatch(t *testing.T) {
	h := newMemHost(t)
	v, err := tAdd.Remote(2, 3).Get()
	if err != nil || v != 5 {
		t.Fatalf("add: %v %v", v, err)
	}
	// a Ref as an argument is resolved to its value
	v, err = tAdd.RemoteRefs(tAdd.Remote(1, 1), Val(40)).Get()
	if err != nil || v != 42 {
		t.Fatalf("add with ref: %v %v", v, err)
	}
	// numeric slices travel as typed arrays
	xs := []float64{1.5, 2.5, 3}
	ref, err := Put(xs)
	if err != nil {
		t.Fatal(err)
	}
	if raw := h.objs[ref.ID()].data; raw[0] != 0xd8 || raw[1] != tagFloat64LE {
		t.Errorf("[]float64 not encoded as a typed array: % x", raw[:4])
	}
	s, err := tSum.RemoteRefs(ref).Get()
	if err != nil || s != 7 {
		t.Fatalf("sum: %v %v", s, err)
	}
	// nested refs stay refs
	n, err := tNested.Remote([]Ref[int]{tAdd.Remote(1, 2), tAdd.Remote(3, 4)}).Get()
	if err != nil || n != 10 {
		t.Fatalf("nested: %v %v", n, err)
	}
	q, r := tDivmod.Remote(42)
	qv, _ := q.Get()
	rv, _ := r.Get()
	if qv != 4 || rv != 2 {
		t.Errorf("divmod: %d %d", qv, rv)
	}
	parts, err := GetAll(tSplit.Remote("a,b,c"))
	if err != nil || strings.Join(parts, "") != "abc" {
		t.Errorf("split: %v %v", parts, err)
	}
	if _, err := GetAll(tWrongN.Remote(1)); err == nil || !strings.Contains(err.Error(), "declares 2 return values but returned 1") {
		t.Errorf("wrong n: %v", err)
	}
}

func TestErrorsThroughDispatch(t *testing.T) {
	newMemHost(t)
	_, err := tPanic.Remote().Get()
	var te *TaskError
	if !errors.As(err, &te) || !strings.Contains(te.Message, "panic: kaboom") || !strings.Contains(te.Message, "goroutine") {
		t.Errorf("panic should carry its message and stack: %v", err)
	}
	if _, err := tFail.Remote().Get(); err == nil || !strings.Contains(err.Error(), "plain failure") {
		t.Errorf("error: %v", err)
	}
	// A caller that is not this SDK (a C guest) may send any type: the
	// task fails, saying so.
	if _, _, err := dispatch("t_add", []byte{0x82, 0x63, 't', 'w', 'o', 0x03}); !errors.Is(err, ErrBadArguments) {
		t.Errorf("bad argument type: %v", err)
	}
	if _, _, err := dispatch("nope", []byte{0x80}); !errors.Is(err, ErrNoSuchFunction) || !strings.Contains(err.Error(), "t_add") {
		t.Errorf("unknown function: %v", err)
	}
	if _, _, err := dispatch("t_add", []byte{0x81, 0x01}); !errors.Is(err, ErrBadArguments) {
		t.Errorf("wrong arity: %v", err)
	}
	if _, _, err := dispatch("t_add", []byte{0xff}); !errors.Is(err, ErrBadArguments) {
		t.Errorf("garbage arguments: %v", err)
	}
}

func TestActorThroughDispatch(t *testing.T) {
	newMemHost(t)
	h := tCounter.Remote(10)
	if h.Err() != nil {
		t.Fatal(h.Err())
	}
	for i := 1; i <= 3; i++ {
		v, err := tIncr.Remote(h, 1).Get()
		if err != nil || v != 10+i {
			t.Fatalf("incr %d: %v %v", i, v, err)
		}
	}
	if _, err := GetActor(tCounter, "missing"); err == nil {
		t.Error("lookup of a missing actor succeeded")
	}
}

func TestRefAndHandleEncoding(t *testing.T) {
	var id ObjectID
	for i := range id {
		id[i] = byte(i)
	}
	b, refs, err := encode(struct{ R Ref[int] }{Ref[int]{id: id}})
	if err != nil || len(refs) != 1 || refs[0] != id {
		t.Fatalf("encode: %v %v", refs, err)
	}
	var back struct{ R Ref[int] }
	if err := decode(b, &back); err != nil || back.R.ID() != id {
		t.Fatalf("decode: %v %v", back, err)
	}
	hb, err := Handle[tCount]{id: id}.MarshalCBOR()
	if err != nil {
		t.Fatal(err)
	}
	var r Ref[int]
	if err := r.UnmarshalCBOR(hb); err == nil {
		t.Error("an actor handle decoded as an object reference")
	}
}

func TestTypedArrays(t *testing.T) {
	cases := []any{
		[]float64{1, -2.5, 3e300}, []float32{1.5}, []int64{-1, 1 << 40}, []int{7, -7},
		[]int32{-5}, []uint64{1 << 63}, []uint32{42}, []float64{}, make([]float64, 70000),
	}
	for _, c := range cases {
		b, ok := encodeTyped(c)
		if !ok {
			t.Fatalf("%T not encoded", c)
		}
		switch x := c.(type) {
		case []float64:
			var got []float64
			if !decodeTyped(b, &got) || fmt.Sprint(got) != fmt.Sprint(x) {
				t.Errorf("%v round-tripped to %v", x, got)
			}
		case []int:
			var got []int
			if !decodeTyped(b, &got) || fmt.Sprint(got) != fmt.Sprint(x) {
				t.Errorf("%v round-tripped to %v", x, got)
			}
		}
		// the generic decoder reads typed arrays as tags without failing
		var anyv any
		if err := cbor.Unmarshal(b, &anyv); err != nil {
			t.Errorf("%T: generic decode: %v", c, err)
		}
	}
	var f []float64
	if decodeTyped([]byte{0xd8, tagFloat64LE, 0x43, 1, 2, 3}, &f) {
		t.Error("accepted a float64 array of 3 bytes")
	}
}

// FuzzDecodeTyped feeds arbitrary bytes to the typed-array decoder.
func FuzzDecodeTyped(f *testing.F) {
	b, _ := encodeTyped([]float64{1, 2})
	f.Add(b)
	f.Add([]byte{0xd8, tagInt64LE, 0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		var a []float64
		var b []int32
		var c []uint64
		decodeTyped(data, &a)
		decodeTyped(data, &b)
		decodeTyped(data, &c)
		_ = decode(data, &a)
	})
}

func TestTimeoutOption(t *testing.T) {
	if c := getOpts([]GetOption{Timeout(1500 * time.Millisecond)}); c.timeoutMs != 1500 {
		t.Errorf("timeout = %d", c.timeoutMs)
	}
	if c := getOpts(nil); c.timeoutMs != -1 {
		t.Errorf("default timeout = %d, want -1 (none)", c.timeoutMs)
	}
}

func TestByteSliceParts(t *testing.T) {
	for _, n := range []int{0, 5, 23, 24, 255, 256, 70000} {
		b := bytes.Repeat([]byte{9}, n)
		parts, _, err := encodeParts(b)
		if err != nil || len(parts) != 2 {
			t.Fatalf("%d bytes: %d parts, %v", n, len(parts), err)
		}
		want, _ := cbor.Marshal(b)
		if got := bytes.Join(parts, nil); !bytes.Equal(got, want) {
			t.Errorf("%d bytes: parts encode % x..., want % x...", n, got[:min(8, len(got))], want[:min(8, len(want))])
		}
		if n > 0 && &parts[1][0] != &b[0] {
			t.Errorf("%d bytes: the body is a copy", n)
		}
	}
}

var byteLen = Task1("byte_len", func(b []byte) (int, error) { return len(b), nil })

// TestLargeArgumentsGoByReference: an argument of 100 KiB or more is put
// in the object store and passed by reference, as Ray does, and the
// caller's reference is released once the submission has gone; a small
// one travels in the submission.
func TestLargeArgumentsGoByReference(t *testing.T) {
	h := newMemHost(t)
	for _, n := range []int{10, autoPutMin - 8, autoPutMin, 1 << 20} {
		v, err := byteLen.Remote(make([]byte, n)).Get()
		if err != nil || v != n {
			t.Fatalf("byte_len(%d bytes) = %d, %v", n, v, err)
		}
		arg := h.specs[len(h.specs)-1].Args[0]
		encoded := n + 5 // a CBOR byte string's head
		if n < 24 {
			encoded = n + 1
		}
		byRef := arg.Ref != nil
		if want := encoded >= autoPutMin; byRef != want {
			t.Errorf("%d bytes: passed by reference %v, want %v", n, byRef, want)
		}
		if byRef && (len(h.released) == 0 || !bytes.Equal(h.released[len(h.released)-1][:], arg.Ref)) {
			t.Errorf("%d bytes: the put %x was not released after the submission (released %v)", n, arg.Ref, h.released)
		}
	}
}

// TestGetRuntimeContext decodes what the host's runtime_context writes.
func TestGetRuntimeContext(t *testing.T) {
	newMemHost(t)
	rc, err := GetRuntimeContext()
	if err != nil {
		t.Fatal(err)
	}
	if rc.JobID != "j1" || rc.NodeID != "test-node" || rc.Attempt != 2 || rc.Resources["CPU"] != 0.5 ||
		rc.ActorID != (ObjectID{}) || rc.PlacementGroup.ID() != (ObjectID{}) || rc.Bundle != -1 {
		t.Errorf("got %+v", rc)
	}
}

// TestClusterQueries decodes what the host's cluster_info writes, and sums
// the nodes' resources.
func TestClusterQueries(t *testing.T) {
	newMemHost(t)
	nodes, err := Nodes()
	if err != nil || len(nodes) != 2 || nodes[1].Labels["zone"] != "edge" {
		t.Fatalf("Nodes: %+v, %v", nodes, err)
	}
	total, err := ClusterResources()
	if err != nil || total["CPU"] != 6 || total["GPU"] != 1 {
		t.Errorf("ClusterResources: %v, %v", total, err)
	}
	avail, err := AvailableResources()
	if err != nil || avail["CPU"] != 4.5 || avail["GPU"] != 1 {
		t.Errorf("AvailableResources: %v, %v", avail, err)
	}
}

// TestMixedRefs waits for and gets references of different types together.
func TestMixedRefs(t *testing.T) {
	newMemHost(t)
	n, err := Put(42)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Put("hi")
	if err != nil {
		t.Fatal(err)
	}
	ready, notReady, err := WaitAny([]AnyRef{n, s}, 1)
	if err != nil || len(ready) != 1 || len(notReady) != 1 || ready[0].ID() != n.ID() || notReady[0].ID() != s.ID() {
		t.Fatalf("WaitAny: %v %v %v", ready, notReady, err)
	}
	var x int
	var y string
	if err := GetEach([]Target{To(n, &x), To(s, &y)}); err != nil || x != 42 || y != "hi" {
		t.Fatalf("GetEach: %d %q %v", x, y, err)
	}
	bad := Ref[int]{err: errHost("submit failed")}
	if err := GetEach([]Target{To(n, &x), To(bad, &x)}); err == nil {
		t.Error("GetEach with a failed reference: no error")
	}
}

// TestPlacementGroupTable decodes what the host's pg_table writes, and
// finds a group by name.
func TestPlacementGroupTable(t *testing.T) {
	newMemHost(t)
	tab, err := PlacementGroupTable()
	if err != nil || len(tab) != 2 || tab[0].Name != "train" || tab[0].State != "created" || tab[0].Nodes[0] != "a" ||
		tab[0].Bundles[0]["CPU"] != 1 || tab[1].State != "failed" || tab[1].Reason == "" {
		t.Fatalf("table %+v, %v", tab, err)
	}
	pg, err := GetPlacementGroup("train")
	if err != nil || pg.ID()[IDSize-1] != 7 {
		t.Fatalf("GetPlacementGroup(train) = %v, %v", pg.ID(), err)
	}
	if _, err := GetPlacementGroup("nope"); err == nil || !strings.Contains(err.Error(), `no placement group named "nope"`) {
		t.Fatalf("GetPlacementGroup(nope): %v", err)
	}
}
