package sandbox

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
