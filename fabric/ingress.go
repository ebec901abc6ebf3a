//go:build linux

package fabric

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wasmfabric/fabric/internal/abi"
	"github.com/wasmfabric/fabric/internal/controlstate"
	"github.com/wasmfabric/fabric/internal/transport"
	"github.com/wasmfabric/fabric/internal/wire"
)

// The ingress: every agent with a serve address answers HTTP requests
// for every deployment. It matches the longest route prefix, checks the
// token of a route that is not public, and sends the request to a node
// that hosts the deployment's replicas: a replica set here, or another
// agent's over QUIC (msgServe), which calls one of its own.

const (
	// MaxServeBody bounds a request's body (413 past it).
	MaxServeBody = 1 << 20
	// serveTimeout bounds a request from its arrival to its answer: to
	// the first item of a streamed one, which may then go on as long as
	// its client reads.
	serveTimeout = 60 * time.Second
	// coldStartWait bounds how long a request to a deployment scaled to
	// zero waits for its first replica.
	coldStartWait = 30 * time.Second
	// ingressWriteTimeout bounds a write of a response to its client
	// (each chunk of a streamed one): a client that reads nothing for
	// that long is cut off, and what the agent held for it let go.
	ingressWriteTimeout = 30 * time.Second
)

// ingressLoad counts the requests this ingress has in flight to each
// node, for nodeFor's choice.
type ingressLoad struct {
	mu sync.Mutex
	n  map[string]int
}

func (a *Agent) inflight(node string) int {
	a.load.mu.Lock()
	defer a.load.mu.Unlock()
	return a.load.n[node]
}

func (a *Agent) addInflight(node string, d int) {
	a.load.mu.Lock()
	defer a.load.mu.Unlock()
	if a.load.n == nil {
		a.load.n = map[string]int{}
	}
	a.load.n[node] += d
	if a.load.n[node] == 0 {
		delete(a.load.n, node)
	}
}

// The ingress's token checks: a token's answer is kept a few seconds
// (a revoked or expired token still opens routes for up to
// serveAuthTTL), a refusal one second, so that a route's traffic does
// not cost a read on the leader per request; checks not kept run a few at
// a time on slots of their own, so that a flood of bad tokens at the
// ingress does not hold up the API's.
const (
	serveAuthTTL     = 5 * time.Second
	serveAuthRefusal = time.Second
	serveAuthMax     = 10000 // answers kept; past it, the oldest half goes
	serveAuthSlots   = 8
)

type serveAuthEntry struct {
	tok   controlstate.Token
	err   error
	until time.Time
}

type serveAuthCache struct {
	mu    sync.Mutex
	m     map[string]serveAuthEntry
	slots chan struct{}
}

// serveAuth checks a token for the ingress.
func (a *Agent) serveAuth(ctx context.Context, bearer string) (controlstate.Token, error) {
	if !wellFormedToken(bearer) {
		return controlstate.Token{}, fmt.Errorf("%w: unknown token", ErrUnauthorized)
	}
	key := string(tokenHash(bearer))
	c := &a.serveAuths
	now := time.Now()
	c.mu.Lock()
	e, ok := c.m[key]
	c.mu.Unlock()
	if ok && now.Before(e.until) && (e.tok.Expires == 0 || e.tok.Expires > now.UnixMilli()) {
		return e.tok, e.err
	}
	select {
	case c.slots <- struct{}{}:
		defer func() { <-c.slots }()
	default:
		return controlstate.Token{}, fmt.Errorf("%w: %d token checks at once on this ingress; try again", ErrTooMany, serveAuthSlots)
	}
	ans, err := a.control(ctx, controlRequest{Op: "authenticate", Command: []byte(key)})
	e = serveAuthEntry{until: now.Add(serveAuthTTL)}
	switch {
	case errors.Is(err, ErrUnauthorized) || err == nil && len(ans.Tokens) != 1:
		e.err, e.until = fmt.Errorf("%w: unknown, expired or revoked token", ErrUnauthorized), now.Add(serveAuthRefusal)
	case err != nil:
		return controlstate.Token{}, err // not kept: the leader may answer next time
	default:
		e.tok = ans.Tokens[0]
	}
	c.mu.Lock()
	if c.m == nil || len(c.m) >= serveAuthMax {
		c.m = map[string]serveAuthEntry{} // a flood of distinct tokens: start again
	}
	c.m[key] = e
	c.mu.Unlock()
	return e.tok, e.err
}

