package sandbox

import "sort"

// This file rewrites validated modules before they are compiled.

// capTables returns the module with every table that declares no maximum
// given a maximum equal to its minimum, so that table.grow cannot take host
// memory (tables are not counted by wazero's memory limit). Modules whose
// tables all have a maximum are returned as they are. wasm must already
// have passed Validate.
func capTables(wasm []byte) []byte {
	pos := 8
	for pos < len(wasm) {
		id := wasm[pos]
		size, n := uleb(wasm[pos+1:])
		if n == 0 {
			return wasm
		}
		start := pos + 1 + n
		end := start + int(size)
		if end > len(wasm) {
			return wasm
		}
		if id == 4 {
			body, changed := capTableSection(wasm[start:end])
			if !changed {
				return wasm
			}
			out := make([]byte, 0, len(wasm)+16)
			out = append(out, wasm[:pos]...)
			out = append(out, 4)
			out = appendULEB(out, uint64(len(body)))
			out = append(out, body...)
			return append(out, wasm[end:]...)
		}
		pos = end
	}
	return wasm
}

func capTableSection(sec []byte) ([]byte, bool) {
	count, n := uleb(sec)
	if n == 0 {
		return nil, false
	}
	out := appendULEB(nil, count)
	p := n
	changed := false
	for i := uint64(0); i < count; i++ {
		if p+2 > len(sec) {
			return nil, false
		}
		rt, flags := sec[p], sec[p+1]
		p += 2
		min, n := uleb(sec[p:])
		if n == 0 {
			return nil, false
		}
		p += n
		out = append(out, rt)
		if flags == 0 {
			changed = true
			out = append(out, 1)
			out = appendULEB(out, min)
			out = appendULEB(out, min)
			continue
		}
		max, n := uleb(sec[p:])
		if n == 0 {
			return nil, false
		}
		p += n
		out = append(out, flags)
		out = appendULEB(out, min)
		out = appendULEB(out, max)
	}
	return append(out, sec[p:]...), changed
}

// uleb decodes an unsigned LEB128 of at most 32 bits; n is 0 when malformed.
func uleb(b []byte) (v uint64, n int) {
	var shift uint
	for i := 0; i < len(b) && i < 5; i++ {
		v |= uint64(b[i]&0x7f) << shift
		if b[i]&0x80 == 0 {
			return v, i + 1
		}
		shift += 7
	}
	return 0, 0
}

func appendULEB(b []byte, v uint64) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v != 0 {
			b = append(b, c|0x80)
			continue
		}
		return append(b, c)
	}
}

// dataSection finds a module's data section: the offset of its header and
// the bounds of its contents. ok is false when there is none, when the
// module has a data count section (instructions may then name segments by
// index, so segments must stay as they are), or when a section is malformed.
func dataSection(wasm []byte) (header, start, end int, ok bool) {
	pos := 8
	for pos < len(wasm) {
		id := wasm[pos]
		size, n := uleb(wasm[pos+1:])
		if n == 0 {
			return 0, 0, 0, false
		}
		s := pos + 1 + n
		e := s + int(size)
		if e > len(wasm) {
			return 0, 0, 0, false
		}
		switch id {
		case 12:
			return 0, 0, 0, false
		case 11:
			header, start, end, ok = pos, s, e, true
		}
		pos = e
	}
	return header, start, end, ok
}

// mergeGap is the largest run of zeros between two data segments that
// mergeData fills in to join them.
const mergeGap = 4096

// dataSegment is an active data segment of memory 0 at a constant offset.
type dataSegment struct {
	off  uint32
	data []byte
}

