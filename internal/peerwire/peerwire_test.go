package peerwire

import (
	"bytes"
	"errors"
	"reflect"
	"testing"

	"github.com/wasmfabric/fabric/internal/objects"
	"github.com/wasmfabric/fabric/internal/wire"
)

// every holds one message of each kind, with every field set.
func every() []Message {
	id := objects.ID{1, 2, 3}.WithIndex(1)
	return []Message{
		&RunTask{Job: "j", Root: "n1", Tenant: "acme", Digest: "ab", What: RunActorCall, Task: id, Attempt: 2, Spec: []byte{0x80},
			Refs: []objects.ID{id}, Actor: objects.ID{9}, Incarnation: 3},
		&TaskDone{Job: "j", Task: id, Attempt: 2, Refused: "no", Error: []byte{1}, Refs: []objects.ID{id},
			Results: []Result{{Value: []byte{2}}, {Held: true, ID: id, Size: 7}}},
		&CancelTask{Job: "j", Task: id, Attempt: 1},
		&GetObject{Job: "j", ID: id, For: objects.ID{8}},
		&ObjectValue{Job: "j", ID: id, For: objects.ID{8}, Missing: "gone", IsError: true, Inline: []byte("x"), Stored: true, Size: 9, Refs: []objects.ID{id}},
		&Release{Job: "j", IDs: []objects.ID{id, {4}}, Counts: []uint32{1, 2}},
		&EndJob{Job: "j"},
		&Output{Job: "j", Stderr: true, Data: []byte("line\n")},
		&ActorDied{Job: "j", Actor: id, Incarnation: 4, Cause: "crash"},
		&RegisterActor{Job: "j", Actor: id, Class: "C"},
		&ActorRegistered{Job: "j", Actor: id, Err: "no"},
		&KillActor{Job: "j", Actor: id, Incarnation: 1, NoRestart: true},
		&ShareOpened{Job: "j"},
		&TaskYield{Job: "j", Task: objects.ID{3}, Attempt: 2, Index: 5, Result: Result{Held: true, ID: objects.ID{4}, Size: 9}, Refs: []objects.ID{{5}}},
	}
}

// TestRoundTrip: every kind comes back as it went, alone and in a batch,
// and the table covers every kind.
func TestRoundTrip(t *testing.T) {
	msgs := every()
	if len(msgs) != int(kindEnd)-1 {
		t.Fatalf("the test covers %d kinds of %d", len(msgs), kindEnd-1)
	}
	var envs []Envelope
	for _, m := range msgs {
		e, err := Encode(m)
		if err != nil {
			t.Fatal(err)
		}
		back, err := Decode(e)
		if err != nil || !reflect.DeepEqual(back, m) {
			t.Fatalf("%s: %#v, %v; want %#v", m.Kind(), back, err, m)
		}
		if back.JobID() != "j" || m.Kind().String() == "" {
			t.Fatalf("%s: job %q", m.Kind(), back.JobID())
		}
		envs = append(envs, e)
	}
	body, err := EncodeBatch(Batch{Session: 5, Seq: 6, Msgs: envs})
	if err != nil {
		t.Fatal(err)
	}
	b, back, err := DecodeBatch(body)
	if err != nil || b.Session != 5 || b.Seq != 6 || !reflect.DeepEqual(back, msgs) {
		t.Fatalf("batch: %v", err)
	}
}

