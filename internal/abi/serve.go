package abi

import (
	"math"
	"slices"

	"github.com/wasmfabric/fabric/internal/cborlite"
)

// Serve: an HTTP request routed to a deployment is a call of its replica
// actor's method ServeMethod with one argument, a ServeRequest, which
// returns a ServeResponse. Both are CBOR maps with small-integer keys,
// the guest's SDK and the host decoding the same bytes.

// ServeMethod is the method a deployment's class answers requests with:
// "<Class>.__call__".
const ServeMethod = "__call__"

// A deployment that streams its responses answers ServeMethod with a
// ServeResponse whose Status is ServeStreamStatus (and nothing else),
// and has a generator method ServeStreamMethod taking the same
// ServeRequest: the host then calls that one (for this request and the
// ones after it). Each item the generator yields is a ServeResponse: the
// first one's status and headers are the response's, and every item's
// body goes to the client as it comes.
const (
	ServeStreamMethod = "__stream__"
	ServeStreamStatus = -2
)

// ServeNamespace is the actor namespace of deployments: a lookup of the
// name of one of its tenant's deployments in it (fabric_actor_lookup)
// answers a handle to one of the deployment's replicas, chosen by the
// host (the power of two choices over the requests they hold), whose
// methods the caller then calls as any actor's. A replica is in this
// namespace: its tenant's other jobs may call it.
const ServeNamespace = "fabric.serve"

// ServeRequest is an HTTP request as a replica receives it: the path is
// the whole request path (the route's prefix included), the query its
// raw form, the headers canonical, the body whole.
type ServeRequest struct {
	Method string              `cbor:"1,keyasint"`
	Path   string              `cbor:"2,keyasint"`
	Query  string              `cbor:"3,keyasint,omitempty"`
	Header map[string][]string `cbor:"4,keyasint,omitempty"`
	Body   []byte              `cbor:"5,keyasint,omitempty"`
	// Route is the deployment's route prefix the request matched.
	Route string `cbor:"6,keyasint,omitempty"`
}

// ServeResponse is a replica's answer: a status (0: 200), headers and a
// body.
type ServeResponse struct {
	Status int                 `cbor:"1,keyasint,omitempty"`
	Header map[string][]string `cbor:"2,keyasint,omitempty"`
	Body   []byte              `cbor:"3,keyasint,omitempty"`
}

// AppendCBOR appends the request's encoding (the map with its fields'
// integer keys, empty ones left out), which ParseServeRequest and any
// CBOR decoder read.
func (r ServeRequest) AppendCBOR(dst []byte) []byte {
	dst = slices.Grow(dst, 48+len(r.Method)+len(r.Path)+len(r.Query)+len(r.Route)+headerSize(r.Header)+len(r.Body))
	n := uint64(2)
	for _, set := range []bool{r.Query != "", len(r.Header) > 0, len(r.Body) > 0, r.Route != ""} {
		if set {
			n++
		}
	}
	dst = cborlite.AppendHead(dst, cborlite.MajorMap, n)
	dst = cborlite.AppendString(cborlite.AppendUint(dst, 1), r.Method)
	dst = cborlite.AppendString(cborlite.AppendUint(dst, 2), r.Path)
	if r.Query != "" {
		dst = cborlite.AppendString(cborlite.AppendUint(dst, 3), r.Query)
	}
	if len(r.Header) > 0 {
		dst = appendHeader(cborlite.AppendUint(dst, 4), r.Header)
	}
	if len(r.Body) > 0 {
		dst = cborlite.AppendBytes(cborlite.AppendUint(dst, 5), r.Body)
	}
	if r.Route != "" {
		dst = cborlite.AppendString(cborlite.AppendUint(dst, 6), r.Route)
	}
	return dst
}

// AppendCBOR appends the response's encoding, which ParseServeResponse
// and any CBOR decoder read.
func (r ServeResponse) AppendCBOR(dst []byte) []byte {
	dst = slices.Grow(dst, 16+headerSize(r.Header)+len(r.Body))
	n := uint64(0)
	for _, set := range []bool{r.Status != 0, len(r.Header) > 0, len(r.Body) > 0} {
		if set {
			n++
		}
	}
	dst = cborlite.AppendHead(dst, cborlite.MajorMap, n)
	if r.Status != 0 {
		dst = cborlite.AppendInt(cborlite.AppendUint(dst, 1), int64(r.Status))
	}
	if len(r.Header) > 0 {
		dst = appendHeader(cborlite.AppendUint(dst, 2), r.Header)
	}
	if len(r.Body) > 0 {
		dst = cborlite.AppendBytes(cborlite.AppendUint(dst, 3), r.Body)
	}
	return dst
}

