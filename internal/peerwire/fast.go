package peerwire

import (
	"math"

	"github.com/wasmfabric/fabric/internal/cborlite"
	"github.com/wasmfabric/fabric/internal/objects"
	"github.com/wasmfabric/fabric/internal/wire"
)

// The peer link carries a run_task and a task_done for every task sent to
// another node, so their bodies, and the batches around them, are read by
// hand-written decoders rather than by reflection. Each returns ok=false
// for anything but the shape the encoder writes, and the caller then uses
// the general decoder, whose answer is the reference (a differential fuzz
// target holds the fast ones to it). Byte strings the core keeps (specs,
// values, errors) are copied, so that a small value kept for long does not
// keep a whole batch alive.

// maxItems bounds the lists the fast decoders read.
const maxItems = 1 << 20

// fastReader reads the fields of a message.
type fastReader struct{ *cborlite.Reader }

func (r fastReader) uint(max uint64) (uint64, bool) {
	v, ok := r.Uint64()
	return v, ok && v <= max
}

// decodeRunTask is the fast decoder of a run_task body.
func decodeRunTask(b []byte) (*RunTask, bool) {
	r := fastReader{cborlite.NewReader(b)}
	m := new(RunTask)
	ok := r.Fields(16)
	var what, attempt, retried uint64
	if ok {
		m.Job, ok = r.Text()
	}
	if ok {
		m.Root, ok = r.Text()
	}
	if ok {
		m.Digest, ok = r.Text()
	}
	if ok {
		what, ok = r.uint(math.MaxUint8)
		m.What = Run(what)
	}
	if ok {
		m.Task, ok = wire.ReadID(r.Reader)
	}
	if ok {
		attempt, ok = r.uint(math.MaxUint32)
		m.Attempt = uint32(attempt)
	}
	if ok {
		m.Spec, ok = r.BytesCopy()
	}
	if ok {
		m.Refs, ok = wire.ReadIDs(r.Reader, maxItems)
	}
	if ok {
		m.Actor, ok = wire.ReadID(r.Reader)
	}
	if ok {
		m.Incarnation, ok = r.Uint64()
	}
	if ok {
		retried, ok = r.uint(math.MaxUint32)
		m.Retried = uint32(retried)
	}
	if ok {
		m.Group, ok = r.BytesCopy()
	}
	if ok {
		m.Bundle, ok = r.Int64()
	}
	if ok {
		m.Tenant, ok = r.Text()
	}
	if ok {
		m.Grant, ok = r.BytesCopy()
	}
	if ok {
		m.Ready, ok = r.Bool()
	}
	return m, ok && r.Done()
}

// decodeTaskDone is the fast decoder of a task_done body.
func decodeTaskDone(b []byte) (*TaskDone, bool) {
	r := fastReader{cborlite.NewReader(b)}
	m := new(TaskDone)
	ok := r.Fields(9)
	var attempt uint64
	if ok {
		m.Job, ok = r.Text()
	}
	if ok {
		m.Task, ok = wire.ReadID(r.Reader)
	}
	if ok {
		attempt, ok = r.uint(math.MaxUint32)
		m.Attempt = uint32(attempt)
	}
	if ok {
		m.Refused, ok = r.Text()
	}
	if ok {
		m.Error, ok = r.BytesCopy()
	}
	if ok {
		var n int
		if r.Null() { // no results
		} else if n, ok = r.Count(cborlite.MajorArray, maxItems); ok {
			m.Results = make([]Result, n)
			for i := 0; ok && i < n; i++ {
				res := &m.Results[i]
				ok = r.Fields(4)
				if ok {
					res.Value, ok = r.BytesCopy()
				}
				if ok {
					res.Held, ok = r.Bool()
				}
				if ok {
					res.ID, ok = wire.ReadID(r.Reader)
				}
				if ok {
					res.Size, ok = r.Int64()
				}
			}
		}
	}
	if ok {
		m.Refs, ok = wire.ReadIDs(r.Reader, maxItems)
	}
	if ok {
		m.Ran, ok = r.Int64()
	}
	if ok {
		m.Busy, ok = r.BytesCopy()
	}
	return m, ok && r.Done()
}

// fast turns the fast decoders on (tests compare with them off).
var fast = true

// decodeFast decodes a body of the kinds that have a fast decoder.
func decodeFast(k Kind, body []byte) (Message, bool) {
	if !fast {
		return nil, false
	}
	switch k {
	case KindRunTask:
		return decodeRunTask(body)
	case KindTaskDone:
		return decodeTaskDone(body)
	}
	return nil, false
}

// splitBatch is the fast decoder of a batch's frame: its numbers and its
// envelopes, whose bodies alias b.
func splitBatch(b []byte) (Batch, bool) {
	if !fast {
		return Batch{}, false
	}
	r := fastReader{cborlite.NewReader(b)}
	var batch Batch
	ok := r.Fields(3)
	if ok {
		batch.Session, ok = r.Uint64()
	}
	if ok {
		batch.Seq, ok = r.Uint64()
	}
	if ok {
		var n int
		if n, ok = r.Count(cborlite.MajorArray, maxItems); ok {
			batch.Msgs = make([]Envelope, n)
			for i := 0; ok && i < n; i++ {
				var k uint64
				ok = r.Fields(2)
				if ok {
					k, ok = r.uint(math.MaxUint8)
					batch.Msgs[i].Kind = Kind(k)
				}
				if ok {
					batch.Msgs[i].Body, ok = r.Raw()
				}
			}
		}
	}
	return batch, ok && r.Done()
}