// startIngress listens on addr and serves deployments there.
func (a *Agent) startIngress(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("fabric: serve address %s: %w", addr, err)
	}
	a.ingressAddr = ln.Addr().String()
	a.ingress = &http.Server{Handler: http.HandlerFunc(a.handleIngress), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10}
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		_ = a.ingress.Serve(ln)
	}()
	return nil
}

// IngressAddr is where the agent's ingress listens ("" when it has none).
func (a *Agent) IngressAddr() string { return a.ingressAddr }

// ingressError answers an ingress error as text.
func ingressError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if code == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	w.WriteHeader(code)
	_, _ = io.WriteString(w, msg+"\n")
}

func (a *Agent) handleIngress(w http.ResponseWriter, r *http.Request) {
	d, placed, ok := a.routeFresh(r.Context(), r.URL.Path)
	if !ok {
		ingressError(w, http.StatusNotFound, fmt.Sprintf("fabric serve: no deployment serves %s (fabric serve status lists the routes)", r.URL.Path))
		return
	}
	if !d.Public {
		bearer, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || bearer == "" {
			ingressError(w, http.StatusUnauthorized, "fabric serve: this route takes a token of its tenant: Authorization: Bearer TOKEN")
			return
		}
		t, err := a.serveAuth(r.Context(), bearer)
		switch {
		case errors.Is(err, ErrUnauthorized):
			ingressError(w, http.StatusUnauthorized, err.Error())
			return
		case err != nil:
			ingressError(w, http.StatusServiceUnavailable, "fabric serve: "+err.Error())
			return
		case t.Tenant != "" && t.Tenant != d.Tenant:
			ingressError(w, http.StatusNotFound, fmt.Sprintf("fabric serve: no deployment serves %s (fabric serve status lists the routes)", r.URL.Path))
			return
		}
	}
	// The bytes held for requests and responses are bounded, together:
	// past the budget, 503 (the body's size is charged before it is read
	// when the request says it, else 64 KiB, and then what it was).
	charged := int64(64 << 10)
	if r.ContentLength >= 0 && r.ContentLength <= MaxServeBody {
		charged = r.ContentLength
	}
	if !a.serveBudget.take(charged) {
		busy(w)
		return
	}
	defer func() { a.serveBudget.give(charged) }()
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxServeBody))
	if err == nil && int64(len(body)) > charged {
		if !a.serveBudget.take(int64(len(body)) - charged) {
			busy(w)
			return
		}
		charged = int64(len(body))
	}
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			ingressError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("fabric serve: the body is past %d bytes", MaxServeBody))
			return
		}
		ingressError(w, http.StatusBadRequest, "fabric serve: reading the body: "+err.Error())
		return
	}
	header := r.Header.Clone()
	header.Del("Authorization") // the replica does not need the caller's token
	req := abi.ServeRequest{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Header: header, Body: body, Route: d.Route}
	ctx, stop := answerWithin(r.Context(), a.answerTimeout())
	defer stop()
	// A deployment scaled to zero wakes for the request, which waits for
	// its first replica (and retries while that one starts).
	var resp abi.ServeResponse
	// A streamed response is written as its items come, each flushed;
	// once the first is written, an error can only cut it short.
	streamed := false
	flusher, _ := w.(http.Flusher)
	rc := http.NewResponseController(w)
	emit := func(item abi.ServeResponse) error {
		answering(ctx)
		_ = rc.SetWriteDeadline(time.Now().Add(ingressWriteTimeout))
		if !streamed {
			status := cmp.Or(item.Status, http.StatusOK)
			if status < 100 || status > 999 {
				return fmt.Errorf("the replica answered status %d", status)
			}
			streamed = true
			copyHeader(w.Header(), item.Header)
			w.WriteHeader(status)
		}
		if len(item.Body) > 0 {
			if _, err := w.Write(item.Body); err != nil {
				return err
			}
		}
		if flusher != nil {
			flusher.Flush()
		}
		return nil
	}
	deadline, woke := time.Now().Add(coldStartWait), false
	for {
		stepped := a.serveStepped() // before a wake, whose step may end at once
		node := a.nodeFor(placed)
		if node == "" && (d.Autoscaling == nil || d.Replicas > 0 && !woke) {
			ingressError(w, http.StatusServiceUnavailable, fmt.Sprintf("fabric serve: deployment %s has no replicas (num_replicas 0, or no node alive)", d.Key))
			return
		}
		if node == "" && !woke {
			if err := a.wake(ctx, d); err != nil {
				ingressError(w, http.StatusServiceUnavailable, fmt.Sprintf("fabric serve: deployment %s is scaled to zero and could not start a replica: %v", d.Key, err))
				return
			}
			woke = true
		}
		var code int
		if node != "" {
			a.addInflight(node, 1)
			if node == a.ID {
				resp, code, err = a.callLocal(ctx, d.Key, req, emit)
			} else {
				resp, code, err = a.callRemote(ctx, node, d.Key, req, emit)
			}
			a.addInflight(node, -1)
			if streamed {
				if err != nil {
					a.log.Debug("fabric serve: a streamed response was cut short", "deployment", d.Key, "err", err)
					panic(http.ErrAbortHandler) // the client sees the response end early
				}
				return
			}
			if err == nil {
				break
			}
			if !woke || code != http.StatusServiceUnavailable {
				ingressError(w, code, "fabric serve: "+err.Error())
				return
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			ingressError(w, http.StatusServiceUnavailable, fmt.Sprintf("fabric serve: deployment %s was scaled to zero and no replica started within %s", d.Key, coldStartWait))
			return
		}
		select { // this node's next step, which may host a replica, or a moment for another node's
		case <-stepped:
		case <-time.After(5 * time.Millisecond):
		}
		if d, placed, ok = a.route(r.URL.Path); !ok {
			ingressError(w, http.StatusNotFound, fmt.Sprintf("fabric serve: no deployment serves %s (fabric serve status lists the routes)", r.URL.Path))
			return
		}
	}
	if !a.serveBudget.take(int64(len(resp.Body))) {
		busy(w)
		return
	}
	charged += int64(len(resp.Body))
	copyHeader(w.Header(), resp.Header)
	status := resp.Status
	if status == 0 {
		status = http.StatusOK
	}
	if status < 100 || status > 999 {
		ingressError(w, http.StatusBadGateway, fmt.Sprintf("fabric serve: the replica answered status %d", status))
		return
	}
	_ = rc.SetWriteDeadline(time.Now().Add(ingressWriteTimeout))
	w.WriteHeader(status)
	_, _ = w.Write(resp.Body)
}

