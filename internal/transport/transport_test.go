package transport

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wasmfabric/fabric/internal/secrets"
)

const (
	typeEcho  Type = 1
	typeSlow  Type = 2
	typePanic Type = 3
	typePeer  Type = 4
)

func handler(ctx context.Context, peer string, t Type, body []byte) (Type, []byte, error) {
	switch t {
	case typeEcho:
		return t, body, nil
	case typeSlow:
		select {
		case <-time.After(5 * time.Second):
		case <-ctx.Done():
		}
		return t, nil, nil
	case typePanic:
		panic("boom")
	case typePeer:
		return t, []byte(peer), nil
	}
	return 0, nil, errors.New("unknown request")
}

func endpoint(t *testing.T, c *secrets.Cluster, id string) *Endpoint {
	t.Helper()
	cert, err := c.NodeCertificate(id, []string{"127.0.0.1"}, false, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	e, err := Listen(Config{Addr: "127.0.0.1:0", TLS: c.TLSConfig(cert, secrets.TLSOptions{}), Handler: handler, MaxMessage: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestCalls(t *testing.T) {
	before := runtime.NumGoroutine()
	c, err := secrets.Create()
	if err != nil {
		t.Fatal(err)
	}
	a, b := endpoint(t, c, "node-a"), endpoint(t, c, "node-b")
	ctx := context.Background()

	// Many concurrent calls share one connection, a stream each.
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			msg := bytes.Repeat([]byte{byte(i)}, 1000*i)
			rt, rb, err := a.Call(ctx, b.Addr(), typeEcho, msg)
			if err != nil || rt != typeEcho || !bytes.Equal(rb, msg) {
				errs <- errors.Join(err, errors.New("echo mismatch"))
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := len(a.conns); n != 1 {
		t.Fatalf("%d connections to one peer, want 1", n)
	}
	if _, rb, err := a.Call(ctx, b.Addr(), typePeer, nil); err != nil || string(rb) != "node-a" {
		t.Fatalf("peer name seen by b: %q %v", rb, err)
	}

	// Errors: the handler's, a panic, a deadline, oversized messages.
	if _, _, err := a.Call(ctx, b.Addr(), 99, nil); !errors.Is(err, ErrRemote) || !strings.Contains(err.Error(), "unknown request") {
		t.Fatalf("handler error: %v", err)
	}
	if _, _, err := a.Call(ctx, b.Addr(), typePanic, nil); !errors.Is(err, ErrRemote) || !strings.Contains(err.Error(), "panicked") {
		t.Fatalf("panic: %v", err)
	}
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	start := time.Now()
	_, _, err = a.Call(short, b.Addr(), typeSlow, nil)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 2*time.Second {
		t.Fatalf("deadline: %v after %v", err, time.Since(start))
	}
	if _, _, err := a.Call(ctx, b.Addr(), typeEcho, make([]byte, 2<<20)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized request: %v", err)
	}
	// The peer refuses what exceeds its own limit, and goes on serving.
	big, err := Listen(Config{Addr: "127.0.0.1:0", TLS: a.tls, Handler: handler, MaxMessage: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := big.Call(ctx, b.Addr(), typeEcho, make([]byte, 2<<20)); !errors.Is(err, ErrRemote) || !strings.Contains(err.Error(), "too large") {
		t.Fatalf("request above the peer's limit: %v", err)
	}
	if _, rb, err := big.Call(ctx, b.Addr(), typeEcho, []byte("still")); err != nil || string(rb) != "still" {
		t.Fatalf("after an oversized request: %q %v", rb, err)
	}
	for _, e := range []*Endpoint{a, b, big} {
		if err := e.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := a.Call(ctx, b.Addr(), typeEcho, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("call after close: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before+2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before+2 {
		t.Fatalf("%d goroutines after Close, %d before", n, before)
	}
}

// TestStrangerCannotConnect: a node whose certificate another cluster's CA
// signed can neither call a member nor be called by one.
func TestStrangerCannotConnect(t *testing.T) {
	c, _ := secrets.Create()
	other, _ := secrets.Create()
	member, stranger := endpoint(t, c, "member"), endpoint(t, other, "stranger")
	defer member.Close()
	defer stranger.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, _, err := stranger.Call(ctx, member.Addr(), typeEcho, []byte("hi")); err == nil {
		t.Fatal("a stranger's call was answered")
	}
	if _, _, err := member.Call(ctx, stranger.Addr(), typeEcho, []byte("hi")); err == nil {
		t.Fatal("a member trusted a stranger")
	}
	// Without any certificate.
	noCert := c.TLSConfig(tls.Certificate{}, secrets.TLSOptions{})
	noCert.Certificates = nil
	anon, err := Listen(Config{Addr: "127.0.0.1:0", TLS: noCert, Handler: handler})
	if err != nil {
		t.Fatal(err)
	}
	defer anon.Close()
	if _, _, err := anon.Call(ctx, member.Addr(), typeEcho, []byte("hi")); err == nil {
		t.Fatal("a call without a certificate was answered")
	}
}

func TestFrames(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteFrame(&buf, 7, []byte("body")); err != nil {
		t.Fatal(err)
	}
	good := buf.Bytes()
	cases := []struct {
		name string
		in   []byte
		err  error
	}{
		{"good", good, nil},
		{"other version", append([]byte{2}, good[1:]...), ErrVersion},
		{"too large", []byte{Version, 1, 0xff, 0xff, 0xff, 0xff}, ErrTooLarge},
		{"truncated body", good[:len(good)-1], errShortMessage},
		{"truncated header", good[:3], errShortMessage},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			typ, body, err := ReadFrame(bytes.NewReader(c.in), 1<<10)
			if !errors.Is(err, c.err) {
				t.Fatalf("err %v, want %v", err, c.err)
			}
			if err == nil && (typ != 7 || string(body) != "body") {
				t.Fatalf("read %d %q", typ, body)
			}
		})
	}
}

// FuzzReadFrame feeds arbitrary bytes to the frame reader: it never
// panics, never allocates past its limit, and what it accepts re-encodes
// to the same bytes.
func FuzzReadFrame(f *testing.F) {
	var buf bytes.Buffer
	_ = WriteFrame(&buf, 1, []byte("x"))
	f.Add(buf.Bytes())
	f.Add([]byte{Version, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, in []byte) {
		typ, body, err := ReadFrame(bytes.NewReader(in), 1<<16)
		if err != nil {
			return
		}
		var out bytes.Buffer
		if err := WriteFrame(&out, typ, body); err != nil || !bytes.HasPrefix(in, out.Bytes()) {
			t.Fatalf("frame %x re-encodes as %x", in, out.Bytes())
		}
	})
}

// TestGarbageOnTheWire sends malformed frames on a member's connection:
// each gets an error answer, and the endpoint goes on serving.
func TestGarbageOnTheWire(t *testing.T) {
	c, _ := secrets.Create()
	a, b := endpoint(t, c, "node-a"), endpoint(t, c, "node-b")
	defer a.Close()
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := a.conn(ctx, b.Addr(), classControl)
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string][]byte{
		"other version":     {9, 1, 0, 0, 0, 0},
		"huge length":       {Version, 1, 0x7f, 0xff, 0xff, 0xff},
		"truncated":         {Version, 1, 0, 0, 0, 9, 1, 2},
		"pull of nonsense":  {Version, byte(TypePull), 0, 0, 0, 3, 1, 2, 3},
		"short header only": {Version},
	}
	for name, garbage := range cases {
		s, err := conn.OpenStreamSync(ctx)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = s.Write(garbage)
		_ = s.Close()
		_ = s.SetReadDeadline(time.Now().Add(5 * time.Second))
		typ, body, err := ReadFrame(s, 1<<20)
		if err == nil && typ != TypeError {
			t.Errorf("%s: answered with type %d", name, typ)
		}
		t.Logf("%s: %d %q %v", name, typ, body, err)
	}
	if _, rb, err := a.Call(ctx, b.Addr(), typeEcho, []byte("still serving")); err != nil || string(rb) != "still serving" {
		t.Fatalf("after garbage: %q %v", rb, err)
	}
}

// TestStreamsAreReleased makes calls whose end of stream arrives in a
// packet of its own, after the request: the server never reads that end,
// and each such stream once stayed counted against the peer's limit of
// open streams, so that calls blocked for ever once it was reached.
func TestStreamsAreReleased(t *testing.T) {
	c, _ := secrets.Create()
	a := endpoint(t, c, "node-a")
	cert, err := c.NodeCertificate("node-b", []string{"127.0.0.1"}, false, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Listen(Config{Addr: "127.0.0.1:0", TLS: c.TLSConfig(cert, secrets.TLSOptions{}), Handler: handler, MaxStreams: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := a.conn(ctx, b.Addr(), classControl)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 { // five times the limit
		s, err := conn.OpenStreamSync(ctx)
		if err != nil {
			t.Fatalf("stream %d: %v (streams leaked)", i, err)
		}
		if err := WriteFrame(s, typeEcho, []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
		rt, rb, err := ReadFrame(s, 1<<20) // the answer comes before our end of stream
		if err != nil || rt != typeEcho || len(rb) != 1 || rb[0] != byte(i) {
			t.Fatalf("call %d: %v %v %v", i, rt, rb, err)
		}
		_ = s.Close() // the end of stream, in a packet of its own
		if _, err := s.Read(make([]byte, 1)); err != io.EOF {
			t.Fatalf("after the answer: %v, want EOF", err)
		}
	}
}
