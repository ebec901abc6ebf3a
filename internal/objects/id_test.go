package objects

import (
	"errors"
	"testing"
)

// TestIDBinary: an ID is exactly IDSize bytes in binary form; any other
// length is refused with ErrBadID, so a malformed ID in a message never
// becomes a truncated or padded one.
func TestIDBinary(t *testing.T) {
	id := ID{1, 2, 3}.WithIndex(7)
	b, err := id.MarshalBinary()
	if err != nil || len(b) != IDSize {
		t.Fatalf("MarshalBinary: %x %v", b, err)
	}
	var back ID
	if err := back.UnmarshalBinary(b); err != nil || back != id || back.Index() != 7 || back.Task() != (ID{1, 2, 3}) {
		t.Fatalf("round trip: %v %v", back, err)
	}
	for _, n := range []int{0, 1, IDSize - 1, IDSize + 1} {
		if err := back.UnmarshalBinary(make([]byte, n)); !errors.Is(err, ErrBadID) {
			t.Errorf("%d bytes: %v, want ErrBadID", n, err)
		}
	}
}
