package sdk

import (
	"encoding/json"
	"fmt"

	"github.com/wasmfabric/fabric/internal/abi"
)

// Request is an HTTP request routed to a deployment's replica: Path is
// the whole request path (Route, the prefix it matched, included), Query
// its raw query, Header its canonical headers.
type Request struct {
	Method string              `cbor:"1,keyasint"`
	Path   string              `cbor:"2,keyasint"`
	Query  string              `cbor:"3,keyasint,omitempty"`
	Header map[string][]string `cbor:"4,keyasint,omitempty"`
	Body   []byte              `cbor:"5,keyasint,omitempty"`
	Route  string              `cbor:"6,keyasint,omitempty"`
}

// JSON decodes the request's body, JSON, into v.
func (r Request) JSON(v any) error {
	if err := json.Unmarshal(r.Body, v); err != nil {
		return fmt.Errorf("%w: the request's body is not the JSON expected: %v", ErrBadArguments, err)
	}
	return nil
}

// Response is a replica's answer to a Request (Status 0 is 200).
type Response struct {
	Status int                 `cbor:"1,keyasint,omitempty"`
	Header map[string][]string `cbor:"2,keyasint,omitempty"`
	Body   []byte              `cbor:"3,keyasint,omitempty"`
}

// JSONResponse answers v as JSON with status 200.
func JSONResponse(v any) (Response, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return Response{}, err
	}
	return Response{Header: map[string][]string{"Content-Type": {"application/json"}}, Body: b}, nil
}

// TextResponse answers text with a status (0: 200).
func TextResponse(status int, text string) Response {
	return Response{Status: status, Header: map[string][]string{"Content-Type": {"text/plain; charset=utf-8"}}, Body: []byte(text)}
}

// Deployment registers a class whose actors serve HTTP requests, Ray
// Serve's @serve.deployment: each replica of the deployment is an actor
// made with ctor, and each request routed to it is a call of handle
// (the method "<name>.__call__"). `fabric serve deploy` names the module
// and the class and gives the route, replicas and limits.
//
//	type Model struct{ factor int }
//	var _ = sdk.Deployment("Model", func() (*Model, error) { return &Model{2}, nil },
//		func(m *Model, r sdk.Request) (sdk.Response, error) {
//			var in struct{ Input int }
//			if err := r.JSON(&in); err != nil {
//				return sdk.TextResponse(400, err.Error()), nil
//			}
//			return sdk.JSONResponse(map[string]int{"prediction": in.Input * m.factor})
//		})
func Deployment[S any](name string, ctor func() (*S, error), handle func(*S, Request) (Response, error), opts ...Option) *Class0[S] {
	c := Actor(name, ctor, opts...)
	NewMethod1(c, abi.ServeMethod, handle)
	return c
}

// DeploymentHandle calls the replicas of another deployment of the same
// tenant, Ray Serve's DeploymentHandle: a deployment composes others by
// holding handles to them and calling their methods.
//
//	var pre = sdk.GetDeploymentHandle(PreprocessorClass, "preprocessor")
//	...
//	h, err := pre.Replica()             // one replica, chosen per call
//	features := Preprocess.Remote(h, x) // a Ref: not copied here
//	label := Classify.RemoteRefs(cls, features)
//
// A result passed on as a reference goes from the replica that made it
// to the one that takes it, never through the caller.
type DeploymentHandle[S any] struct {
	class Class[S]
	name  string
}

// GetDeploymentHandle returns a handle to the tenant's deployment name,
// whose replicas are actors of class c.
func GetDeploymentHandle[S any](c Class[S], name string) DeploymentHandle[S] {
	return DeploymentHandle[S]{class: c, name: name}
}

// Replica returns a handle to one ready replica of the deployment, which
// the host chooses by the power of two choices over the requests the
// replicas hold (a deployment scaled to zero starts one). Ask for one
// per call, or per few: a replica may be scaled away, and a handle to it
// then fails its calls with ErrActorDied.
func (d DeploymentHandle[S]) Replica() (Handle[S], error) {
	return GetActor(d.class, d.name, InNamespace(abi.ServeNamespace))
}

// ResponseWriter writes a streamed response: set Header and call
// WriteHeader before the first Write; each Write goes to the client at
// once (a chunk of the body), as a flushed http.ResponseWriter's does.
type ResponseWriter struct {
	header  map[string][]string
	status  int
	started bool
	yield   func(Response) error
}

// Header is the response's header, sent with the first Write.
func (w *ResponseWriter) Header() map[string][]string { return w.header }

// WriteHeader sets the response's status (200 unless set), sent with the
// first Write.
func (w *ResponseWriter) WriteHeader(status int) {
	if !w.started {
		w.status = status
	}
}

// Write sends p to the client as the next chunk of the body.
func (w *ResponseWriter) Write(p []byte) (int, error) {
	item := Response{Body: p}
	if !w.started {
		item.Status, item.Header = w.status, w.header
	}
	if err := w.yield(item); err != nil {
		return 0, err
	}
	w.started = true
	return len(p), nil
}

// StreamingDeployment registers a deployment whose responses stream:
// handle writes the response through a ResponseWriter, and each Write
// reaches the client as it is made (Ray Serve's StreamingResponse).
//
//	var _ = sdk.StreamingDeployment("Ticker", newTicker, func(t *Ticker, r sdk.Request, w *sdk.ResponseWriter) error {
//		w.Header()["Content-Type"] = []string{"text/event-stream"}
//		for i := range 10 {
//			if _, err := fmt.Fprintf(w, "data: %d\n\n", i); err != nil {
//				return err
//			}
//		}
//		return nil
//	})
//
// An error before the first Write answers 500; after it, the response is
// cut short.
func StreamingDeployment[S any](name string, ctor func() (*S, error), handle func(*S, Request, *ResponseWriter) error, opts ...Option) *Class0[S] {
	c := Actor(name, ctor, opts...)
	NewMethod1(c, abi.ServeMethod, func(*S, Request) (Response, error) { return Response{Status: abi.ServeStreamStatus}, nil })
	NewGenMethod1(c, abi.ServeStreamMethod, func(s *S, r Request, yield func(Response) error) error {
		w := &ResponseWriter{header: map[string][]string{}, yield: yield}
		if err := handle(s, r, w); err != nil {
			return err
		}
		if !w.started {
			_, err := w.Write(nil)
			return err
		}
		return nil
	})
	return c
}
