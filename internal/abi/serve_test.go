package abi_test

import (
	"reflect"
	"testing"

	"github.com/wasmfabric/fabric/internal/abi"
	"github.com/wasmfabric/fabric/internal/wire"
)

var serveRequests = []abi.ServeRequest{
	{Method: "GET", Path: "/"},
	{Method: "POST", Path: "/model/x", Query: "a=1&b=2", Route: "/model", Body: []byte(`{"input": 42}`),
		Header: map[string][]string{"Content-Type": {"application/json"}, "X-Many": {"1", "2", ""}}},
	{Method: "PUT", Path: "/é", Header: map[string][]string{"Empty": {}}},
}

var serveResponses = []abi.ServeResponse{
	{},
	{Status: 404, Body: []byte("no")},
	{Status: -1},
	{Header: map[string][]string{"Content-Type": {"text/plain"}, "Set-Cookie": {"a=1", "b=2"}}, Body: []byte{0, 1, 2}},
}

// TestServeCodec: the fast encoders' bytes decode, by the fast parsers
// and by the general decoder, to what was encoded; and what the general
// encoder writes, the fast parsers read the same.
func TestServeCodec(t *testing.T) {
	for _, r := range serveRequests {
		for _, b := range [][]byte{r.AppendCBOR(nil), must(wire.Marshal(r))} {
			got, ok := abi.ParseServeRequest(b)
			var general abi.ServeRequest
			if err := wire.Unmarshal(b, &general); err != nil || !ok || !sameRequest(got, r) || !sameRequest(general, r) {
				t.Errorf("%+v: %x: parsed %+v (%v), general %+v (%v)", r, b, got, ok, general, err)
			}
		}
	}
	for _, r := range serveResponses {
		for _, b := range [][]byte{r.AppendCBOR(nil), must(wire.Marshal(r))} {
			got, ok := abi.ParseServeResponse(b)
			var general abi.ServeResponse
			if err := wire.Unmarshal(b, &general); err != nil || !ok || !sameResponse(got, r) || !sameResponse(general, r) {
				t.Errorf("%+v: %x: parsed %+v (%v), general %+v (%v)", r, b, got, ok, general, err)
			}
		}
	}
	for _, bad := range [][]byte{nil, {0xa0, 0x00}, {0xa1, 0x07, 0x60}, {0xa2, 0x01, 0x60, 0x01, 0x60}, {0xa1, 0x05, 0x60}, {0xbf, 0xff}} {
		if r, ok := abi.ParseServeRequest(bad); ok {
			t.Errorf("%x parsed as %+v", bad, r)
		}
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

// sameRequest compares by content: nil and empty are the same.
func sameRequest(a, b abi.ServeRequest) bool {
	return a.Method == b.Method && a.Path == b.Path && a.Query == b.Query && a.Route == b.Route &&
		string(a.Body) == string(b.Body) && sameHeader(a.Header, b.Header)
}

func sameResponse(a, b abi.ServeResponse) bool {
	return a.Status == b.Status && string(a.Body) == string(b.Body) && sameHeader(a.Header, b.Header)
}

func sameHeader(a, b map[string][]string) bool {
	if len(a) == 0 && len(b) == 0 {
		return true
	}
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		w, ok := b[k]
		if !ok || len(v) != len(w) || len(v) > 0 && !reflect.DeepEqual(v, w) {
			return false
		}
	}
	return true
}

// FuzzParseServeRequest holds the fast parser to the general decoder:
// whatever it accepts, the general decoder accepts, with the same result.
func FuzzParseServeRequest(f *testing.F) {
	for _, r := range serveRequests {
		f.Add(r.AppendCBOR(nil))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, ok := abi.ParseServeRequest(b)
		if !ok {
			return
		}
		var want abi.ServeRequest
		if err := wire.Unmarshal(b, &want); err != nil {
			t.Fatalf("parsed %x, which the general decoder rejects: %v", b, err)
		}
		if !sameRequest(got, want) {
			t.Fatalf("%x: parsed %+v, general decoder %+v", b, got, want)
		}
	})
}

// FuzzParseServeResponse: as FuzzParseServeRequest, for responses.
func FuzzParseServeResponse(f *testing.F) {
	for _, r := range serveResponses {
		f.Add(r.AppendCBOR(nil))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, ok := abi.ParseServeResponse(b)
		if !ok {
			return
		}
		var want abi.ServeResponse
		if err := wire.Unmarshal(b, &want); err != nil {
			t.Fatalf("parsed %x, which the general decoder rejects: %v", b, err)
		}
		if !sameResponse(got, want) {
			t.Fatalf("%x: parsed %+v, general decoder %+v", b, got, want)
		}
	})
}
