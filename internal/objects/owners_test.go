package objects

import (
	"errors"
	"strings"
	"testing"
)

func TestSpillShare(t *testing.T) {
	const limit = 120
	tests := []struct {
		name   string
		owner  string
		spills map[string]int64
		want   int64
	}{
		{"alone", "a", nil, 60},
		{"alone, with files", "a", map[string]int64{"a": 60}, 60},
		{"beside another", "b", map[string]int64{"a": 60}, 40},
		{"beside two others", "c", map[string]int64{"a": 60, "b": 40}, 30},
		{"one of three", "a", map[string]int64{"a": 1, "b": 1, "c": 1}, 30},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := SpillShare(limit, tt.owner, tt.spills); got != tt.want {
				t.Fatalf("SpillShare(%d, %q, %v) = %d, want %d", limit, tt.owner, tt.spills, got, tt.want)
			}
		})
	}
}

func putFor(s *Store, owner string, n, size int) error {
	id := testID(n)
	return s.PutFor(owner, id, payload(id, size))
}

// TestStoreOwnerFillsItsShare: one tenant putting until it can put no
// more fills its share of the spill room, and another tenant's puts and
// reads go on; deleting every object gives every byte back.
func TestStoreOwnerFillsItsShare(t *testing.T) {
	s, _ := newTestStore(t, 4*kib)
	s.SetSpillLimit(16 * kib)
	n := 0
	var err error
	for ; n < 100; n++ {
		if err = putFor(s, "a", n, kib); err != nil {
			break
		}
	}
	if !errors.Is(err, ErrStoreFull) {
		t.Fatalf("tenant a's put %d: %v", n, err)
	}
	t.Logf("tenant a put %d KiB: %v", n, err)
	if u := s.Stats().Owners["a"]; u.Spilled != 8*kib || u.Held != int64(n)*kib {
		t.Fatalf("tenant a holds %+v after %d puts, want 8 KiB spilled (half the room)", u, n)
	}
	// Tenant b: its objects go to the arena (a's cannot be spilled) or
	// straight to its own files.
	for i := range 5 {
		if err := putFor(s, "b", 1000+i, kib); err != nil {
			t.Fatalf("tenant b's put %d beside a full tenant a: %v", i, err)
		}
	}
	for i := range 5 {
		mustRead(t, s, 1000+i, kib)
	}
	for i := range n {
		mustRead(t, s, i, kib)
	}
	if u := s.Stats().Owners["b"]; u.Held != 5*kib {
		t.Fatalf("tenant b holds %+v", u)
	}
	for i := range n {
		s.Delete(testID(i))
	}
	for i := range 5 {
		s.Delete(testID(1000 + i))
	}
	if st := s.Stats(); len(st.Owners) != 0 || st.Used != 0 {
		t.Fatalf("after every delete: %+v", st)
	}
	// The spill room is free again: a fills its share once more.
	for i := range 12 {
		if err := putFor(s, "a", i, kib); err != nil {
			t.Fatalf("tenant a's put %d once the store is empty: %v", i, err)
		}
	}
}

// TestStoreOwnerLimits: an owner's bounds refuse its own objects with
// ErrOverQuota, naming the quota, and nobody else's.
func TestStoreOwnerLimits(t *testing.T) {
	s, _ := newTestStore(t, 4*kib)
	s.SetSpillLimit(64 * kib)
	s.SetLimits(map[string]Limit{"a": {Held: 3 * kib}, "b": {Spill: 2 * kib}})
	for i := range 3 {
		if err := putFor(s, "a", i, kib); err != nil {
			t.Fatal(err)
		}
	}
	err := putFor(s, "a", 3, kib)
	if !errors.Is(err, ErrOverQuota) || !strings.Contains(err.Error(), "object store quota of 3072") {
		t.Fatalf("tenant a past its object store quota: %v", err)
	}
	if _, err := s.CreateFor("a", testID(4), kib); !errors.Is(err, ErrOverQuota) {
		t.Fatalf("a reservation past the quota: %v", err)
	}
	// b's objects spill past the arena until its spill quota; c's go on.
	n := 100
	for ; n < 200; n++ {
		if err = putFor(s, "b", n, kib); err != nil {
			break
		}
	}
	if !errors.Is(err, ErrOverQuota) || !strings.Contains(err.Error(), "quota of 2048") {
		t.Fatalf("tenant b past its spill quota: %v", err)
	}
	if u := s.Stats().Owners["b"]; u.Spilled != 2*kib {
		t.Fatalf("tenant b holds %+v", u)
	}
	for i := range 8 {
		if err := putFor(s, "c", 300+i, kib); err != nil {
			t.Fatalf("tenant c: %v", err)
		}
	}
	s.SetLimits(nil)
	if err := putFor(s, "a", 3, kib); err != nil {
		t.Fatalf("with the bound gone: %v", err)
	}
}
