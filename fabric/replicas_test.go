//go:build linux

package fabric

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wasmfabric/fabric/internal/abi"
)

// TestReplicaSet: a node hosts a deployment's replicas as actors of a
// pseudo-peer's job; requests are spread over them, answered with the
// guest's responses, and its errors come back as errors.
func TestReplicaSet(t *testing.T) {
	a := startJobsAgent(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	mod, err := a.Client(a.APIToken()).Upload(ctx, bytes.NewReader(guestBytes(t, "internal/testguests/serve")), "serve")
	if err != nil {
		t.Fatal(err)
	}
	echo, err := a.newReplicaSet(ctx, "", mod.Digest, "Echo", abi.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer echo.close()
	for range 2 {
		if err := echo.add(); err != nil {
			t.Fatal(err)
		}
	}
	replicas := map[string]int{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Go(func() {
			resp, err := echo.call(ctx, abi.ServeRequest{Method: "POST", Path: "/echo/x", Query: fmt.Sprint("i=", i), Route: "/echo",
				Header: map[string][]string{"X-Test": {"yes"}}, Body: []byte("hello")}, nil)
			if err != nil {
				t.Errorf("request %d: %v", i, err)
				return
			}
			m := regexp.MustCompile(`^POST /echo/x\?i=\d+ route=/echo replica=(\d+) served=\d+ body=hello$`).FindSubmatch(resp.Body)
			if resp.Status != 200 || m == nil || resp.Header["X-Echo-Header"][0] != "yes" {
				t.Errorf("request %d: %d %q %v", i, resp.Status, resp.Body, resp.Header)
				return
			}
			mu.Lock()
			replicas[string(m[1])]++
			mu.Unlock()
		})
	}
	wg.Wait()
	if len(replicas) != 2 {
		t.Fatalf("the requests went to replicas %v, want both of two", replicas)
	}

	model, err := a.newReplicaSet(ctx, "", mod.Digest, "Model", abi.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer model.close()
	if _, err := model.call(ctx, abi.ServeRequest{Method: "POST"}, nil); !errors.Is(err, ErrNoReplica) {
		t.Fatalf("a call with no replica: %v", err)
	}
	if err := model.add(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		body, want string
		status     int
	}{
		{`{"input": 42}`, `{"prediction":84}`, 0},
		{`{"inp`, `want a JSON body {"input": N}`, http.StatusBadRequest},
	} {
		resp, err := model.call(ctx, abi.ServeRequest{Method: "POST", Path: "/", Body: []byte(c.body)}, nil)
		if err != nil || resp.Status != c.status || string(resp.Body) != c.want {
			t.Fatalf("Model %s: %d %q, %v", c.body, resp.Status, resp.Body, err)
		}
	}
	if model.ready() != 1 || model.alive() != 1 {
		t.Fatalf("after add: %d ready of %d alive", model.ready(), model.alive())
	}
	// A constructor that fails: add says so, and nothing is left alive.
	nope, err := a.newReplicaSet(ctx, "", mod.Digest, "Nope", abi.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer nope.close()
	if err := nope.add(); err == nil || !strings.Contains(err.Error(), "constructor failed") || nope.alive() != 0 {
		t.Fatalf("a replica whose constructor fails: %v, %d alive", err, nope.alive())
	}
	slow, err := a.newReplicaSet(ctx, "", mod.Digest, "Slow", abi.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := slow.add(); err != nil {
		t.Fatal(err)
	}
	var ce *CallError
	if _, err := slow.call(ctx, abi.ServeRequest{Query: "fail=1"}, nil); !errors.As(err, &ce) || ce.Message == "" {
		t.Fatalf("a handler's error: %v", err)
	}
	slow.close()
	if _, err := slow.call(ctx, abi.ServeRequest{}, nil); err == nil {
		t.Fatal("a call after close answered")
	}
}
