package transport

import (
	"bufio"
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/wasmfabric/fabric/internal/secrets"
)

// TestOpenStream: a stream opened with OpenStream reaches the handler of
// its type with its first body and the peer's name, carries bytes both
// ways for as long as both keep it, and ends when the endpoint closes.
func TestOpenStream(t *testing.T) {
	c, err := secrets.Create()
	if err != nil {
		t.Fatal(err)
	}
	const echo Type = 40
	got := make(chan string, 1)
	mk := func(id string, streams map[Type]StreamHandler) *Endpoint {
		cert, err := c.NodeCertificate(id, []string{"127.0.0.1"}, false, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		e, err := Listen(Config{Addr: "127.0.0.1:0", TLS: c.TLSConfig(cert, secrets.TLSOptions{}), Streams: streams})
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	srv := mk("server", map[Type]StreamHandler{echo: func(peer string, body []byte, conn net.Conn) {
		defer conn.Close()
		got <- peer + ":" + string(body)
		r := bufio.NewReader(conn)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			if _, err := io.WriteString(conn, strings.ToUpper(line)); err != nil {
				return
			}
		}
	}})
	cl := mk("client", nil)
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := cl.OpenStream(ctx, srv.Addr(), echo, []byte("hello"))
	if err != nil {
		t.Fatal(err)
	}
	if s := <-got; s != "client:hello" {
		t.Fatalf("handler got %q", s)
	}
	r := bufio.NewReader(conn)
	for _, w := range []string{"one\n", "two\n"} {
		time.Sleep(50 * time.Millisecond) // a stream outlives a request's lifetime
		if _, err := io.WriteString(conn, w); err != nil {
			t.Fatal(err)
		}
		line, err := r.ReadString('\n')
		if err != nil || line != strings.ToUpper(w) {
			t.Fatalf("echo of %q: %q, %v", w, line, err)
		}
	}
	// A type with no handler is refused as a request is.
	if _, _, err := cl.Call(ctx, srv.Addr(), 41, nil); err == nil {
		t.Fatal("a call of a type without a handler succeeded")
	}
	// Closing the server's endpoint ends the stream on the client's side.
	done := make(chan error, 1)
	go func() {
		_, err := r.ReadString('\n')
		done <- err
	}()
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("read after the server closed succeeded")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the stream outlived its server's endpoint")
	}
	_ = conn.Close()
}
