package abi

// Serve: an HTTP request routed to a deployment is a call of its replica
// actor's method ServeMethod with one argument, a ServeRequest, which
// returns a ServeResponse. Both are CBOR maps with small-integer keys,
// the guest's SDK and the host decoding the same bytes.

// ServeMethod is the method a deployment's class answers requests with:
// "<Class>.__call__".
const ServeMethod = "__call__"

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