// TestMalformed: unknown kinds, bodies of the wrong shape, IDs of the
// wrong length and releases whose lists differ are refused with an error.
func TestMalformed(t *testing.T) {
	good, _ := Encode(&GetObject{Job: "j", ID: objects.ID{1}})
	short := Envelope{Kind: KindGetObject, Body: []byte{0x82, 0x61, 'j', 0x43, 1, 2, 3}} // a 3-byte ID
	badRelease, _ := Encode(&Release{Job: "j", IDs: []objects.ID{{1}}, Counts: nil})
	cases := []struct {
		name string
		e    Envelope
		want error
	}{
		{"kind 0", Envelope{Kind: 0, Body: good.Body}, ErrUnknownKind},
		{"kind from the future", Envelope{Kind: 200, Body: good.Body}, ErrUnknownKind},
		{"body of another kind", Envelope{Kind: KindRunTask, Body: good.Body}, ErrMalformed},
		{"short ID", short, ErrMalformed},
		{"release lists differ", badRelease, ErrMalformed},
		{"garbage", Envelope{Kind: KindEndJob, Body: []byte{0xff, 0x00}}, ErrMalformed},
	}
	for _, c := range cases {
		if _, err := Decode(c.e); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
	if _, _, err := DecodeBatch([]byte{0x83, 0x01}); !errors.Is(err, ErrMalformed) {
		t.Errorf("truncated batch: %v", err)
	}
}

// FuzzDecodeBatch: no input makes the decoder panic, and what it accepts
// encodes again.
func FuzzDecodeBatch(f *testing.F) {
	var envs []Envelope
	for _, m := range every() {
		e, _ := Encode(m)
		envs = append(envs, e)
	}
	body, _ := EncodeBatch(Batch{Session: 1, Seq: 2, Msgs: envs})
	f.Add(body)
	f.Add([]byte{0x83, 0x01, 0x02, 0x80})
	f.Fuzz(func(t *testing.T, b []byte) {
		batch, msgs, err := DecodeBatch(b)
		if err != nil {
			return
		}
		for i, m := range msgs {
			if m.Kind() != batch.Msgs[i].Kind {
				t.Fatalf("message %d decoded as %s from kind %s", i, m.Kind(), batch.Msgs[i].Kind)
			}
			if _, err := Encode(m); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// fastSamples are messages of the kinds with fast decoders.
func fastSamples() []Message {
	id := func(b byte) objects.ID { var x objects.ID; x[0], x[19] = b, b; return x }
	return []Message{
		&RunTask{Job: "0123456789abcdef", Root: "node-a", Tenant: "t", Digest: "ff00", What: RunActorCall, Task: id(1), Attempt: 3,
			Spec: []byte{0xa1, 0x62, 'f', 'n', 0x61, 'f'}, Refs: []objects.ID{id(2), id(3)}, Actor: id(4), Incarnation: 7, Ready: true},
		&RunTask{Job: "j", Task: id(9), Spec: []byte{}},
		&TaskDone{Job: "j", Task: id(5), Attempt: 1, Results: []Result{{Value: []byte{0x01}}, {Held: true, ID: id(6), Size: 1 << 40}},
			Refs: []objects.ID{id(7)}, Ran: 12345},
		&TaskDone{Job: "j", Task: id(8), Refused: "no room", Error: []byte{0xa0}, Ran: -1},
		&TaskDone{Job: "j", Task: id(9), Busy: []byte{0xa1, 0x63, 'C', 'P', 'U', 0x19, 0x01, 0xf4}},
	}
}

// The fast decoders read what the encoder writes, as the general decoder
// does, and so does the batch splitter.
func TestFastDecoders(t *testing.T) {
	var envs []Envelope
	for _, m := range fastSamples() {
		e, err := Encode(m)
		if err != nil {
			t.Fatal(err)
		}
		envs = append(envs, e)
		got, ok := decodeFast(e.Kind, e.Body)
		if !ok {
			t.Fatalf("%s: not decoded", e.Kind)
		}
		if !sameEncoding(t, got, m) {
			t.Fatalf("%s: decoded %+v, want %+v", e.Kind, got, m)
		}
	}
	raw, err := EncodeBatch(Batch{Session: 42, Seq: 7, Msgs: envs})
	if err != nil {
		t.Fatal(err)
	}
	b, ok := splitBatch(raw)
	if !ok || b.Session != 42 || b.Seq != 7 || len(b.Msgs) != len(envs) {
		t.Fatalf("split batch: %+v %v", b, ok)
	}
	for i := range envs {
		if b.Msgs[i].Kind != envs[i].Kind || !bytes.Equal(b.Msgs[i].Body, envs[i].Body) {
			t.Fatalf("envelope %d differs", i)
		}
	}
}

func sameEncoding(t testing.TB, a, b any) bool {
	ea, err1 := wire.Marshal(a)
	eb, err2 := wire.Marshal(b)
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	return bytes.Equal(ea, eb)
}

// FuzzFastDecoders holds the fast decoders to the general one: whatever
// they accept, the general decoder accepts with the same result.
func FuzzFastDecoders(f *testing.F) {
	for _, m := range fastSamples() {
		e, _ := Encode(m)
		f.Add(byte(e.Kind), []byte(e.Body))
	}
	f.Fuzz(func(t *testing.T, kind byte, body []byte) {
		k := Kind(kind%2) + KindRunTask
		got, ok := decodeFast(k, body)
		if ok {
			want := newMessage[k]()
			if err := wire.Unmarshal(body, want); err != nil {
				t.Fatalf("%s %x: decoded fast, but the general decoder says %v", k, body, err)
			}
			if !sameEncoding(t, got, want) {
				t.Fatalf("%s %x: fast %+v, general %+v", k, body, got, want)
			}
		}
		// Whatever the general decoder reads, the fast encoder writes as
		// the general encoder does.
		if general := newMessage[k](); wire.Unmarshal(body, general) == nil {
			got, _ := encodeFast(general)
			want, err := wire.Marshal(general)
			if err == nil && !bytes.Equal(got, want) {
				t.Fatalf("%s %+v: fast encoding %x, general %x", k, general, got, want)
			}
		}
		// A batch decodes to the same messages, or fails, either way.
		b1, m1, err1 := DecodeBatch(body)
		fast = false
		b2, m2, err2 := DecodeBatch(body)
		fast = true
		if (err1 == nil) != (err2 == nil) {
			t.Fatalf("batch %x: with the fast decoders %v, without %v", body, err1, err2)
		}
		if err1 == nil && (b1.Session != b2.Session || b1.Seq != b2.Seq || !sameEncoding(t, m1, m2)) {
			t.Fatalf("batch %x: with the fast decoders %+v, without %+v", body, m1, m2)
		}
	})
}

// The fast encoders write what the general encoder writes.
func TestFastEncoders(t *testing.T) {
	msgs := append(fastSamples(), &RunTask{}, &TaskDone{}, &TaskDone{Results: []Result{}, Refs: []objects.ID{}, Error: []byte{}})
	var envs []Envelope
	for _, m := range msgs {
		got, ok := encodeFast(m)
		want, err := wire.Marshal(m)
		if !ok || err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s %+v: fast %x, general %x (%v)", m.Kind(), m, got, want, err)
		}
		e, _ := Encode(m)
		envs = append(envs, e)
	}
	for _, b := range []Batch{{Session: 1 << 40, Seq: 3, Msgs: envs}, {Session: 1}, {Msgs: []Envelope{}}} {
		got, _ := EncodeBatch(b)
		want, err := wire.Marshal(b)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("batch: fast %x, general %x (%v)", got, want, err)
		}
	}
}
