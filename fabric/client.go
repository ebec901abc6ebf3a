package fabric

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// Client talks to an agent's HTTP API.
type Client struct {
	// Address is the agent's API, for example http://127.0.0.1:7948.
	Address string
	// Token is the cluster's API token.
	Token string
	// HTTP is the client to use (nil: http.DefaultClient).
	HTTP *http.Client
}

// ErrAPI is wrapped by errors the agent's API returned.
var ErrAPI = errors.New("fabric: agent API")

// ErrJob is wrapped by the error of a job that ran and failed.
var ErrJob = errors.New("fabric: job failed")

func (c *Client) url(path string, q url.Values) (string, error) {
	base := strings.TrimRight(c.Address, "/")
	if !strings.Contains(base, "://") {
		base = "http://" + base
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
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fabric: cannot reach the agent at %s: %w (is `fabric agent` running? set --address or FABRIC_ADDR)", c.Address, err)
	}
	if resp.StatusCode != http.StatusOK {
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
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(out); err != nil {
		return fmt.Errorf("%w: malformed reply to %s: %v", ErrAPI, path, err)
	}
	return nil
}

// Nodes lists the cluster's nodes as the agent sees them.
func (c *Client) Nodes(ctx context.Context) ([]NodeView, error) {
	var out []NodeView
	return out, c.getJSON(ctx, "/v1/nodes", &out)
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
	resp, err := c.do(ctx, http.MethodPost, "/v1/jobs", url.Values{"arg": args}, bytes.NewReader(wasm), "Accept", MediaJobStream)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != MediaJobStream {
		return fmt.Errorf("%w: the agent answered a job with %q, not %s (is it an older version?)", ErrAPI, ct, MediaJobStream)
	}
	var head [5]byte
	for {
		if _, err := io.ReadFull(resp.Body, head[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return fmt.Errorf("fabric: the agent ended the job's stream without its result (did the agent stop?)")
			}
			return fmt.Errorf("fabric: lost the job's output stream: %w", err)
		}
		n := binary.BigEndian.Uint32(head[1:])
		if n > maxFrame {
			return fmt.Errorf("%w: a job stream frame of %d bytes", ErrAPI, n)
		}
		body := io.LimitReader(resp.Body, int64(n))
		switch head[0] {
		case FrameStdout, FrameStderr:
			w := stdout
			if head[0] == FrameStderr {
				w = stderr
			}
			if m, err := io.Copy(w, body); err != nil || m != int64(n) {
				return fmt.Errorf("fabric: lost the job's output stream: %v", cmp.Or(err, io.ErrUnexpectedEOF))
			}
		case FrameResult:
			var res JobResultView
			b, err := io.ReadAll(body)
			if err != nil || len(b) != int(n) || json.Unmarshal(b, &res) != nil {
				return fmt.Errorf("%w: malformed job result", ErrAPI)
			}
			if res.Error == "" {
				return nil
			}
			je := &JobError{Message: "fabric: job failed: " + res.Error}
			if res.ExitCode > 0 && res.ExitCode < 256 {
				je.ExitCode = res.ExitCode
			}
			return je
		default:
			return fmt.Errorf("%w: a job stream frame of unknown kind %d", ErrAPI, head[0])
		}
	}
}
