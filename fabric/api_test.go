//go:build linux

package fabric

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wasmfabric/fabric/internal/testrig"
)

// TestJobErrorOfAnyLength: a job's error of 20 KB reaches the client
// whole, with its output on the right streams, in the framed job stream;
// a plain client (curl) gets it cut to fit the trailer, saying how to ask
// for the whole. Before, Go's client failed such a response with "http:
// suspiciously long trailer after chunked body".
func TestJobErrorOfAnyLength(t *testing.T) {
	a := startAgent(t, "")
	defer a.Close()
	wasm, err := os.ReadFile(testrig.Guest(t, "internal/testguests/features"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl := a.Client(a.APIToken())
	var stdout, stderr bytes.Buffer
	err = cl.SubmitSplit(ctx, wasm, []string{"long_error"}, &stdout, &stderr)
	var je *JobError
	if !errors.As(err, &je) || !strings.Contains(je.Message, "a long error begins") || !strings.HasSuffix(je.Message, "and ends here") || len(je.Message) < 20000 {
		t.Fatalf("error of %d bytes: %.200q", len(err.Error()), err)
	}
	if err := cl.SubmitSplit(ctx, wasm, []string{"log"}, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stdout.String(), "ok: log") || !strings.Contains(stderr.String(), "INFO: hello from a task") || strings.Contains(stdout.String(), "INFO: hello") {
		t.Errorf("streams apart:\nstdout %q\nstderr %q", stdout.String(), stderr.String())
	}

	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+a.HTTPAddr()+"/v1/jobs?arg=long_error", bytes.NewReader(wasm))
	req.Header.Set("Authorization", "Bearer "+a.APIToken())
	resp, err := a.Client("").httpClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		t.Fatalf("plain stream: %v", err)
	}
	msg, err := strconv.Unquote(resp.Trailer.Get(TrailerJobError))
	if err != nil || !strings.Contains(msg, "a long error begins") || !strings.Contains(msg, "more bytes; ask with Accept: "+MediaJobStream) {
		t.Fatalf("plain trailer: %v %.300q", err, msg)
	}
}

// TestStalledUpload: a client that sends part of a module and then
// nothing is answered 408 once the upload has been idle for UploadIdle,
// and the agent keeps no temporary file of it.
func TestStalledUpload(t *testing.T) {
	a, err := StartAgent(AgentConfig{DataDir: t.TempDir(), GossipAddr: "127.0.0.1:0", QUICAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		UploadIdle: 300 * time.Millisecond,
		Node:       Config{NumCPUs: 1, WorkerCommand: []string{testrig.Fabric(t), "worker"}, Stdout: io.Discard, Stderr: io.Discard}})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	c, err := tls.Dial("tcp", a.HTTPAddr(), &tls.Config{RootCAs: a.cluster.Pool()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	fmt.Fprintf(c, "POST /v1/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Length: 100000\r\n\r\n\x00asm", a.APIToken())
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusRequestTimeout || !strings.Contains(string(b), "sent nothing for 300ms") {
		t.Fatalf("stalled upload: %s %s", resp.Status, b)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("answered after %s", took)
	}
	left, _ := filepath.Glob(filepath.Join(a.Node().dataDir, "modules", "upload.*"))
	if len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
}
