// Package objects holds object IDs, the shared-memory arena that agents and workers map, and spilling to disk.
package objects

import (
	"encoding/hex"
	"errors"
	"fmt"
)

// IDSize is the fixed length of every ID in the guest ABI and on the wire.
const IDSize = 20

// ID names an object, a task or an actor. The first 16 bytes are random
// (unguessable); the last 4 are the index of a task's return value.
type ID [IDSize]byte

// NilID is the zero ID; no object has it.
var NilID ID

// ErrBadID is returned when bytes cannot be an ID.
var ErrBadID = errors.New("objects: bad ID")

// String returns the ID as lowercase hex.
func (id ID) String() string { return hex.EncodeToString(id[:]) }

// Short returns the first 8 hex digits, for logs.
func (id ID) Short() string { return hex.EncodeToString(id[:4]) }

// IsNil reports whether id is the zero ID.
func (id ID) IsNil() bool { return id == NilID }

// WithIndex returns the ID of return value i of the task id.
func (id ID) WithIndex(i uint32) ID {
	id[16] = byte(i >> 24)
	id[17] = byte(i >> 16)
	id[18] = byte(i >> 8)
	id[19] = byte(i)
	return id
}

// Index returns the return-value index stored in the last four bytes.
func (id ID) Index() uint32 {
	return uint32(id[16])<<24 | uint32(id[17])<<16 | uint32(id[18])<<8 | uint32(id[19])
}

// Task returns the ID with its index cleared: the task that made the object.
func (id ID) Task() ID { return id.WithIndex(0) }

// IDFromBytes copies b into an ID; b must be exactly IDSize bytes.
func IDFromBytes(b []byte) (ID, error) {
	var id ID
	if len(b) != IDSize {
		return id, fmt.Errorf("%w: %d bytes, want %d", ErrBadID, len(b), IDSize)
	}
	copy(id[:], b)
	return id, nil
}

// MarshalBinary returns the ID's bytes: in CBOR an ID is a byte string
// of IDSize bytes.
func (id ID) MarshalBinary() ([]byte, error) { return id[:], nil }

// UnmarshalBinary sets the ID from exactly IDSize bytes.
func (id *ID) UnmarshalBinary(b []byte) error {
	v, err := IDFromBytes(b)
	if err != nil {
		return err
	}
	*id = v
	return nil
}
