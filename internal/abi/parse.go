package abi

import (
	"encoding/binary"
	"math"
	"unicode/utf8"

	"github.com/wasmfabric/fabric/internal/cborlite"
)

// ParseTaskSpec decodes a TaskSpec in the shape AppendCBOR writes (the
// SDK's), without reflection: the agent decodes one per task it is sent.
// It returns ok=false for anything else (an unknown or repeated key, a
// tag, null, an indefinite length, a half-precision float, an integer
// where a float goes, trailing bytes, ...), and the caller then decodes
// with the general decoder, whose answer is the reference: where this
// function returns ok, it returns what that decoder would (a differential
// fuzz test holds it to that). Byte strings in the result alias b.
func ParseTaskSpec(b []byte) (s TaskSpec, ok bool) {
	p := parser{b: b}
	n, ok := p.head(cborlite.MajorMap)
	if !ok || n > 6 {
		return TaskSpec{}, false
	}
	var seen uint8
	for range n {
		key, ok := p.text()
		if !ok {
			return TaskSpec{}, false
		}
		var bit uint8
		switch key {
		case "fn":
			bit = 1
			s.Func, ok = p.text()
		case "args":
			bit = 2
			s.Args, ok = p.args()
		case "n":
			bit = 4
			s.NumReturns, ok = p.int()
		case "actor":
			bit = 8
			s.Actor, ok = p.bytes()
		case "refs":
			bit = 16
			s.Refs, ok = p.byteStrings()
		case "opts":
			bit = 32
			ok = p.options(&s.Options)
		default:
			return TaskSpec{}, false
		}
		if !ok || seen&bit != 0 {
			return TaskSpec{}, false
		}
		seen |= bit
	}
	if p.off != len(b) {
		return TaskSpec{}, false
	}
	return s, true
}

// parser reads the CBOR items ParseTaskSpec accepts from b.
type parser struct {
	b   []byte
	off int
}

// head reads a definite head of the major type and returns its argument.
func (p *parser) head(major byte) (uint64, bool) {
	h, err := cborlite.ReadHead(p.b[p.off:])
	if err != nil || h.Indefinite || h.Major != major {
		return 0, false
	}
	p.off += h.Len
	return h.Arg, true
}

// payload takes n bytes.
func (p *parser) payload(n uint64) ([]byte, bool) {
	if n > uint64(len(p.b)-p.off) {
		return nil, false
	}
	out := p.b[p.off : p.off+int(n) : p.off+int(n)]
	p.off += int(n)
	return out, true
}

func (p *parser) text() (string, bool) {
	n, ok := p.head(cborlite.MajorText)
	if !ok {
		return "", false
	}
	body, ok := p.payload(n)
	if !ok || !utf8.Valid(body) {
		return "", false
	}
	return string(body), true
}

func (p *parser) bytes() ([]byte, bool) {
	n, ok := p.head(cborlite.MajorBytes)
	if !ok {
		return nil, false
	}
	return p.payload(n)
}

// int reads an integer that fits an int on every platform (32 bits).
func (p *parser) int() (int, bool) {
	v, ok := p.int64()
	if !ok || v < math.MinInt32 || v > math.MaxInt32 {
		return 0, false
	}
	return int(v), true
}

func (p *parser) int64() (int64, bool) {
	h, err := cborlite.ReadHead(p.b[p.off:])
	if err != nil || h.Indefinite || h.Arg > math.MaxInt64 {
		return 0, false
	}
	var v int64
	switch h.Major {
	case cborlite.MajorUint:
		v = int64(h.Arg)
	case cborlite.MajorNegInt:
		v = -1 - int64(h.Arg)
	default:
		return 0, false
	}
	p.off += h.Len
	return v, true
}

// float reads a single- or double-precision float.
func (p *parser) float() (float64, bool) {
	rest := p.b[p.off:]
	switch {
	case len(rest) >= 9 && rest[0] == 0xfb:
		p.off += 9
		return math.Float64frombits(binary.BigEndian.Uint64(rest[1:])), true
	case len(rest) >= 5 && rest[0] == 0xfa:
		p.off += 5
		return float64(math.Float32frombits(binary.BigEndian.Uint32(rest[1:]))), true
	}
	return 0, false
}

