package control

import (
	"errors"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// TestStore: log entries round-trip, ranges delete, stable values keep,
// and all of it survives reopening the file.
func TestStore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "raft.db")
	s, err := openStore(path)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Unix(0, 1234567890)
	logs := []*raft.Log{
		{Index: 1, Term: 1, Type: raft.LogCommand, Data: []byte("one"), AppendedAt: at},
		{Index: 2, Term: 1, Type: raft.LogConfiguration, Data: []byte("two"), Extensions: []byte("ext")},
		{Index: 3, Term: 2, Type: raft.LogNoop},
	}
	if err := s.StoreLogs(logs); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteRange(1, 1); err != nil {
		t.Fatal(err)
	}
	if err := s.SetUint64([]byte("term"), 7); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get([]byte("vote")); err == nil || err.Error() != "not found" {
		t.Fatalf("a missing stable key: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if s, err = openStore(path); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	first, _ := s.FirstIndex()
	last, _ := s.LastIndex()
	if first != 2 || last != 3 {
		t.Fatalf("indexes %d..%d", first, last)
	}
	var l raft.Log
	if err := s.GetLog(1, &l); !errors.Is(err, raft.ErrLogNotFound) {
		t.Fatalf("a deleted entry: %v", err)
	}
	for _, want := range logs[1:] {
		if err := s.GetLog(want.Index, &l); err != nil || !reflect.DeepEqual(&l, want) {
			t.Fatalf("entry %d: %+v, %v", want.Index, l, err)
		}
	}
	if v, err := s.GetUint64([]byte("term")); v != 7 || err != nil {
		t.Fatalf("term %d, %v", v, err)
	}
}

// FuzzDecodeLog: no stored bytes panic the decoder, and what it accepts
// encodes back to the same bytes.
func FuzzDecodeLog(f *testing.F) {
	f.Add(encodeLog(&raft.Log{Index: 1, Term: 2, Data: []byte("x"), Extensions: []byte("y")}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		var l raft.Log
		if decodeLog(b, &l) != nil {
			return
		}
		if l.AppendedAt.IsZero() && len(b) >= 25 && string(b[17:25]) != "\x00\x00\x00\x00\x00\x00\x00\x00" {
			t.Fatal("a time was lost")
		}
		if got := encodeLog(&l); string(got) != string(b) {
			t.Fatalf("re-encoded %x, was %x", got, b)
		}
	})
}
