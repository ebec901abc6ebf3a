package fabric

import (
	"bytes"
	"cmp"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"

	"github.com/wasmfabric/fabric/internal/controlstate"
)

// Client talks to an agent's HTTP API.
type Client struct {
	// Address is the agent's API, for example https://127.0.0.1:7948
	// (with no scheme: https).
	Address string
	// Token is an API token: a cluster admin token, or a tenant's.
	Token string
	// CA, when set, is what the agent's certificate is checked against:
	// the cluster's CA (nil: the system's roots).
	CA *x509.CertPool
	// HTTP is the client to use (nil: one that trusts CA, or
	// http.DefaultClient).
	HTTP *http.Client
}

// httpClients are the clients made for each CA pool, shared so that
// their connections are reused.
var httpClients sync.Map // *x509.CertPool -> *http.Client

func (c *Client) httpClient() *http.Client {
	switch {
	case c.HTTP != nil:
		return c.HTTP
	case c.CA == nil:
		return http.DefaultClient
	}
	if hc, ok := httpClients.Load(c.CA); ok {
		return hc.(*http.Client)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: c.CA, MinVersion: tls.VersionTLS12}
	hc, _ := httpClients.LoadOrStore(c.CA, &http.Client{Transport: tr})
	return hc.(*http.Client)
}

// ErrAPI is wrapped by errors the agent's API returned.
var ErrAPI = errors.New("fabric: agent API")

// ErrJob is wrapped by the error of a job that ran and failed.
var ErrJob = errors.New("fabric: job failed")

func (c *Client) url(path string, q url.Values) (string, error) {
	base := strings.TrimRight(c.Address, "/")
	if !strings.Contains(base, "://") {
		base = "https://" + base
	}
	u, err := url.Parse(base + path)
	if err != nil {
		return "", fmt.Errorf("fabric: bad agent address %q: %w", c.Address, err)
	}
	u.RawQuery = q.Encode()
	return u.String(), nil
}

