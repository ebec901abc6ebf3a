// Command serve is a guest of Serve deployments for the tests and
// benchmarks: Echo answers a request with what it received, BodyEcho with
// its body (the benchmark's deployment), Model is the
// ModelDeployment of Ray Serve's example (a prediction of twice the
// input), Slow sleeps before answering.
package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/wasmfabric/fabric/sdk"
)

// Echo answers with the request's method, path, query and body, and
// which replica answered (its start time) and how many it served.
type Echo struct {
	replica int64
	served  int
}

var _ = sdk.Deployment("Echo", func() (*Echo, error) { return &Echo{replica: time.Now().UnixNano()}, nil }, func(e *Echo, r sdk.Request) (sdk.Response, error) {
	e.served++
	resp := sdk.TextResponse(200, fmt.Sprintf("%s %s?%s route=%s replica=%d served=%d body=%s", r.Method, r.Path, r.Query, r.Route, e.replica, e.served, r.Body))
	resp.Header["X-Echo-Header"] = r.Header["X-Test"]
	return resp, nil
})

// BodyEcho answers with the request's body, as the benchmark's plain
// net/http handler does.
type BodyEcho struct{}

var _ = sdk.Deployment("BodyEcho", func() (*BodyEcho, error) { return &BodyEcho{}, nil }, func(_ *BodyEcho, r sdk.Request) (sdk.Response, error) {
	return sdk.Response{Header: map[string][]string{"Content-Type": {"text/plain; charset=utf-8"}}, Body: r.Body}, nil
})

// Model predicts twice its input: POST {"input": 42} -> {"prediction": 84}.
type Model struct{ factor int }

var _ = sdk.Deployment("Model", func() (*Model, error) { return &Model{factor: 2}, nil }, func(m *Model, r sdk.Request) (sdk.Response, error) {
	var in struct {
		Input *int `json:"input"`
	}
	if err := r.JSON(&in); err != nil || in.Input == nil {
		return sdk.TextResponse(400, `want a JSON body {"input": N}`), nil
	}
	fmt.Printf("model: %d -> %d\n", *in.Input, *in.Input*m.factor)
	return sdk.JSONResponse(map[string]int{"prediction": *in.Input * m.factor})
})

// Slow sleeps for ?ms= milliseconds, then answers; ?status= sets the
// status, ?fail=1 returns an error instead.
type Slow struct{}

var _ = sdk.Deployment("Slow", func() (*Slow, error) { return &Slow{}, nil }, func(_ *Slow, r sdk.Request) (sdk.Response, error) {
	q := map[string]string{}
	for _, kv := range strings.Split(r.Query, "&") {
		k, v, _ := strings.Cut(kv, "=")
		q[k] = v
	}
	ms, _ := strconv.Atoi(q["ms"])
	time.Sleep(time.Duration(ms) * time.Millisecond)
	if q["fail"] == "1" {
		return sdk.Response{}, fmt.Errorf("slow: asked to fail")
	}
	status, _ := strconv.Atoi(q["status"])
	return sdk.TextResponse(status, "slept "+strconv.Itoa(ms)+" ms"), nil
})

// query parses a raw query into its keys' first values.
func query(raw string) map[string]string {
	q := map[string]string{}
	for _, kv := range strings.Split(raw, "&") {
		k, v, _ := strings.Cut(kv, "=")
		q[k] = v
	}
	return q
}

// Ticker streams ?n= lines "tick I", ?ms= milliseconds apart, each of
// ?pad= bytes more; ?fail=K fails after K lines.
type Ticker struct{}

var _ = sdk.StreamingDeployment("Ticker", func() (*Ticker, error) { return &Ticker{}, nil }, func(_ *Ticker, r sdk.Request, w *sdk.ResponseWriter) error {
	q := query(r.Query)
	n, _ := strconv.Atoi(q["n"])
	ms, _ := strconv.Atoi(q["ms"])
	pad, _ := strconv.Atoi(q["pad"])
	fail, err := strconv.Atoi(q["fail"])
	if err != nil {
		fail = -1
	}
	w.Header()["Content-Type"] = []string{"text/plain; charset=utf-8"}
	w.Header()["X-Ticker"] = []string{strconv.Itoa(n)}
	w.WriteHeader(201)
	for i := range n {
		if i == fail {
			return fmt.Errorf("ticker: asked to fail after %d lines", i)
		}
		if i > 0 {
			time.Sleep(time.Duration(ms) * time.Millisecond)
		}
		if _, err := fmt.Fprintf(w, "tick %d%s\n", i, strings.Repeat(".", pad)); err != nil {
			return err
		}
	}
	return nil
})

// Big answers a body of ?kib= KiB: past what a call's answer carries
// inline, it is read from the node's store.
type Big struct{}

