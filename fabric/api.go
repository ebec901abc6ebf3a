package fabric

import (
	"cmp"
	"crypto/subtle"
	"encoding/binary"
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

// NodeView is one node as the HTTP API and `fabric list nodes` show it.
type NodeView struct {
	ID        string             `json:"id"`
	Status    string             `json:"status"`
	Role      string             `json:"role"`
	Gossip    string             `json:"gossip"`
	QUIC      string             `json:"quic"`
	HTTP      string             `json:"http"`
	Resources map[string]float64 `json:"resources"`
	Used      map[string]float64 `json:"used"`
	Labels    map[string]string  `json:"labels,omitempty"`
}

// StatusView is the cluster's state as `fabric status` shows it.
type StatusView struct {
	Nodes map[string]int `json:"nodes"` // count by status
	// Total and Used sum the alive nodes' resources, as gossiped.
	Total map[string]float64 `json:"total"`
	Used  map[string]float64 `json:"used"`
	// Pending counts the tasks waiting on the answering node, and
	// PendingDemand sums what they ask for.
	Pending       int                `json:"pending"`
	PendingDemand map[string]float64 `json:"pending_demand"`
	// Workers are the answering node's workers.
	Workers WorkersView `json:"workers"`
	Node    string      `json:"node"` // the node that answered
	// Control is the control plane as the answering node sees it.
	Control ControlView `json:"control"`
}

// ControlView is the control plane as one agent sees it.
type ControlView struct {
	Role   string `json:"role"`             // "leader", "follower" or "client"
	Leader string `json:"leader,omitempty"` // the leader's node ID, when known
	// Voters are the servers in the raft configuration (on servers).
	Voters []string `json:"voters,omitempty"`
	// Applied and Committed are raft indexes (on servers): a server has
	// caught up when its Applied reaches the leader's Committed.
	Applied   uint64 `json:"applied,omitempty"`
	Committed uint64 `json:"committed,omitempty"`
}

// WorkersView counts a node's workers (instances of jobs' modules) and
// worker processes for `fabric status`.
type WorkersView struct {
	Busy int `json:"busy"` // running an execution or hosting an actor
	// Parked counts the busy ones that do not count against Max: blocked
	// in get or wait, drivers, actors.
	Parked       int `json:"parked"`
	Idle         int `json:"idle"`          // kept for their job's next tasks
	Max          int `json:"max"`           // the most that run at once
	MaxInstances int `json:"max_instances"` // the most the node holds, parked ones included
	// Waiting counts the executions placed on the node that wait for a
	// worker.
	Waiting int `json:"waiting"`
	// Processes counts the worker processes that host them (one per job
	// with workers here, and one per driver).
	Processes int `json:"processes"`
}

// MediaJobStream is the framed form of a job's streamed response, which a
// client asks for with Accept: the body is frames of one kind byte
// (FrameStdout, FrameStderr, FrameResult), a 4-byte big-endian length and
// that many bytes. The last frame is the result, JSON (JobResultView), of
// any length. Without it, the body is the output as plain text and the
// result is in the trailers, cut to fit them.
const MediaJobStream = "application/vnd.fabric.job-stream"

// Kinds of the frames of MediaJobStream.
const (
	FrameStdout = 1
	FrameStderr = 2
	FrameResult = 3
)

// maxFrame bounds one frame of a job stream.
const maxFrame = 16 << 20

// JobResultView is a job's result in its stream's last frame.
type JobResultView struct {
	Error    string `json:"error,omitempty"` // "" when the job succeeded
	ExitCode int    `json:"exit_code,omitempty"`
}

// maxTrailerError bounds the error a plain job stream's trailer carries:
// Go's HTTP client refuses a trailer over about 4 KB.
const maxTrailerError = 2048

// Trailer names of a job's streamed response.
const (
	TrailerJobError = "Fabric-Job-Error" // a Go-quoted string (strconv.Unquote), "" when the job succeeded
	// TrailerJobExitCode is the code the driver passed to os.Exit, when it
	// exited with one other than 0; absent otherwise.
	TrailerJobExitCode = "Fabric-Job-Exit-Code"
	// TrailerJobEnded is "true" when the stream ends with the job's end,
	// "false" when the job had not ended (a log read without following).
	TrailerJobEnded = "Fabric-Job-Ended"
)

func (a *Agent) api() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/nodes", a.handleNodes)
	mux.HandleFunc("GET /v1/status", a.handleStatus)
	mux.HandleFunc("POST /v1/jobs", a.handleJob)
	mux.HandleFunc("GET /v1/jobs", a.handleJobList)
	mux.HandleFunc("GET /v1/jobs/{id}", a.handleJobGet)
	mux.HandleFunc("GET /v1/jobs/{id}/logs", a.handleJobLogs)
	mux.HandleFunc("POST /v1/jobs/{id}/stop", a.handleJobStop)
	mux.HandleFunc("DELETE /v1/jobs/{id}", a.handleJobDelete)
	mux.HandleFunc("POST /v1/modules", a.handleModuleUpload)
	mux.HandleFunc("GET /v1/modules", a.handleModuleList)
	mux.HandleFunc("DELETE /v1/modules/{digest}", a.handleModuleDelete)
	mux.HandleFunc("POST /v1/modules/{digest}/call", a.handleCall)
	mux.HandleFunc("GET /v1/debug/state", a.handleDebugState)
	token := []byte("Bearer " + a.cluster.APIToken())
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), token) != 1 {
			apiError(w, http.StatusUnauthorized, "missing or wrong API token: pass the token the first agent printed (--token or FABRIC_TOKEN)")
			return
		}
		mux.ServeHTTP(w, r)
	})
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
	digest, ok := a.receiveModule(w, r)
	if !ok {
		return
	}
	id, maxRestarts, err := jobQuery(r)
	if err != nil {
		apiFail(w, err)
		return
	}
	run, j, err := a.submitJob(r.Context(), digest, r.URL.Query()["arg"], id, maxRestarts)
	if err != nil {
		apiFail(w, err)
		return
	}
	if d := r.URL.Query().Get("detach"); d == "1" || d == "true" {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(jobInfo(j))
		return
	}
	// Attached: the job's output as it comes, then its result. The job
	// does not depend on the request: a client that goes away stops
	// following it, and it runs on.
	w.Header().Set("Fabric-Job-Id", j.ID)
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
	b := make([]byte, 5, 5+len(msg))
	b[0] = FrameStderr
	binary.BigEndian.PutUint32(b[1:], uint32(len(msg)))
	_, _ = out.Write(append(b, msg...))
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
		buf := make([]byte, 5, 5+len(chunk))
		buf[0] = f.kind
		binary.BigEndian.PutUint32(buf[1:], uint32(len(chunk)))
		if _, err := f.out.Write(append(buf, chunk...)); err != nil {
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
