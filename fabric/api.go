//go:build linux

package fabric

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/wasmfabric/fabric/internal/membership"
	"github.com/wasmfabric/fabric/internal/sandbox"
)

// MaxModuleSize bounds a module.
const MaxModuleSize = 256 << 20

// Errors of module uploads.
var (
	ErrModuleTooLarge = errors.New("fabric: the module is too large")
	ErrNoModule       = errors.New("fabric: no module given (an empty file?)")
)

// maxTrailerError bounds the error a plain job stream's trailer carries:
// Go's HTTP client refuses a trailer over about 4 KB.
const maxTrailerError = 2048

func (a *Agent) api() http.Handler {
	mux := http.NewServeMux()
	for _, rt := range a.apiRoutes() {
		mux.HandleFunc(rt.pattern, a.guard(rt))
	}
	return mux
}

func apiError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func viewOf(m membership.Member) NodeView {
	v := NodeView{ID: m.ID, Status: string(m.Status), Role: m.Role, Gossip: m.Gossip, QUIC: m.QUIC, HTTP: m.HTTP,
		Resources: m.Resources, Used: m.Used, Labels: m.Labels}
	if v.Resources == nil {
		v.Resources = map[string]float64{}
	}
	if v.Used == nil {
		v.Used = map[string]float64{}
	}
	return v
}

func (a *Agent) handleNodes(w http.ResponseWriter, _ *http.Request) {
	out := []NodeView{}
	for _, m := range a.members.Members() {
		out = append(out, viewOf(m))
	}
	writeJSON(w, out)
}

func (a *Agent) handleStatus(w http.ResponseWriter, _ *http.Request) {
	st := StatusView{Nodes: map[string]int{}, Total: map[string]float64{}, Used: map[string]float64{}, Node: a.ID}
	for _, m := range a.members.Members() {
		st.Nodes[string(m.Status)]++
		if m.Status != membership.Alive && m.Status != membership.Suspect {
			continue
		}
		for k, v := range m.Resources {
			st.Total[k] += v
		}
		for k, v := range m.Used {
			st.Used[k] += v
		}
	}
	u := a.node.Usage()
	st.Pending, st.PendingDemand = u.Pending, u.PendingDemand
	st.Control = a.controlView()
	st.Workers = WorkersView{Busy: u.WorkersBusy, Parked: u.WorkersParked, Idle: u.WorkersIdle, Max: u.MaxWorkers,
		MaxInstances: u.MaxInstances, Waiting: u.WaitingForWorker, Processes: u.Processes}
	writeJSON(w, st)
}

// flushWriter writes a streamed response as output arrives.
type flushWriter struct {
	mu sync.Mutex
	w  io.Writer
	f  http.Flusher
}

func (f *flushWriter) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, err := f.w.Write(p)
	if f.f != nil {
		f.f.Flush()
	}
	return n, err
}

// handleJob runs an uploaded module's driver on this node and streams its
// output (stdout and stderr interleaved) as the response body; the
// trailer Fabric-Job-Error carries the job's error, empty on success.
// Query parameters: arg (repeated) are the driver's arguments.
// receiveModule stores the module in a request's body, validated, and
// returns its digest; on failure it has answered the request.
func (a *Agent) receiveModule(w http.ResponseWriter, r *http.Request) (string, bool) {
	// A body that stalls is cut off: a client that trickles bytes holds
	// a handler and a temporary file only while it keeps sending.
	rc := http.NewResponseController(w)
	body := &idleReader{r: r.Body, rc: rc, idle: cmp.Or(a.cfg.UploadIdle, DefaultUploadIdle)}
	digest, err := a.node.addModule(body)
	if body.stalled {
		// The deadline stays, so the server does not wait to drain the
		// rest of the body, and the connection closes after the answer.
		w.Header().Set("Connection", "close")
		apiError(w, http.StatusRequestTimeout, fmt.Sprintf("the module's upload sent nothing for %s; the agent gave up on it", body.idle))
		return "", false
	}
	_ = rc.SetReadDeadline(time.Time{})
	switch {
	case errors.Is(err, ErrModuleTooLarge):
		apiError(w, http.StatusRequestEntityTooLarge, err.Error())
	case errors.Is(err, ErrNoModule):
		apiError(w, http.StatusBadRequest, "no module in the request body")
	case errors.Is(err, sandbox.ErrInvalidModule), errors.Is(err, errUpload):
		apiError(w, http.StatusBadRequest, err.Error())
	case err != nil:
		apiError(w, http.StatusInternalServerError, "storing the module: "+err.Error())
	default:
		return digest, true
	}
	return "", false
}