// headerSize bounds the bytes of h's encoding.
func headerSize(h map[string][]string) int {
	n := 9
	for k, vs := range h {
		n += 18 + len(k)
		for _, v := range vs {
			n += 9 + len(v)
		}
	}
	return n
}

func appendHeader(dst []byte, h map[string][]string) []byte {
	dst = cborlite.AppendHead(dst, cborlite.MajorMap, uint64(len(h)))
	for k, vs := range h {
		dst = cborlite.AppendHead(cborlite.AppendString(dst, k), cborlite.MajorArray, uint64(len(vs)))
		for _, v := range vs {
			dst = cborlite.AppendString(dst, v)
		}
	}
	return dst
}

// maxServeFields bounds the headers and values the fast parsers read (a
// request past it goes to the general decoder).
const maxServeFields = 1 << 12

// ParseServeRequest reads a request as AppendCBOR writes it (or as a
// general encoder does, in any order of keys). ok is false for anything
// else: a duplicate or unknown key, another type, bytes left over; the
// caller then decodes with a general decoder, for its precise error.
// Its strings and body alias b, which must not change while they are
// used: a guest pays dearly for each allocation, so a caller that
// needs its own copy clones b once, before.
func ParseServeRequest(b []byte) (r ServeRequest, ok bool) {
	p := cborlite.NewReader(b)
	n, ok := p.Count(cborlite.MajorMap, 6)
	if !ok {
		return ServeRequest{}, false
	}
	var seen uint8
	for range n {
		key, ok := p.Uint64()
		if !ok || key < 1 || key > 6 || seen&(1<<key) != 0 {
			return ServeRequest{}, false
		}
		seen |= 1 << key
		switch key {
		case 1:
			r.Method, ok = p.TextAlias()
		case 2:
			r.Path, ok = p.TextAlias()
		case 3:
			r.Query, ok = p.TextAlias()
		case 4:
			r.Header, ok = parseHeader(p)
		case 5:
			r.Body, ok = p.Bytes()
		case 6:
			r.Route, ok = p.TextAlias()
		}
		if !ok {
			return ServeRequest{}, false
		}
	}
	return r, p.Done()
}

// ParseServeResponse reads a response as ParseServeRequest reads a
// request; its strings and body alias b likewise.
func ParseServeResponse(b []byte) (r ServeResponse, ok bool) {
	p := cborlite.NewReader(b)
	n, ok := p.Count(cborlite.MajorMap, 3)
	if !ok {
		return ServeResponse{}, false
	}
	var seen uint8
	for range n {
		key, ok := p.Uint64()
		if !ok || key < 1 || key > 3 || seen&(1<<key) != 0 {
			return ServeResponse{}, false
		}
		seen |= 1 << key
		switch key {
		case 1:
			var s int64
			s, ok = p.Int64()
			ok = ok && s >= math.MinInt32 && s <= math.MaxInt32
			r.Status = int(s)
		case 2:
			r.Header, ok = parseHeader(p)
		case 3:
			r.Body, ok = p.Bytes()
		}
		if !ok {
			return ServeResponse{}, false
		}
	}
	return r, p.Done()
}

// parseHeader reads a header map whose strings alias the input, its
// values subslices of one slice: three allocations (the map's two and
// the values') whatever the header holds.
func parseHeader(p *cborlite.Reader) (map[string][]string, bool) {
	if p.Null() {
		return nil, true
	}
	n, ok := p.Count(cborlite.MajorMap, maxServeFields)
	if !ok {
		return nil, false
	}
	// The strings in order: per key the key, then its values; counts
	// holds each key's count of values.
	var smallStrs [32]string
	var smallCounts [16]int
	strs, counts := smallStrs[:0], smallCounts[:0]
	for range n {
		k, ok := p.TextAlias()
		if !ok {
			return nil, false
		}
		m, ok := p.Count(cborlite.MajorArray, maxServeFields)
		if !ok {
			return nil, false
		}
		strs = append(strs, k)
		counts = append(counts, m)
		for range m {
			v, ok := p.TextAlias()
			if !ok {
				return nil, false
			}
			strs = append(strs, v)
		}
	}
	h := make(map[string][]string, n)
	vs := make([]string, 0, len(strs)-n)
	i := 0
	for _, m := range counts {
		key := strs[i]
		if _, dup := h[key]; dup {
			return nil, false
		}
		from := len(vs)
		vs = append(vs, strs[i+1:i+1+m]...)
		h[key] = vs[from:len(vs):len(vs)]
		i += 1 + m
	}
	return h, true
}