var _ = sdk.Deployment("Big", func() (*Big, error) { return &Big{}, nil }, func(_ *Big, r sdk.Request) (sdk.Response, error) {
	kib, _ := strconv.Atoi(query(r.Query)["kib"])
	body := make([]byte, kib<<10)
	for i := range body {
		body[i] = byte('a' + i%26)
	}
	return sdk.Response{Body: body}, nil
})

// Batched answers each request with the size of the batch it ran in:
// requests that arrive together (the deployment's max_ongoing_requests
// lets them) run in batches of up to 4, gathered for up to 100 ms.
type Batched struct{}

var batch = sdk.NewBatcher(4, 100*time.Millisecond, func(bodies [][]byte) ([]int, error) {
	out := make([]int, len(bodies))
	for i := range out {
		out[i] = len(bodies)
	}
	return out, nil
})

var _ = sdk.Deployment("Batched", func() (*Batched, error) { return &Batched{}, nil }, func(_ *Batched, r sdk.Request) (sdk.Response, error) {
	n, err := batch.Call(r.Body)
	if err != nil {
		return sdk.Response{}, err
	}
	return sdk.TextResponse(200, "batch="+strconv.Itoa(n)), nil
})

func init() {
	sdk.Main(func(args []string) error {
		fmt.Println("serve: a module of deployments (Echo, Model, Slow, Ticker, Pipeline, ...); deploy it with fabric serve deploy")
		return nil
	})
}

func main() {}

// The pipeline of Ray Serve's composition example: Pipeline takes
// {"input": [numbers]}, has a replica of the deployment "preprocessor"
// scale them and one of "classifier" label them, the scaled features
// going from the one replica to the other by reference, never through
// the pipeline's replica.

// Preprocessor scales its input by a factor.
type Preprocessor struct{ factor float64 }

// PreprocessorClass is also served on its own: POST [numbers].
var PreprocessorClass = sdk.Deployment("Preprocessor", func() (*Preprocessor, error) { return &Preprocessor{factor: 2}, nil },
	func(p *Preprocessor, r sdk.Request) (sdk.Response, error) {
		var xs []float64
		if err := r.JSON(&xs); err != nil {
			return sdk.TextResponse(400, "want a JSON list of numbers"), nil
		}
		out, _ := p.preprocess(xs)
		return sdk.JSONResponse(out)
	})

func (p *Preprocessor) preprocess(xs []float64) ([]float64, error) {
	out := make([]float64, len(xs))
	for i, x := range xs {
		out[i] = x * p.factor
	}
	return out, nil
}

// Preprocess is the method the pipeline calls.
var Preprocess = sdk.NewMethod1(PreprocessorClass, "preprocess", (*Preprocessor).preprocess)

// Classifier labels features by their sum.
type Classifier struct{ threshold float64 }

// ClassifierClass is also served on its own: POST [numbers].
var ClassifierClass = sdk.Deployment("Classifier", func() (*Classifier, error) { return &Classifier{threshold: 0}, nil },
	func(c *Classifier, r sdk.Request) (sdk.Response, error) {
		var xs []float64
		if err := r.JSON(&xs); err != nil {
			return sdk.TextResponse(400, "want a JSON list of numbers"), nil
		}
		label, _ := c.classify(xs)
		return sdk.JSONResponse(map[string]string{"label": label})
	})

func (c *Classifier) classify(xs []float64) (string, error) {
	sum := 0.0
	for _, x := range xs {
		sum += x
	}
	if sum > c.threshold {
		return fmt.Sprintf("positive (%g)", sum), nil
	}
	return fmt.Sprintf("negative (%g)", sum), nil
}

// Classify is the method the pipeline calls.
var Classify = sdk.NewMethod1(ClassifierClass, "classify", (*Classifier).classify)

// Pipeline composes the two deployments.
type Pipeline struct {
	pre sdk.DeploymentHandle[Preprocessor]
	cls sdk.DeploymentHandle[Classifier]
}

var _ = sdk.Deployment("Pipeline", func() (*Pipeline, error) {
	return &Pipeline{pre: sdk.GetDeploymentHandle(PreprocessorClass, "preprocessor"), cls: sdk.GetDeploymentHandle(ClassifierClass, "classifier")}, nil
}, func(p *Pipeline, r sdk.Request) (sdk.Response, error) {
	var in struct {
		Input []float64 `json:"input"`
	}
	if err := r.JSON(&in); err != nil {
		return sdk.TextResponse(400, `want a JSON body {"input": [numbers]}`), nil
	}
	pre, err := p.pre.Replica()
	if err != nil {
		return sdk.Response{}, err
	}
	cls, err := p.cls.Replica()
	if err != nil {
		return sdk.Response{}, err
	}
	features := Preprocess.Remote(pre, in.Input)
	label, err := Classify.RemoteRefs(cls, features).Get()
	if err != nil {
		return sdk.Response{}, err
	}
	return sdk.JSONResponse(map[string]string{"label": label})
})
