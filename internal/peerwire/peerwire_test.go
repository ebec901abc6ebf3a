package peerwire

import (
	"errors"
	"reflect"
	"testing"

	"github.com/wasmfabric/fabric/internal/objects"
)

// every holds one message of each kind, with every field set.
func every() []Message {
	id := objects.ID{1, 2, 3}.WithIndex(1)
	return []Message{
		&RunTask{Job: "j", Root: "n1", Digest: "ab", What: RunActorCall, Task: id, Attempt: 2, Spec: []byte{0x80},
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