func (a *Agent) handleJob(w http.ResponseWriter, r *http.Request) {
	if a.draining.Load() {
		apiFail(w, ErrDraining)
		return
	}
	sig, err := moduleSignature(r)
	if err != nil {
		apiFail(w, err)
		return
	}
	digest, ok := a.receiveModule(w, r)
	if !ok {
		return
	}
	id, maxRestarts, err := jobQuery(r)
	if err != nil {
		apiFail(w, err)
		return
	}
	run, j, err := a.submitJob(r.Context(), digest, sig, r.URL.Query()["arg"], id, maxRestarts, callerOf(r))
	if err != nil {
		apiFail(w, err)
		return
	}
	if d := r.URL.Query().Get("detach"); d == "1" || d == "true" {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(callerOf(r).jobInfo(j))
		return
	}
	// Attached: the job's output as it comes, then its result. The job
	// does not depend on the request: a client that goes away stops
	// following it, and it runs on.
	w.Header().Set("Fabric-Job-Id", callerOf(r).jobID(j.ID))
	out, finish := startJobStream(w, r)
	_ = copyJobLog(r.Context(), run.log.path, run.log, true, out)
	select {
	case <-run.done:
		res := run.result
		finish(&res)
	case <-r.Context().Done():
	}
}

// startJobStream starts a job's streamed response: MediaJobStream when
// the client accepts it, else plain text with the result in trailers.
// The returned writer takes whole frames (one per Write); finish ends
// the stream with the result (nil: the job has not ended).
func startJobStream(w http.ResponseWriter, r *http.Request) (io.Writer, func(*JobResultView)) {
	framed := strings.Contains(r.Header.Get("Accept"), MediaJobStream)
	if framed {
		w.Header().Set("Content-Type", MediaJobStream)
	} else {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Trailer", TrailerJobError+", "+TrailerJobExitCode+", "+TrailerJobEnded)
	}
	w.WriteHeader(http.StatusOK)
	fw, _ := w.(http.Flusher)
	out := &flushWriter{w: w, f: fw}
	if fw != nil {
		fw.Flush()
	}
	if framed {
		return out, func(res *JobResultView) {
			if res != nil {
				b, _ := json.Marshal(res)
				_, _ = (&frameWriter{out: out, kind: FrameResult}).Write(b)
			}
		}
	}
	return unframer{out}, func(res *JobResultView) {
		if res == nil {
			w.Header().Set(TrailerJobEnded, "false")
			return
		}
		w.Header().Set(TrailerJobEnded, "true")
		if res.ExitCode != 0 {
			w.Header().Set(TrailerJobExitCode, strconv.Itoa(res.ExitCode))
		}
		msg := res.Error
		if len(msg) > maxTrailerError {
			msg = fmt.Sprintf("%s… [%d more bytes; ask with Accept: %s for the whole error]", msg[:maxTrailerError], len(msg)-maxTrailerError, MediaJobStream)
		}
		w.Header().Set(TrailerJobError, strconv.QuoteToASCII(msg)) // a header value holds no newlines
	}
}

// unframer writes the payloads of whole frames, one per Write.
type unframer struct{ w io.Writer }

func (u unframer) Write(p []byte) (int, error) {
	if len(p) < 5 {
		return len(p), nil
	}
	_, err := u.w.Write(p[5:])
	return len(p), err
}

// writeNotice writes a line to a job stream's stderr.
func writeNotice(out io.Writer, msg string) {
	_, _ = out.Write(frame(FrameStderr, []byte(msg)))
}

// idleReader reads a request body with a deadline that each read moves
// idle into the future.
type idleReader struct {
	r       io.Reader
	rc      *http.ResponseController
	idle    time.Duration
	stalled bool
}

func (b *idleReader) Read(p []byte) (int, error) {
	_ = b.rc.SetReadDeadline(time.Now().Add(b.idle))
	n, err := b.r.Read(p)
	var te interface{ Timeout() bool }
	if errors.As(err, &te) && te.Timeout() {
		b.stalled = true
	}
	return n, err
}

// frameWriter writes each Write as frames of one kind (MediaJobStream).
type frameWriter struct {
	out  *flushWriter
	kind byte
}

func (f *frameWriter) Write(p []byte) (int, error) {
	n := 0
	for {
		chunk := p[:min(len(p), maxFrame)]
		if _, err := f.out.Write(frame(f.kind, chunk)); err != nil {
			return n, err
		}
		n += len(chunk)
		if p = p[len(chunk):]; len(p) == 0 {
			return n, nil
		}
	}
}

// DebugState describes the node's core and its shell: jobs, tasks,
// objects, workers (also GET /v1/debug/state).
func (a *Agent) DebugState() string {
	st := a.link.Stats()
	return debugState(a.node) + fmt.Sprintf("  peer link: %d messages in %d batches sent, %d retries, %d dropped, %d refused, %d output bytes cut, %d not sent (node gone); %d received, %d repeats\n",
		st.Sent, st.Batches, st.Retries, st.Dropped, st.Refused, st.OutputCut, a.discarded.Load(), st.Received, st.Repeats)
}

// handleDebugState describes the node's core: its jobs, tasks and objects,
// for operators looking into a node that does not do what it should.
func (a *Agent) handleDebugState(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = io.WriteString(w, a.DebugState())
}