// serveBudget bounds the bytes the ingress holds at once for requests'
// bodies and whole responses.
const serveBudget = 256 << 20

// byteBudget counts bytes held against a bound; take never waits.
type byteBudget struct {
	used atomic.Int64
	max  int64
}

// take charges n bytes, unless that goes past the bound.
func (b *byteBudget) take(n int64) bool {
	if b.used.Add(n) > b.max {
		b.used.Add(-n)
		return false
	}
	return true
}

// fits reports whether n more bytes would fit now.
func (b *byteBudget) fits(n int64) bool { return b.used.Load()+n <= b.max }

func (b *byteBudget) give(n int64) { b.used.Add(-n) }

// busy answers 503 when the ingress holds all the bytes it may.
func busy(w http.ResponseWriter) {
	w.Header().Set("Retry-After", "1")
	ingressError(w, http.StatusServiceUnavailable, fmt.Sprintf("fabric serve: this agent holds the most request and response bytes it may (%d MiB); retry", serveBudget>>20))
}

// answerTimeout is serveTimeout, unless a test set the agent's own.
func (a *Agent) answerTimeout() time.Duration {
	if d := time.Duration(a.serveTimeout.Load()); d > 0 {
		return d
	}
	return serveTimeout
}

// errNoAnswer is the cause of a request's context ended by answerWithin.
var errNoAnswer = errors.New("fabric: the replica did not answer in time")