func (p *parser) bool() (bool, bool) {
	if p.off < len(p.b) && (p.b[p.off] == 0xf4 || p.b[p.off] == 0xf5) {
		p.off++
		return p.b[p.off-1] == 0xf5, true
	}
	return false, false
}

// count reads an array or map head whose count fits what is left of b
// (each element takes at least one byte).
func (p *parser) count(major byte) (int, bool) {
	n, ok := p.head(major)
	if !ok || n > uint64(len(p.b)-p.off) || n > 1<<20 { // the general decoder's limits are 1<<24 and 1<<20
		return 0, false
	}
	return int(n), true
}

func (p *parser) args() ([]Arg, bool) {
	n, ok := p.count(cborlite.MajorArray)
	if !ok {
		return nil, false
	}
	args := make([]Arg, n)
	for i := range args {
		m, ok := p.count(cborlite.MajorMap)
		if !ok || m > 2 {
			return nil, false
		}
		var seen uint8
		for range m {
			key, ok := p.text()
			if !ok {
				return nil, false
			}
			var bit uint8
			switch key {
			case "v":
				bit = 1
				args[i].Value, ok = p.bytes()
			case "r":
				bit = 2
				args[i].Ref, ok = p.bytes()
			default:
				return nil, false
			}
			if !ok || seen&bit != 0 {
				return nil, false
			}
			seen |= bit
		}
	}
	return args, true
}

func (p *parser) byteStrings() ([][]byte, bool) {
	n, ok := p.count(cborlite.MajorArray)
	if !ok {
		return nil, false
	}
	out := make([][]byte, n)
	for i := range out {
		if out[i], ok = p.bytes(); !ok {
			return nil, false
		}
	}
	return out, true
}

func (p *parser) options(o *Options) bool {
	n, ok := p.count(cborlite.MajorMap)
	if !ok {
		return false
	}
	var seen uint16
	for range n {
		key, ok := p.text()
		if !ok {
			return false
		}
		var bit uint16
		switch key {
		case "cpu":
			bit = 1
			var v float64
			v, ok = p.float()
			o.CPU = &v
		case "gpu":
			bit = 2
			o.GPU, ok = p.float()
		case "mem":
			bit = 4
			o.Memory, ok = p.int64()
		case "res":
			bit = 8
			o.Resources, ok = p.floatMap()
		case "retries":
			bit = 16
			var v int
			v, ok = p.int()
			o.MaxRetries = &v
		case "retry_exc":
			bit = 32
			o.RetryExceptions, ok = p.bool()
		case "timeout_ms":
			bit = 64
			o.TimeoutMs, ok = p.int64()
		case "name":
			bit = 128
			o.Name, ok = p.text()
		case "max_restarts":
			bit = 256
			o.MaxRestarts, ok = p.int()
		case "labels":
			bit = 512
			o.Labels, ok = p.textMap()
		case "pg":
			bit = 1024
			o.Group, ok = p.bytes()
		case "bundle":
			bit = 2048
			var v int
			v, ok = p.int()
			o.Bundle = &v
		default:
			return false
		}
		if !ok || seen&bit != 0 {
			return false
		}
		seen |= bit
	}
	return true
}

func (p *parser) floatMap() (map[string]float64, bool) {
	n, ok := p.count(cborlite.MajorMap)
	if !ok {
		return nil, false
	}
	m := make(map[string]float64, n)
	for range n {
		k, ok := p.text()
		if !ok {
			return nil, false
		}
		v, ok := p.float()
		if _, dup := m[k]; !ok || dup {
			return nil, false
		}
		m[k] = v
	}
	return m, true
}

func (p *parser) textMap() (map[string]string, bool) {
	n, ok := p.count(cborlite.MajorMap)
	if !ok {
		return nil, false
	}
	m := make(map[string]string, n)
	for range n {
		k, ok := p.text()
		if !ok {
			return nil, false
		}
		v, ok := p.text()
		if _, dup := m[k]; !ok || dup {
			return nil, false
		}
		m[k] = v
	}
	return m, true
}
