package wire

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"testing"
	"time"

	"github.com/wasmfabric/fabric/internal/abi"
	"github.com/wasmfabric/fabric/internal/objects"
)

type pipe struct {
	bytes.Buffer
}

func (p *pipe) Close() error { return nil }

func TestRoundTrip(t *testing.T) {
	cases := []struct {
		t   Type
		msg any
		out any
	}{
		{TypeExec, Exec{Task: objects.ID{1, 2, 3}, Kind: ExecActorMethod, Name: "C.m", Args: []Piece{{Inline: []byte{0x80}}, {Arena: true, Off: 64, Size: 10}}}, &Exec{}},
		{TypeDone, Done{Task: objects.ID{4}, OK: true, Value: Piece{Inline: []byte{1}}, Refs: []objects.ID{{5}}}, &Done{}},
		{TypeReply, Reply{Seq: 7, Items: []Item{{IsError: true, Data: Piece{Inline: []byte("x")}}}, Ready: []bool{true, false}}, &Reply{}},
		{TypeGet, Get{Seq: 1, IDs: []objects.ID{{6}, {7}}, TimeoutMs: -1}, &Get{}},
	}
	for i, c := range cases {
		p := &pipe{}
		conn := NewConn(p)
		if err := conn.Send(Lane(i*1000), c.t, c.msg); err != nil {
			t.Fatal(err)
		}
		lane, typ, body, err := conn.Recv()
		if err != nil || typ != c.t || lane != Lane(i*1000) {
			t.Fatalf("recv %s: lane %d, %v %v", c.t, lane, typ, err)
		}
		if err := Unmarshal(body, c.out); err != nil {
			t.Fatalf("%s: %v", c.t, err)
		}
	}
}

func TestRecvRejectsGarbage(t *testing.T) {
	cases := []struct {
		name string
		in   []byte
		want error
	}{
		{"huge frame", []byte{0xff, 0xff, 0xff, 0xff, 1, 0, 0, 0, 0, 0, 0, 0, 0}, ErrFrameTooLarge},
		{"empty frame", []byte{0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0}, ErrFrameTooLarge},
		{"frame shorter than its lane", []byte{0, 0, 0, 8, 1, 0, 0, 0, 0, 0, 0, 0, 0}, ErrFrameTooLarge},
		{"unknown type", []byte{0, 0, 0, 9, 200, 0, 0, 0, 0, 0, 0, 0, 0}, ErrUnknownType},
		{"truncated header", []byte{0, 0, 0, 9, byte(TypeExec), 1}, io.ErrUnexpectedEOF},
		{"truncated", []byte{0, 0, 0, 12, byte(TypeExec), 0, 0, 0, 0, 0, 0, 0, 1, 0x80}, io.ErrUnexpectedEOF},
	}
	for _, c := range cases {
		p := &pipe{}
		p.Write(c.in)
		_, _, _, err := NewConn(p).Recv()
		if !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, err, c.want)
		}
	}
}

// FuzzRecv feeds arbitrary bytes to the frame reader and every message
// decoder: they return errors, never panic.
func FuzzRecv(f *testing.F) {
	p := &pipe{}
	_ = NewConn(p).Send(3, TypeExec, Exec{Name: "f", Args: []Piece{{Inline: []byte{0x80}}}})
	f.Add(p.Bytes())
	f.Add([]byte{0, 0, 0, 10, byte(TypeReply), 0, 0, 0, 0, 0, 0, 0, 1, 0xa0})
	f.Fuzz(func(t *testing.T, data []byte) {
		p := &pipe{}
		p.Write(data)
		c := NewConn(p)
		for range 4 {
			_, _, body, err := c.Recv()
			if err != nil {
				return
			}
			for _, v := range []any{&Ready{}, &Open{}, &Close{}, &Closed{}, &Lease{}, &LeaseEnd{}, &LeaseOver{}, &Exec{}, &Done{}, &Output{}, &Reply{}, &Submit{}, &Put{}, &Create{}, &Get{}, &Unpin{}, &Wait{}, &Cancel{}, &Release{}, &ActorLookup{}, &ActorKill{}, &abi.TaskSpec{}, &abi.ErrorValue{}} {
				_ = Unmarshal(body, v)
			}
		}
	})
}