// answerKey holds a request's answer timer in its context.
type answerKey struct{}

// answerWithin returns a context that ends, with cause errNoAnswer, when
// no answer began within d (answering says one did), or when stop is
// called.
func answerWithin(parent context.Context, d time.Duration) (context.Context, func()) {
	var ctx context.Context
	var cancel context.CancelCauseFunc
	ctx, cancel = context.WithCancelCause(parent)
	t := time.AfterFunc(d, func() { cancel(errNoAnswer) })
	ctx = context.WithValue(ctx, answerKey{}, t)
	return ctx, func() {
		t.Stop()
		cancel(nil)
	}
}

// answering says that the answer of ctx's request began: its time is no
// longer bounded.
func answering(ctx context.Context) {
	if t, ok := ctx.Value(answerKey{}).(*time.Timer); ok {
		t.Stop()
	}
}

// copyHeader adds a replica's headers to h, leaving out those that are
// not HTTP's (a guest cannot split a response).
func copyHeader(h http.Header, from map[string][]string) {
	for k, vs := range from {
		if !validHeaderName(k) {
			continue
		}
		for _, v := range vs {
			if validHeaderValue(v) {
				h.Add(k, v)
			}
		}
	}
}

// callLocal sends a request to a replica hosted here; code is the HTTP
// status of an error. A streamed response goes to emit.
func (a *Agent) callLocal(ctx context.Context, key string, req abi.ServeRequest, emit func(abi.ServeResponse) error) (abi.ServeResponse, int, error) {
	rs := a.localSet(key)
	if rs == nil {
		return abi.ServeResponse{}, http.StatusServiceUnavailable, fmt.Errorf("deployment %s has no replica on node %s yet", key, a.ID)
	}
	resp, err := rs.call(ctx, req, emit)
	switch {
	case err == nil:
		return resp, 0, nil
	case errors.Is(err, ErrOverloaded), errors.Is(err, ErrNoReplica), errors.Is(err, ErrReplicaDied), errors.Is(err, ErrClosed):
		return resp, http.StatusServiceUnavailable, err
	case errors.Is(err, context.DeadlineExceeded), errors.Is(context.Cause(ctx), errNoAnswer):
		return resp, http.StatusGatewayTimeout, fmt.Errorf("the replica did not answer within %s", a.answerTimeout())
	}
	var ce *CallError
	if errors.As(err, &ce) {
		return resp, http.StatusInternalServerError, fmt.Errorf("the replica failed (%s): %s", ce.Kind, firstLineOf(ce.Message))
	}
	return resp, http.StatusBadGateway, err
}

// callRemote sends a request to another node's replicas; a streamed
// response comes over a stream of its own (msgServeStream) to emit.
func (a *Agent) callRemote(ctx context.Context, node, key string, req abi.ServeRequest, emit func(abi.ServeResponse) error) (abi.ServeResponse, int, error) {
	addr, err := a.addrOf(node)
	if err != nil {
		return abi.ServeResponse{}, http.StatusServiceUnavailable, err
	}
	body, err := wire.Marshal(serveCall{Key: key, Request: req})
	if err != nil {
		return abi.ServeResponse{}, http.StatusInternalServerError, err
	}
	if _, streams := a.serve.streams.Load(key); streams {
		return a.streamRemote(ctx, node, addr, body, emit)
	}
	_, b, err := a.quic.Call(ctx, addr, msgServe, body)
	if err != nil {
		return abi.ServeResponse{}, http.StatusServiceUnavailable, fmt.Errorf("node %s did not answer: %v", node, err)
	}
	var ans serveAnswer
	if err := wire.Unmarshal(b, &ans); err != nil {
		return abi.ServeResponse{}, http.StatusBadGateway, fmt.Errorf("node %s answered garbage: %v", node, err)
	}
	if ans.Stream {
		a.serve.streams.Store(key, true)
		return a.streamRemote(ctx, node, addr, body, emit)
	}
	if ans.Code != 0 {
		return abi.ServeResponse{}, ans.Code, errors.New(ans.Error)
	}
	return ans.Response, 0, nil
}

