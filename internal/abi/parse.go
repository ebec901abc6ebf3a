package abi

import (
	"math"

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
	p := parser{cborlite.NewReader(b)}
	n, ok := p.Head(cborlite.MajorMap)
	if !ok || n > 6 {
		return TaskSpec{}, false
	}
	var seen uint8
	for range n {
		key, ok := p.Text()
		if !ok {
			return TaskSpec{}, false
		}
		var bit uint8
		switch key {
		case "fn":
			bit = 1
			s.Func, ok = p.Text()
		case "args":
			bit = 2
			s.Args, ok = p.args()
		case "n":
			bit = 4
			s.NumReturns, ok = p.int()
		case "actor":
			bit = 8
			s.Actor, ok = p.Bytes()
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
	if !p.Done() {
		return TaskSpec{}, false
	}
	return s, true
}

// parser reads the items of a task spec.
type parser struct{ *cborlite.Reader }

// int reads an integer that fits an int on every platform (32 bits).
func (p parser) int() (int, bool) {
	v, ok := p.Int64()
	if !ok || v < math.MinInt32 || v > math.MaxInt32 {
		return 0, false
	}
	return int(v), true
}

// maxItems is the most elements of a list or map ParseTaskSpec reads; the
// general decoder's limits are higher (1<<24 and 1<<20).
const maxItems = 1 << 20

func (p parser) args() ([]Arg, bool) {
	n, ok := p.Count(cborlite.MajorArray, maxItems)
	if !ok {
		return nil, false
	}
	args := make([]Arg, n)
	for i := range args {
		m, ok := p.Count(cborlite.MajorMap, maxItems)
		if !ok || m > 2 {
			return nil, false
		}
		var seen uint8
		for range m {
			key, ok := p.Text()
			if !ok {
				return nil, false
			}
			var bit uint8
			switch key {
			case "v":
				bit = 1
				args[i].Value, ok = p.Bytes()
			case "r":
				bit = 2
				args[i].Ref, ok = p.Bytes()
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

func (p parser) byteStrings() ([][]byte, bool) {
	n, ok := p.Count(cborlite.MajorArray, maxItems)
	if !ok {
		return nil, false
	}
	out := make([][]byte, n)
	for i := range out {
		if out[i], ok = p.Bytes(); !ok {
			return nil, false
		}
	}
	return out, true
}

func (p parser) options(o *Options) bool {
	n, ok := p.Count(cborlite.MajorMap, maxItems)
	if !ok {
		return false
	}
	var seen uint32
	for range n {
		key, ok := p.Text()
		if !ok {
			return false
		}
		var bit uint32
		switch key {
		case "cpu":
			bit = 1
			var v float64
			v, ok = p.Float64()
			o.CPU = &v
		case "gpu":
			bit = 2
			o.GPU, ok = p.Float64()
		case "mem":
			bit = 4
			o.Memory, ok = p.Int64()
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
			o.RetryExceptions, ok = p.Bool()
		case "timeout_ms":
			bit = 64
			o.TimeoutMs, ok = p.Int64()
		case "name":
			bit = 128
			o.Name, ok = p.Text()
		case "max_restarts":
			bit = 256
			o.MaxRestarts, ok = p.int()
		case "labels":
			bit = 512
			o.Labels, ok = p.textMap()
		case "pg":
			bit = 1024
			o.Group, ok = p.Bytes()
		case "bundle":
			bit = 2048
			var v int
			v, ok = p.int()
			o.Bundle = &v
		case "get_if_exists":
			bit = 4096
			o.GetIfExists, ok = p.Bool()
		case "max_task_retries":
			bit = 8192
			o.MaxTaskRetries, ok = p.int()
		case "retry_on":
			bit = 16384
			o.RetryOn, ok = p.texts()
		case "strategy":
			bit = 1 << 15
			o.Strategy, ok = p.Text()
		case "node":
			bit = 1 << 16
			o.Node, ok = p.Text()
		case "soft":
			bit = 1 << 17
			o.Soft, ok = p.Bool()
		case "selector":
			bit = 1 << 18
			o.Selector, ok = p.selector()
		case "max_concurrency":
			bit = 1 << 19
			o.MaxConcurrency, ok = p.int()
		case "concurrency_groups":
			bit = 1 << 20
			o.ConcurrencyGroups, ok = p.intMap()
		case "concurrency_group":
			bit = 1 << 21
			o.ConcurrencyGroup, ok = p.Text()
		case "generator":
			bit = 1 << 22
			o.Generator, ok = p.Bool()
		case "lifetime":
			bit = 1 << 23
			o.Lifetime, ok = p.Text()
		case "namespace":
			bit = 1 << 24
			o.Namespace, ok = p.Text()
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

func (p parser) selector() ([]LabelTerm, bool) {
	n, ok := p.Count(cborlite.MajorArray, maxItems)
	if !ok {
		return nil, false
	}
	out := make([]LabelTerm, n)
	for i := range out {
		m, ok := p.Count(cborlite.MajorMap, maxItems)
		if !ok || m > 3 {
			return nil, false
		}
		var seen uint8
		for range m {
			key, ok := p.Text()
			if !ok {
				return nil, false
			}
			var bit uint8
			switch key {
			case "key":
				bit = 1
				out[i].Key, ok = p.Text()
			case "op":
				bit = 2
				out[i].Op, ok = p.Text()
			case "values":
				bit = 4
				out[i].Values, ok = p.texts()
			default:
				return nil, false
			}
			if !ok || seen&bit != 0 {
				return nil, false
			}
			seen |= bit
		}
	}
	return out, true
}

func (p parser) texts() ([]string, bool) {
	n, ok := p.Count(cborlite.MajorArray, maxItems)
	if !ok {
		return nil, false
	}
	out := make([]string, n)
	for i := range out {
		if out[i], ok = p.Text(); !ok {
			return nil, false
		}
	}
	return out, true
}

func (p parser) intMap() (map[string]int, bool) { return textKeyed(p, p.int) }

func (p parser) floatMap() (map[string]float64, bool) { return textKeyed(p, p.Float64) }

func (p parser) textMap() (map[string]string, bool) { return textKeyed(p, p.Text) }

// textKeyed reads a map of text keys, each once, to values value reads.
func textKeyed[V any](p parser, value func() (V, bool)) (map[string]V, bool) {
	n, ok := p.Count(cborlite.MajorMap, maxItems)
	if !ok {
		return nil, false
	}
	m := make(map[string]V, n)
	for range n {
		k, ok := p.Text()
		if !ok {
			return nil, false
		}
		v, ok := value()
		if _, dup := m[k]; !ok || dup {
			return nil, false
		}
		m[k] = v
	}
	return m, true
}