func (c *Client) do(ctx context.Context, method, path string, q url.Values, body io.Reader, headers ...string) (*http.Response, error) {
	u, err := c.url(path, q)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := c.httpClient().Do(req)
	var unknownCA x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	switch {
	case errors.As(err, &unknownCA):
		return nil, fmt.Errorf("fabric: the agent at %s shows a certificate of a CA this client does not trust: pass the cluster's CA with --ca or FABRIC_CA (cluster/ca.pem in an agent's data directory): %w", c.Address, err)
	case errors.As(err, &hostErr):
		return nil, fmt.Errorf("fabric: the agent's certificate does not name the host in %s (it names the node's ID, loopback and its --advertise host): %w", c.Address, err)
	case err != nil:
		return nil, fmt.Errorf("fabric: cannot reach the agent at %s: %w (is `fabric agent` running? set --address or FABRIC_ADDR)", c.Address, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		defer resp.Body.Close()
		var e struct {
			Error string `json:"error"`
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if json.Unmarshal(b, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(b))
		}
		return nil, fmt.Errorf("%w: %s: %s", ErrAPI, resp.Status, e.Error)
	}
	return resp, nil
}

func (c *Client) getJSON(ctx context.Context, path string, out any) error {
	resp, err := c.do(ctx, http.MethodGet, path, nil, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return decodeReply(resp, path, out)
}

// Nodes lists the cluster's nodes as the agent sees them.
func (c *Client) Nodes(ctx context.Context) ([]NodeView, error) {
	var out []NodeView
	return out, c.getJSON(ctx, "/v1/nodes", &out)
}

// TaskQuery selects tasks in the state API; zero fields select all.
type TaskQuery struct {
	Job   string // a job's ID
	State string // pending, running, finished or failed
	Name  string // the function's name
	Limit int    // the newest this many (0: 100; at most 10,000)
}

func (q TaskQuery) values() url.Values {
	v := url.Values{}
	for k, s := range map[string]string{"job": q.Job, "state": q.State, "name": q.Name} {
		if s != "" {
			v.Set(k, s)
		}
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	return v
}

// Tasks lists the tasks the caller's token sees, cluster-wide.
func (c *Client) Tasks(ctx context.Context, q TaskQuery) (TaskList, error) {
	var out TaskList
	return out, c.getQuery(ctx, "/v1/tasks", q.values(), &out)
}

// Timeline returns a job's task spans as a Chrome trace (JSON: an array
// of complete events), for chrome://tracing or ui.perfetto.dev.
func (c *Client) Timeline(ctx context.Context, job string) ([]byte, error) {
	resp, err := c.do(ctx, http.MethodGet, "/v1/jobs/"+url.PathEscape(job)+"/timeline", nil, nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var raw json.RawMessage
	if err := decodeReply(resp, "timeline", &raw); err != nil {
		return nil, err
	}
	return raw, nil
}

// Objects lists the objects the caller's token sees, cluster-wide (of a
// job: job; limit: 0 for 100, at most 10,000).
func (c *Client) Objects(ctx context.Context, job string, limit int) (ObjectList, error) {
	var out ObjectList
	return out, c.getQuery(ctx, "/v1/objects", TaskQuery{Job: job, Limit: limit}.values(), &out)
}

// PlacementGroups lists the placement groups the caller's token sees,
// cluster-wide (of a job: job).
func (c *Client) PlacementGroups(ctx context.Context, job string, limit int) (PlacementGroupList, error) {
	var out PlacementGroupList
	return out, c.getQuery(ctx, "/v1/placement-groups", TaskQuery{Job: job, Limit: limit}.values(), &out)
}

// Workers lists the workers (sandbox instances) the caller's token sees,
// cluster-wide (of a job: job).
func (c *Client) Workers(ctx context.Context, job string, limit int) (WorkerList, error) {
	var out WorkerList
	return out, c.getQuery(ctx, "/v1/workers", TaskQuery{Job: job, Limit: limit}.values(), &out)
}

// ActorQuery selects actors in the state API; zero fields select all.
type ActorQuery struct {
	Job   string // a job's ID
	State string // pending, alive, restarting or dead
	Class string
	Limit int // the newest this many (0: 100; at most 10,000)
}

// Actors lists the actors the caller's token sees, cluster-wide.
func (c *Client) Actors(ctx context.Context, q ActorQuery) (ActorList, error) {
	v := TaskQuery{Job: q.Job, State: q.State, Limit: q.Limit}.values()
	if q.Class != "" {
		v.Set("class", q.Class)
	}
	var out ActorList
	return out, c.getQuery(ctx, "/v1/actors", v, &out)
}

// TaskSummary counts the tasks the caller's token sees by function and
// state, cluster-wide.
func (c *Client) TaskSummary(ctx context.Context, q TaskQuery) (TaskSummary, error) {
	var out TaskSummary
	return out, c.getQuery(ctx, "/v1/tasks/summary", q.values(), &out)
}

// ActorSummary counts the actors the caller's token sees, cluster-wide,
// by class and state.
func (c *Client) ActorSummary(ctx context.Context, q ActorQuery) (ActorSummary, error) {
	var out ActorSummary
	v := TaskQuery{Job: q.Job}.values()
	return out, c.getQuery(ctx, "/v1/actors/summary", v, &out)
}

// ObjectSummary counts the objects the caller's token sees, cluster-wide,
// by job (job: one job's only).
func (c *Client) ObjectSummary(ctx context.Context, job string) (ObjectSummary, error) {
	var out ObjectSummary
	return out, c.getQuery(ctx, "/v1/objects/summary", TaskQuery{Job: job}.values(), &out)
}

// History returns the cluster's last window seconds (0: an hour), step
// by step: resources, object stores, worker processes and the caller's
// tasks.
func (c *Client) History(ctx context.Context, window int) (HistoryView, error) {
	var out HistoryView
	q := url.Values{}
	if window != 0 {
		q.Set("window", strconv.Itoa(window))
	}
	return out, c.getQuery(ctx, "/v1/history", q, &out)
}

func (c *Client) getQuery(ctx context.Context, path string, q url.Values, out any) error {
	resp, err := c.do(ctx, http.MethodGet, path, q, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return decodeReply(resp, path, out)
}

// Status returns the cluster's state as the agent sees it.
func (c *Client) Status(ctx context.Context) (StatusView, error) {
	var out StatusView
	return out, c.getJSON(ctx, "/v1/status", &out)
}

// Submit runs a job on the agent's node, copying its output to out as it
// arrives. When the job failed it returns a *JobError (which matches
// ErrJob), with the driver's exit code when it exited with one.
func (c *Client) Submit(ctx context.Context, wasm []byte, args []string, out io.Writer) error {
	return c.SubmitSplit(ctx, wasm, args, out, out)
}

// SubmitSplit is Submit with the job's stdout and stderr apart. The
// result, an error of any length included, comes in the stream's last
// frame (MediaJobStream).
func (c *Client) SubmitSplit(ctx context.Context, wasm []byte, args []string, stdout, stderr io.Writer) error {
	_, err := c.SubmitWith(ctx, wasm, args, SubmitOptions{}, stdout, stderr)
	return err
}

// SubmitOptions are a submission's options.
type SubmitOptions struct {
	// ID names the job (empty: the agent makes one up).
	ID string
	// MaxRestarts is how many times the job's driver is started again
	// when its node fails.
	MaxRestarts int
	// Submitted, when set, is called with the job's ID once the agent has
	// recorded the job, before its output (SubmitWith).
	Submitted func(id string)
	// Signature is the module's signature (SignModule), which a tenant
	// with signing keys needs.
	Signature []byte
}

// headers are the submission's request headers.
func (o SubmitOptions) headers(more ...string) []string {
	if len(o.Signature) > 0 {
		more = append(more, HeaderModuleSignature, base64.StdEncoding.EncodeToString(o.Signature))
	}
	return more
}

func (o SubmitOptions) query(args []string) url.Values {
	q := url.Values{"arg": args}
	if o.ID != "" {
		q.Set("id", o.ID)
	}
	if o.MaxRestarts > 0 {
		q.Set("max_restarts", fmt.Sprint(o.MaxRestarts))
	}
	return q
}

// SubmitWith submits a job and follows its output to its end, as
// SubmitSplit does, and returns the job's ID. The job runs on whatever
// happens to the client: a ctx that ends stops following it only. A nil
// stdout or stderr discards that stream.
func (c *Client) SubmitWith(ctx context.Context, wasm []byte, args []string, o SubmitOptions, stdout, stderr io.Writer) (string, error) {
	stdout, stderr = cmp.Or[io.Writer](stdout, io.Discard), cmp.Or[io.Writer](stderr, io.Discard)
	resp, err := c.do(ctx, http.MethodPost, "/v1/jobs", o.query(args), bytes.NewReader(wasm), o.headers("Accept", MediaJobStream)...)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	id := resp.Header.Get("Fabric-Job-Id")
	if o.Submitted != nil && id != "" {
		o.Submitted(id)
	}
	ended, err := readJobStream(resp, stdout, stderr)
	if err == nil && !ended {
		err = fmt.Errorf("fabric: the agent ended job %s's stream without its result (did the agent stop?)", id)
	}
	return id, err
}

// SubmitDetached submits a job and returns as soon as it is recorded.
func (c *Client) SubmitDetached(ctx context.Context, wasm []byte, args []string, o SubmitOptions) (JobInfo, error) {
	q := o.query(args)
	q.Set("detach", "1")
	var j JobInfo
	resp, err := c.do(ctx, http.MethodPost, "/v1/jobs", q, bytes.NewReader(wasm), o.headers()...)
	if err != nil {
		return j, err
	}
	defer resp.Body.Close()
	return j, decodeReply(resp, "/v1/jobs", &j)
}

// Jobs lists the cluster's jobs, by submission time.
func (c *Client) Jobs(ctx context.Context) ([]JobInfo, error) {
	var out []JobInfo
	return out, c.getJSON(ctx, "/v1/jobs", &out)
}

// Job returns a job.
func (c *Client) Job(ctx context.Context, id string) (JobInfo, error) {
	var out JobInfo
	return out, c.getJSON(ctx, "/v1/jobs/"+url.PathEscape(id), &out)
}

// StopJob stops a job and returns it as recorded.
func (c *Client) StopJob(ctx context.Context, id string) (JobInfo, error) {
	var out JobInfo
	resp, err := c.do(ctx, http.MethodPost, "/v1/jobs/"+url.PathEscape(id)+"/stop", nil, nil)
	if err != nil {
		return out, err
	}
	defer resp.Body.Close()
	return out, decodeReply(resp, "stop", &out)
}

// DeleteJob removes a job that has ended, and its kept output.
func (c *Client) DeleteJob(ctx context.Context, id string) error {
	resp, err := c.do(ctx, http.MethodDelete, "/v1/jobs/"+url.PathEscape(id), nil, nil)
	if err != nil {
		return err
	}
	return resp.Body.Close()
}

// JobLogs copies a job's kept output to stdout and stderr; with follow,
// it waits for more until the job ends. ended says whether the job had
// ended; when it had and failed, the error is a *JobError.
func (c *Client) JobLogs(ctx context.Context, id string, follow bool, stdout, stderr io.Writer) (ended bool, err error) {
	q := url.Values{}
	if follow {
		q.Set("follow", "1")
	}
	resp, err := c.do(ctx, http.MethodGet, "/v1/jobs/"+url.PathEscape(id)+"/logs", q, nil, "Accept", MediaJobStream)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	return readJobStream(resp, stdout, stderr)
}

func decodeReply(resp *http.Response, what string, out any) error {
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(out); err != nil {
		return fmt.Errorf("%w: malformed reply to %s: %v", ErrAPI, what, err)
	}
	return nil
}

// readJobStream copies a MediaJobStream's output frames; ended is whether
// it ended with a result, and the error is the job's when it failed.
func readJobStream(resp *http.Response, stdout, stderr io.Writer) (ended bool, err error) {
	if ct := resp.Header.Get("Content-Type"); ct != MediaJobStream {
		return false, fmt.Errorf("%w: the agent answered a job with %q, not %s (is it an older version?)", ErrAPI, ct, MediaJobStream)
	}
	var head [5]byte
	for {
		if _, err := io.ReadFull(resp.Body, head[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return false, nil
			}
			return false, fmt.Errorf("fabric: lost the job's output stream: %w", err)
		}
		n := binary.BigEndian.Uint32(head[1:])
		if n > maxFrame {
			return false, fmt.Errorf("%w: a job stream frame of %d bytes", ErrAPI, n)
		}
		body := io.LimitReader(resp.Body, int64(n))
		switch head[0] {
		case FrameStdout, FrameStderr:
			w := stdout
			if head[0] == FrameStderr {
				w = stderr
			}
			if m, err := io.Copy(w, body); err != nil || m != int64(n) {
				return false, fmt.Errorf("fabric: lost the job's output stream: %v", cmp.Or(err, io.ErrUnexpectedEOF))
			}
		case FrameResult:
			var res JobResultView
			b, err := io.ReadAll(body)
			if err != nil || len(b) != int(n) || json.Unmarshal(b, &res) != nil {
				return false, fmt.Errorf("%w: malformed job result", ErrAPI)
			}
			if res.Error == "" {
				return true, nil
			}
			je := &JobError{Message: "fabric: job failed: " + res.Error}
			if res.ExitCode > 0 && res.ExitCode < 256 {
				je.ExitCode = res.ExitCode
			}
			return true, je
		default:
			return false, fmt.Errorf("%w: a job stream frame of unknown kind %d", ErrAPI, head[0])
		}
	}
}

// Upload stores a module on the cluster (by its digest) and returns its
// record. name is a label to know it by (may be empty).
func (c *Client) Upload(ctx context.Context, module io.Reader, name string) (ModuleInfo, error) {
	return c.UploadSigned(ctx, module, name, nil)
}

// UploadSigned is Upload with the module's signature (SignModule), which
// a tenant with signing keys needs.
func (c *Client) UploadSigned(ctx context.Context, module io.Reader, name string, sig []byte) (ModuleInfo, error) {
	var m ModuleInfo
	q := url.Values{}
	if name != "" {
		q.Set("name", name)
	}
	resp, err := c.do(ctx, http.MethodPost, "/v1/modules", q, module, SubmitOptions{Signature: sig}.headers()...)
	if err != nil {
		return m, err
	}
	defer resp.Body.Close()
	return m, decodeReply(resp, "upload", &m)
}

// Modules lists the uploaded modules.
func (c *Client) Modules(ctx context.Context) ([]ModuleInfo, error) {
	var out []ModuleInfo
	return out, c.getJSON(ctx, "/v1/modules", &out)
}

// DeleteModule removes an uploaded module's record (and the answering
// agent's copy).
func (c *Client) DeleteModule(ctx context.Context, digest string) error {
	resp, err := c.do(ctx, http.MethodDelete, "/v1/modules/"+url.PathEscape(digest), nil, nil)
	if err != nil {
		return err
	}
	return resp.Body.Close()
}

// Call runs one task function of an uploaded module with args (a JSON
// array) and returns its value as JSON.
func (c *Client) Call(ctx context.Context, digest, function, args string) (CallResult, error) {
	var out CallResult
	if args == "" {
		args = "[]"
	}
	body, err := json.Marshal(map[string]any{"function": function, "args": json.RawMessage(args)})
	if err != nil {
		return out, fmt.Errorf("%w: --args is not JSON: %v", ErrBadRequest, err)
	}
	resp, err := c.do(ctx, http.MethodPost, "/v1/modules/"+url.PathEscape(digest)+"/call", nil, bytes.NewReader(body), "Content-Type", "application/json")
	if err != nil {
		return out, err
	}
	defer resp.Body.Close()
	return out, decodeReply(resp, "call", &out)
}

// CreateTenant records a tenant.
func (c *Client) CreateTenant(ctx context.Context, name string) (TenantInfo, error) {
	return c.CreateTenantWith(ctx, TenantInfo{Name: name})
}

// CreateTenantWith records a tenant with its quota.
func (c *Client) CreateTenantWith(ctx context.Context, t TenantInfo) (TenantInfo, error) {
	var out TenantInfo
	return out, c.postJSON(ctx, "/v1/tenants", t, "create tenant", &out)
}

// SetQuota replaces a tenant's quota (what it holds past a lower one
// stays).
func (c *Client) SetQuota(ctx context.Context, t TenantInfo) (TenantInfo, error) {
	var out TenantInfo
	return out, c.postJSON(ctx, "/v1/tenants/"+url.PathEscape(t.Name)+"/quota", t, "set quota", &out)
}

// Tenants lists the tenants.
func (c *Client) Tenants(ctx context.Context) ([]TenantInfo, error) {
	var out []TenantInfo
	return out, c.getJSON(ctx, "/v1/tenants", &out)
}

// DeleteTenant deletes a tenant and its tokens.
func (c *Client) DeleteTenant(ctx context.Context, name string) error {
	resp, err := c.do(ctx, http.MethodDelete, "/v1/tenants/"+url.PathEscape(name), nil, nil)
	if err != nil {
		return err
	}
	return resp.Body.Close()
}

// CreateToken makes a token; its secret is in the answer only.
func (c *Client) CreateToken(ctx context.Context, req TokenRequest) (NewToken, error) {
	var out NewToken
	return out, c.postJSON(ctx, "/v1/tokens", req, "create token", &out)
}

// Tokens lists the tokens of a tenant (all: ""), without their secrets.
func (c *Client) Tokens(ctx context.Context, tenant string) ([]TokenInfo, error) {
	var out []TokenInfo
	var q url.Values
	if tenant != "" {
		q = url.Values{"tenant": {tenant}}
	}
	resp, err := c.do(ctx, http.MethodGet, "/v1/tokens", q, nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return out, decodeReply(resp, "/v1/tokens", &out)
}

// RevokeToken revokes a token on every agent at once.
func (c *Client) RevokeToken(ctx context.Context, id string) error {
	resp, err := c.do(ctx, http.MethodDelete, "/v1/tokens/"+url.PathEscape(id), nil, nil)
	if err != nil {
		return err
	}
	return resp.Body.Close()
}

// postJSON posts v as JSON and decodes the answer into out.
func (c *Client) postJSON(ctx context.Context, path string, v any, what string, out any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return err
	}
	resp, err := c.do(ctx, http.MethodPost, path, nil, bytes.NewReader(body), "Content-Type", "application/json")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return decodeReply(resp, what, out)
}

// Deploy creates or replaces a Serve deployment (spec.Name names it).
func (c *Client) Deploy(ctx context.Context, spec DeploymentSpec) (DeploymentInfo, error) {
	var out DeploymentInfo
	body, err := json.Marshal(spec)
	if err != nil {
		return out, err
	}
	path := "/v1/serve/deployments/" + url.PathEscape(spec.Name)
	resp, err := c.do(ctx, http.MethodPut, path, nil, bytes.NewReader(body), "Content-Type", "application/json")
	if err != nil {
		return out, err
	}
	defer resp.Body.Close()
	return out, decodeReply(resp, path, &out)
}

// Deployments lists the Serve deployments the caller's token sees, with
// the replicas the nodes run.
func (c *Client) Deployments(ctx context.Context) ([]DeploymentInfo, error) {
	var out []DeploymentInfo
	return out, c.getJSON(ctx, "/v1/serve/deployments", &out)
}

// DeploymentLogs returns the latest output of a deployment's replicas,
// by node.
func (c *Client) DeploymentLogs(ctx context.Context, name string) (DeploymentLogs, error) {
	var out DeploymentLogs
	return out, c.getJSON(ctx, "/v1/serve/deployments/"+url.PathEscape(name)+"/logs", &out)
}

// DeleteDeployment removes a Serve deployment; its replicas stop.
func (c *Client) DeleteDeployment(ctx context.Context, name string) error {
	resp, err := c.do(ctx, http.MethodDelete, "/v1/serve/deployments/"+url.PathEscape(name), nil, nil)
	if err != nil {
		return err
	}
	return resp.Body.Close()
}

// Whoami says who the client's token is.
func (c *Client) Whoami(ctx context.Context) (Identity, error) {
	var out Identity
	return out, c.getJSON(ctx, "/v1/whoami", &out)
}

// CreateJoinToken makes a join token; its secret is in the answer only.
func (c *Client) CreateJoinToken(ctx context.Context, req JoinTokenRequest) (NewJoinToken, error) {
	var out NewJoinToken
	return out, c.postJSON(ctx, "/v1/join-tokens", req, "create join token", &out)
}

// JoinTokens lists the join tokens, without their secrets.
func (c *Client) JoinTokens(ctx context.Context) ([]JoinTokenInfo, error) {
	var out []JoinTokenInfo
	return out, c.getJSON(ctx, "/v1/join-tokens", &out)
}

// DeleteJoinToken deletes a join token: it admits no one after.
func (c *Client) DeleteJoinToken(ctx context.Context, id string) error {
	resp, err := c.do(ctx, http.MethodDelete, "/v1/join-tokens/"+url.PathEscape(id), nil, nil)
	if err != nil {
		return err
	}
	return resp.Body.Close()
}

// AdmittedNodes lists the nodes the cluster admitted, revoked ones too.
func (c *Client) AdmittedNodes(ctx context.Context) ([]NodeRecordInfo, error) {
	var out []NodeRecordInfo
	return out, c.getJSON(ctx, "/v1/admitted", &out)
}

// RevokeNode revokes a node: no member talks to it again, and its
// certificate is not renewed.
func (c *Client) RevokeNode(ctx context.Context, id string) error {
	resp, err := c.do(ctx, http.MethodPost, "/v1/nodes/"+url.PathEscape(id)+"/revoke", nil, nil)
	if err != nil {
		return err
	}
	return resp.Body.Close()
}

// RotateGossipKey moves the cluster to a new gossip key.
func (c *Client) RotateGossipKey(ctx context.Context) (GossipKeyRotation, error) {
	var out GossipKeyRotation
	return out, c.postJSON(ctx, "/v1/gossip-key/rotate", struct{}{}, "rotate the gossip key", &out)
}

// AddTenantKey gives a tenant a module signing key (an ed25519 public
// key): from then on it runs only modules signed with one of its keys.
func (c *Client) AddTenantKey(ctx context.Context, tenant string, key ed25519.PublicKey, note string) (TenantKeyInfo, error) {
	var out TenantKeyInfo
	err := c.postJSON(ctx, "/v1/tenants/"+url.PathEscape(tenant)+"/keys", TenantKeyInfo{Key: base64.StdEncoding.EncodeToString(key), Note: note}, "add key", &out)
	return out, err
}

// TenantKeys lists a tenant's module signing keys.
func (c *Client) TenantKeys(ctx context.Context, tenant string) ([]TenantKeyInfo, error) {
	var out []TenantKeyInfo
	return out, c.getJSON(ctx, "/v1/tenants/"+url.PathEscape(tenant)+"/keys", &out)
}

// RemoveTenantKey removes a tenant's signing key; the modules only it
// signed no longer run for the tenant.
func (c *Client) RemoveTenantKey(ctx context.Context, tenant, id string) error {
	resp, err := c.do(ctx, http.MethodDelete, "/v1/tenants/"+url.PathEscape(tenant)+"/keys/"+url.PathEscape(id), nil, nil)
	if err != nil {
		return err
	}
	return resp.Body.Close()
}

// SignModule signs a module with a tenant's private key: what
// SubmitOptions.Signature and UploadSigned take.
func SignModule(key ed25519.PrivateKey, module []byte) []byte {
	return ed25519.Sign(key, controlstate.ModuleSigningMessage(ModuleDigest(module)))
}

// ModuleDigest is a module's SHA-256 digest in hex: what names it.
func ModuleDigest(module []byte) string {
	h := sha256.Sum256(module)
	return hex.EncodeToString(h[:])
}

// SigningKeyID names a module signing key as tenants' key lists do.
func SigningKeyID(key ed25519.PublicKey) string { return controlstate.KeyID(key) }