// serveFrame is a frame of msgServeStream's answer: an item of the
// response, or its end (with the error's status and message).
type serveFrame struct {
	_     struct{} `cbor:",toarray"`
	Item  abi.ServeResponse
	End   bool
	Code  int
	Error string
}

// maxServeFrame bounds a frame of a streamed response.
const maxServeFrame = maxServeResponse + 1<<20

// streamRemote takes a streamed response from node.
func (a *Agent) streamRemote(ctx context.Context, node, addr string, body []byte, emit func(abi.ServeResponse) error) (abi.ServeResponse, int, error) {
	conn, err := a.quic.OpenStream(ctx, addr, msgServeStream, body)
	if err != nil {
		return abi.ServeResponse{}, http.StatusServiceUnavailable, fmt.Errorf("node %s did not answer: %v", node, err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	for {
		_, b, err := transport.ReadFrame(conn, maxServeFrame)
		if err != nil {
			return abi.ServeResponse{}, http.StatusBadGateway, fmt.Errorf("node %s: the stream broke: %v", node, err)
		}
		var f serveFrame
		if err := wire.Unmarshal(b, &f); err != nil {
			return abi.ServeResponse{}, http.StatusBadGateway, fmt.Errorf("node %s answered garbage: %v", node, err)
		}
		if f.End {
			if f.Code != 0 {
				return abi.ServeResponse{}, f.Code, errors.New(f.Error)
			}
			return abi.ServeResponse{}, 0, nil
		}
		if err := emit(f.Item); err != nil {
			return abi.ServeResponse{}, http.StatusBadGateway, err
		}
	}
}

// serveStreamPeer answers another agent's msgServeStream: a request to a
// deployment that streams, its items written as they come.
func (a *Agent) serveStreamPeer(peer string, body []byte, conn net.Conn) {
	defer conn.Close()
	var c serveCall
	if a.peerMay(peer, msgServeStream) != nil || wire.Unmarshal(body, &c) != nil {
		return
	}
	ctx, cancel := answerWithin(a.agentCtx, a.answerTimeout())
	defer cancel()
	go func() { // the asker gone, the call stops
		_, _ = io.Copy(io.Discard, conn)
		cancel()
	}()
	frame := func(f serveFrame) error {
		answering(ctx)
		_ = conn.SetWriteDeadline(time.Now().Add(ingressWriteTimeout))
		b, err := wire.Marshal(f)
		if err == nil {
			err = transport.WriteFrame(conn, msgServeStream, b)
		}
		return err
	}
	resp, code, err := a.callLocal(ctx, c.Key, c.Request, func(item abi.ServeResponse) error { return frame(serveFrame{Item: item}) })
	end := serveFrame{End: true, Code: code}
	switch {
	case err != nil:
		end.Error = err.Error()
		if end.Code == 0 {
			end.Code = http.StatusBadGateway
		}
	case resp.Status != 0 || resp.Header != nil || resp.Body != nil: // not streamed after all (a new version)
		if frame(serveFrame{Item: resp}) != nil {
			return
		}
	}
	_ = frame(end)
}

// firstLineOf is s up to its first line break.
func firstLineOf(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// validHeaderName reports whether k is an HTTP header field name (a
// token): a replica's header that is not one is dropped.
func validHeaderName(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("\"(),/:;<=>?@[\\]{}", c) >= 0 {
			return false
		}
	}
	return true
}

// validHeaderValue reports whether v may be sent as a header's value: no
// control characters but tab (a CR or LF would split the response).
func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}