// TestTryFlushNeverBlocks fills a socket whose peer does not read: TryFlush
// writes what fits and returns, Flush then finishes once the peer reads,
// and every frame arrives whole and in order.
func TestTryFlushNeverBlocks(t *testing.T) {
	a, b, err := socketPair()
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	defer b.Close()
	src, dst := NewConn(a), NewConn(b)
	const frames = 400
	payload := bytes.Repeat([]byte{7}, 16<<10)
	full := false
	for i := range frames {
		if _, err := src.Append(1, TypeOutput, Output{Task: objects.ID{byte(i), byte(i >> 8)}, Data: payload}); err != nil {
			t.Fatal(err)
		}
		if !src.TryFlush() {
			full = true // the socket buffer is full; the rest stays queued
		}
	}
	if !full {
		t.Fatalf("%d frames of 16 KiB fit in the socket buffer; the test needs a full socket", frames)
	}
	done := make(chan error, 1)
	go func() { done <- src.Flush() }()
	for i := range frames {
		_, typ, body, err := dst.Recv()
		if err != nil || typ != TypeOutput {
			t.Fatalf("frame %d: %v %v", i, typ, err)
		}
		var o Output
		if err := Unmarshal(body, &o); err != nil || int(o.Task[0])|int(o.Task[1])<<8 != i || !bytes.Equal(o.Data, payload) {
			t.Fatalf("frame %d arrived damaged or out of order (%v)", i, err)
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !src.TryFlush() {
		t.Fatal("TryFlush of an empty buffer reported leftovers")
	}
}

// TestAppendWhileFlushBlocks: while a Flush waits for a socket whose peer
// does not read, Append still returns at once (the agent appends under
// its lock), and everything arrives in order once the peer reads.
func TestAppendWhileFlushBlocks(t *testing.T) {
	a, b, err := socketPair()
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	defer b.Close()
	src, dst := NewConn(a), NewConn(b)
	payload := bytes.Repeat([]byte{1}, 64<<10)
	for i := range 64 { // 4 MiB: more than a socket holds
		if _, err := src.Append(1, TypeOutput, Output{Task: objects.ID{byte(i)}, Data: payload}); err != nil {
			t.Fatal(err)
		}
	}
	flushed := make(chan error, 1)
	go func() { flushed <- src.Flush() }()
	time.Sleep(50 * time.Millisecond) // the flush is blocked on the full socket
	appended := make(chan struct{})
	go func() {
		for i := 64; i < 80; i++ {
			_, _ = src.Append(1, TypeOutput, Output{Task: objects.ID{byte(i)}, Data: payload})
		}
		close(appended)
	}()
	select {
	case <-appended:
	case <-time.After(2 * time.Second):
		t.Fatal("Append waited for a blocked Flush")
	}
	go func() { <-flushed; flushed <- src.Flush() }()
	for i := range 80 {
		_, typ, body, err := dst.Recv()
		var o Output
		if err != nil || typ != TypeOutput || Unmarshal(body, &o) != nil || o.Task[0] != byte(i) {
			t.Fatalf("frame %d: %v", i, err)
		}
	}
}

// fastSamples are Done and Submit messages as workers send them.
func fastSamples() []any {
	id := objects.ID{1, 2, 3}
	return []any{
		Done{Task: id, OK: true, Value: Piece{Inline: []byte{0x07}}},
		Done{Task: id, Value: Piece{Off: 1 << 33, Size: 5 << 20, Arena: true}, Refs: []objects.ID{id, {9}}, Created: objects.ID{4}, Output: 12},
		Done{Task: id, Error: "boom", Kind: "trap", Value: Piece{Path: "/spill/x", Size: -1}},
		Done{Task: id, Dropped: true},
		Done{Task: id, Error: "not found", Kind: "app", ErrorTypes: []byte{0x81, 0xa1, 0x64, 'n', 'a', 'm', 'e', 0x61, 'E'}},
		Submit{Task: id, Spec: []byte{0xa1, 0x62, 'f', 'n', 0x61, 'f'}, IDs: []objects.ID{{1}, {2}}},
		Submit{Seq: 7, Task: id, Actor: true, Spec: []byte{}, IDs: []objects.ID{{5}}},
		Submit{Task: id, Spec: []byte{0xa0}, IDs: []objects.ID{{6}}, Lane: 1 << 40},
	}
}

// The fast decoders read what Marshal writes, as Unmarshal does.
func TestFastDecoders(t *testing.T) {
	for _, m := range fastSamples() {
		b, err := Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		var got any
		var ok bool
		switch m.(type) {
		case Done:
			got, ok = decodeDone(b)
		case Submit:
			got, ok = decodeSubmit(b)
		}
		if !ok || !reflect.DeepEqual(got, m) && !sameEncoding(t, got, m) {
			t.Fatalf("%T: fast %+v (%v), want %+v", m, got, ok, m)
		}
	}
}

func sameEncoding(t testing.TB, a, b any) bool {
	ea, err1 := Marshal(a)
	eb, err2 := Marshal(b)
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	return bytes.Equal(ea, eb)
}

// FuzzFastDecoders holds the fast decoders to Unmarshal: whatever they
// accept, Unmarshal accepts with the same result.
func FuzzFastDecoders(f *testing.F) {
	for _, m := range fastSamples() {
		b, _ := Marshal(m)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if d, ok := decodeDone(b); ok {
			var want Done
			if err := Unmarshal(b, &want); err != nil {
				t.Fatalf("done %x: decoded fast, but Unmarshal says %v", b, err)
			}
			if !sameEncoding(t, d, want) {
				t.Fatalf("done %x: fast %+v, general %+v", b, d, want)
			}
		}
		if s, ok := decodeSubmit(b); ok {
			var want Submit
			if err := Unmarshal(b, &want); err != nil {
				t.Fatalf("submit %x: decoded fast, but Unmarshal says %v", b, err)
			}
			if !sameEncoding(t, s, want) {
				t.Fatalf("submit %x: fast %+v, general %+v", b, s, want)
			}
		}
	})
}