// The encoders below write what the general encoder writes for the same
// structs (core deterministic encoding: shortest heads, nil lists and
// byte strings as null), field for field; a test holds them to it.

func appendBytesOrNull(dst, b []byte) []byte {
	if b == nil {
		return cborlite.AppendNull(dst)
	}
	return cborlite.AppendBytes(dst, b)
}

func appendIDs(dst []byte, ids []objects.ID) []byte {
	if ids == nil {
		return cborlite.AppendNull(dst)
	}
	dst = cborlite.AppendHead(dst, cborlite.MajorArray, uint64(len(ids)))
	for i := range ids {
		dst = cborlite.AppendBytes(dst, ids[i][:])
	}
	return dst
}

func appendRunTask(dst []byte, m *RunTask) []byte {
	dst = cborlite.AppendHead(dst, cborlite.MajorArray, 16)
	dst = cborlite.AppendString(dst, m.Job)
	dst = cborlite.AppendString(dst, m.Root)
	dst = cborlite.AppendString(dst, m.Digest)
	dst = cborlite.AppendUint(dst, uint64(m.What))
	dst = cborlite.AppendBytes(dst, m.Task[:])
	dst = cborlite.AppendUint(dst, uint64(m.Attempt))
	dst = appendBytesOrNull(dst, m.Spec)
	dst = appendIDs(dst, m.Refs)
	dst = cborlite.AppendBytes(dst, m.Actor[:])
	dst = cborlite.AppendUint(dst, m.Incarnation)
	dst = cborlite.AppendUint(dst, uint64(m.Retried))
	dst = appendBytesOrNull(dst, m.Group)
	dst = cborlite.AppendInt(dst, m.Bundle)
	dst = cborlite.AppendString(dst, m.Tenant)
	dst = appendBytesOrNull(dst, m.Grant)
	return cborlite.AppendBool(dst, m.Ready)
}

func appendTaskDone(dst []byte, m *TaskDone) []byte {
	dst = cborlite.AppendHead(dst, cborlite.MajorArray, 9)
	dst = cborlite.AppendString(dst, m.Job)
	dst = cborlite.AppendBytes(dst, m.Task[:])
	dst = cborlite.AppendUint(dst, uint64(m.Attempt))
	dst = cborlite.AppendString(dst, m.Refused)
	dst = appendBytesOrNull(dst, m.Error)
	if m.Results == nil {
		dst = cborlite.AppendNull(dst)
	} else {
		dst = cborlite.AppendHead(dst, cborlite.MajorArray, uint64(len(m.Results)))
		for i := range m.Results {
			r := &m.Results[i]
			dst = cborlite.AppendHead(dst, cborlite.MajorArray, 4)
			dst = appendBytesOrNull(dst, r.Value)
			dst = cborlite.AppendBool(dst, r.Held)
			dst = cborlite.AppendBytes(dst, r.ID[:])
			dst = cborlite.AppendInt(dst, r.Size)
		}
	}
	dst = appendIDs(dst, m.Refs)
	dst = cborlite.AppendInt(dst, m.Ran)
	return appendBytesOrNull(dst, m.Busy)
}

// encodeFast encodes a message of the kinds that have a fast encoder.
func encodeFast(m Message) ([]byte, bool) {
	if !fast {
		return nil, false
	}
	switch m := m.(type) {
	case *RunTask:
		return appendRunTask(make([]byte, 0, 96+len(m.Job)+len(m.Root)+len(m.Digest)+len(m.Tenant)+len(m.Grant)+len(m.Spec)+22*len(m.Refs)), m), true
	case *TaskDone:
		n := 80 + len(m.Job) + len(m.Refused) + len(m.Error) + 22*len(m.Refs)
		for i := range m.Results {
			n += 40 + len(m.Results[i].Value)
		}
		return appendTaskDone(make([]byte, 0, n), m), true
	}
	return nil, false
}

// appendBatch encodes a batch.
func appendBatch(dst []byte, b Batch) []byte {
	dst = cborlite.AppendHead(dst, cborlite.MajorArray, 3)
	dst = cborlite.AppendUint(dst, b.Session)
	dst = cborlite.AppendUint(dst, b.Seq)
	if b.Msgs == nil {
		return cborlite.AppendNull(dst)
	}
	dst = cborlite.AppendHead(dst, cborlite.MajorArray, uint64(len(b.Msgs)))
	for _, e := range b.Msgs {
		dst = cborlite.AppendHead(dst, cborlite.MajorArray, 2)
		dst = cborlite.AppendUint(dst, uint64(e.Kind))
		if len(e.Body) == 0 {
			dst = cborlite.AppendNull(dst)
		} else {
			dst = append(dst, e.Body...)
		}
	}
	return dst
}
