package wire

import (
	"math"

	"github.com/wasmfabric/fabric/internal/cborlite"
	"github.com/wasmfabric/fabric/internal/objects"
)

// A worker sends a Submit and a Done for every task, so they are read by
// hand-written decoders rather than by reflection. Each returns ok=false
// for anything but the shape the encoder writes, and the caller then uses
// Unmarshal, whose answer is the reference (a differential fuzz target
// holds these to it). Byte strings are copied: a kept value never pins a
// frame.

// fastDecode turns the fast decoders on (tests compare with them off).
var fastDecode = true

// ReadID reads an object ID: a byte string of exactly objects.IDSize bytes.
func ReadID(r *cborlite.Reader) (objects.ID, bool) {
	var id objects.ID
	b, ok := r.Bytes()
	if !ok || len(b) != len(id) {
		return id, false
	}
	return objects.ID(b), true
}

// ReadIDs reads a list of object IDs (null: nil) of at most max.
func ReadIDs(r *cborlite.Reader, max int) ([]objects.ID, bool) {
	if r.Null() {
		return nil, true
	}
	n, ok := r.Count(cborlite.MajorArray, max)
	if !ok {
		return nil, false
	}
	out := make([]objects.ID, n)
	for i := range out {
		if out[i], ok = ReadID(r); !ok {
			return nil, false
		}
	}
	return out, true
}

func readPiece(r *cborlite.Reader) (Piece, bool) {
	var p Piece
	ok := r.Fields(5)
	if ok {
		p.Inline, ok = r.BytesCopy()
	}
	if ok {
		p.Off, ok = r.Int64()
	}
	if ok {
		p.Size, ok = r.Int64()
	}
	if ok {
		p.Path, ok = r.Text()
	}
	if ok {
		p.Arena, ok = r.Bool()
	}
	return p, ok
}

// decodeDone is the fast decoder of a Done.
func decodeDone(b []byte) (Done, bool) {
	var d Done
	if !fastDecode {
		return d, false
	}
	r := cborlite.NewReader(b)
	ok := r.Fields(11)
	if ok {
		d.Task, ok = ReadID(r)
	}
	if ok {
		d.OK, ok = r.Bool()
	}
	if ok {
		d.Value, ok = readPiece(r)
	}
	if ok {
		d.Error, ok = r.Text()
	}
	if ok {
		d.Kind, ok = r.Text()
	}
	if ok {
		d.Refs, ok = ReadIDs(r, 1<<20)
	}
	if ok {
		d.Output, ok = r.Int64()
	}
	if ok {
		d.Created, ok = ReadID(r)
	}
	if ok {
		d.Dropped, ok = r.Bool()
	}
	if ok {
		var code int64
		code, ok = r.Int64()
		ok = ok && code >= 0 && code <= math.MaxUint32
		d.ExitCode = uint32(code)
	}
	if ok {
		d.ErrorTypes, ok = r.BytesCopy()
	}
	return d, ok && r.Done()
}

// decodeSubmit is the fast decoder of a Submit.
func decodeSubmit(b []byte) (Submit, bool) {
	var s Submit
	if !fastDecode {
		return s, false
	}
	r := cborlite.NewReader(b)
	ok := r.Fields(6)
	if ok {
		s.Seq, ok = r.Uint64()
	}
	if ok {
		s.Task, ok = ReadID(r)
	}
	if ok {
		s.Actor, ok = r.Bool()
	}
	if ok {
		s.Spec, ok = r.BytesCopy()
	}
	if ok {
		s.IDs, ok = ReadIDs(r, 1<<20)
	}
	if ok {
		s.Lane, ok = r.Uint64()
	}
	return s, ok && r.Done()
}

// DecodeDone decodes a Done.
func DecodeDone(b []byte) (Done, error) {
	if d, ok := decodeDone(b); ok {
		return d, nil
	}
	var d Done
	err := Unmarshal(b, &d)
	return d, err
}

// DecodeSubmit decodes a Submit.
func DecodeSubmit(b []byte) (Submit, error) {
	if s, ok := decodeSubmit(b); ok {
		return s, nil
	}
	var s Submit
	err := Unmarshal(b, &s)
	return s, err
}