// mergeData joins a module's active data segments into few large ones.
// Go's linker emits tens of thousands of small segments (51,901 for a
// typical guest); wazero evaluates an offset expression and copies once per
// segment, which made instantiating a Go guest take 6-8 ms. Segments closer
// than mergeGap are joined, the gaps filled with the zeros memory holds
// anyway. The module is returned unchanged unless every segment is active,
// for memory 0, at an i32.const offset, and no two overlap, and the module
// has no data count section (whose presence allows instructions that name
// segments by index).
func mergeData(wasm []byte) []byte {
	headerStart, dataStart, dataEnd, ok := dataSection(wasm)
	if !ok {
		return wasm
	}
	segs, ok := parseActiveSegments(wasm[dataStart:dataEnd])
	if !ok || len(segs) < 2 {
		return wasm
	}
	sort.Slice(segs, func(i, j int) bool { return segs[i].off < segs[j].off })
	var merged []dataSegment
	for _, s := range segs {
		if len(merged) > 0 {
			last := &merged[len(merged)-1]
			lastEnd := uint64(last.off) + uint64(len(last.data))
			if uint64(s.off) < lastEnd {
				return wasm // overlapping segments: order matters, leave it alone
			}
			if gap := uint64(s.off) - lastEnd; gap <= mergeGap {
				last.data = append(last.data, make([]byte, gap)...)
				last.data = append(last.data, s.data...)
				continue
			}
		}
		merged = append(merged, dataSegment{off: s.off, data: append([]byte(nil), s.data...)})
	}
	body := appendULEB(nil, uint64(len(merged)))
	for _, s := range merged {
		body = append(body, 0x00, 0x41) // active, memory 0; i32.const
		body = appendSLEB(body, int64(int32(s.off)))
		body = append(body, 0x0b)
		body = appendULEB(body, uint64(len(s.data)))
		body = append(body, s.data...)
	}
	out := make([]byte, 0, len(wasm)-(dataEnd-headerStart)+len(body)+8)
	out = append(out, wasm[:headerStart]...)
	out = append(out, 11)
	out = appendULEB(out, uint64(len(body)))
	out = append(out, body...)
	return append(out, wasm[dataEnd:]...)
}

// parseActiveSegments reads a data section whose segments are all active
// for memory 0 at an i32.const offset.
func parseActiveSegments(sec []byte) ([]dataSegment, bool) {
	count, n := uleb(sec)
	if n == 0 || count > uint64(len(sec)) {
		return nil, false
	}
	p := n
	segs := make([]dataSegment, 0, count)
	for range count {
		if p+2 > len(sec) || sec[p] != 0x00 || sec[p+1] != 0x41 {
			return nil, false
		}
		p += 2
		off, n := sleb32(sec[p:])
		if n == 0 {
			return nil, false
		}
		p += n
		if p >= len(sec) || sec[p] != 0x0b {
			return nil, false
		}
		p++
		size, n := uleb(sec[p:])
		if n == 0 || uint64(len(sec)-p-n) < size {
			return nil, false
		}
		p += n
		segs = append(segs, dataSegment{off: uint32(off), data: sec[p : p+int(size)]})
		p += int(size)
	}
	return segs, p == len(sec)
}

// sleb32 decodes a signed LEB128 of at most 32 bits; n is 0 when malformed.
func sleb32(b []byte) (v int32, n int) {
	var r int64
	var shift uint
	for i := 0; i < len(b) && i < 5; i++ {
		r |= int64(b[i]&0x7f) << shift
		shift += 7
		if b[i]&0x80 == 0 {
			if shift < 64 && b[i]&0x40 != 0 {
				r |= -1 << shift
			}
			return int32(r), i + 1
		}
	}
	return 0, 0
}

func appendSLEB(b []byte, v int64) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

// dataImage returns the module without its data section and the initial
// memory image the section described (the bytes from 0 to the end of the
// last segment), under the same conditions as mergeData, and only when the
// image fits in the memory's minimum size. Instances then start from a
// copy-on-write mapping of the image instead of copying every segment.
func dataImage(wasm []byte, minPages uint32) (stripped, image []byte, ok bool) {
	headerStart, dataStart, dataEnd, ok := dataSection(wasm)
	if !ok {
		return nil, nil, false
	}
	segs, ok := parseActiveSegments(wasm[dataStart:dataEnd])
	if !ok {
		return nil, nil, false
	}
	var size uint64
	for _, s := range segs {
		size = max(size, uint64(s.off)+uint64(len(s.data)))
	}
	if size == 0 || size > uint64(minPages)*WasmPageSize || size > maxMappedImage {
		return nil, nil, false
	}
	image = make([]byte, size)
	for _, s := range segs { // in order: later segments win, as in instantiation
		copy(image[s.off:], s.data)
	}
	stripped = make([]byte, 0, len(wasm)-(dataEnd-headerStart))
	stripped = append(stripped, wasm[:headerStart]...)
	stripped = append(stripped, wasm[dataEnd:]...)
	return stripped, image, true
}
