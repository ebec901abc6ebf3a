package transport

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/quic-go/quic-go/testutils/simnet"

	"github.com/wasmfabric/fabric/internal/secrets"
)

// lossyRouter is a simulated network that drops packets at random (from a
// seeded generator) and every packet to or from a node that is cut off.
type lossyRouter struct {
	simnet.PerfectRouter
	mu   sync.Mutex
	rng  *rand.Rand
	loss float64
	cut  map[string]bool
	sent int
	lost int
}

func (r *lossyRouter) SendPacket(p simnet.Packet) error {
	r.mu.Lock()
	r.sent++
	drop := r.cut[p.From.String()] || r.cut[p.To.String()] || r.rng.Float64() < r.loss
	if drop {
		r.lost++
	}
	r.mu.Unlock()
	if drop {
		return nil
	}
	return r.PerfectRouter.SendPacket(p)
}

func (r *lossyRouter) setCut(addr string, cut bool) {
	r.mu.Lock()
	r.cut[addr] = cut
	r.mu.Unlock()
}

// simEndpoints starts two endpoints on a simulated network with the given
// round trip; b serves src.
func simEndpoints(t *testing.T, router *lossyRouter, rtt time.Duration, src ObjectSource) (a, b *Endpoint) {
	t.Helper()
	c, err := secrets.Create()
	if err != nil {
		t.Fatal(err)
	}
	n := &simnet.Simnet{Router: router}
	settings := simnet.NodeBiDiLinkSettings{Latency: rtt / 2}
	mk := func(id string, ip string, objs ObjectSource) *Endpoint {
		pc := n.NewEndpoint(&net.UDPAddr{IP: net.ParseIP(ip), Port: 9000}, settings)
		cert, err := c.NodeCertificate(id, []string{ip}, false, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		e, err := Listen(Config{PacketConn: pc, TLS: c.TLSConfig(cert, secrets.TLSOptions{}), Handler: handler, Objects: objs, MaxMessage: 1 << 20})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = e.Close()
			_ = pc.Close()
		})
		return e
	}
	a, b = mk("node-a", "1.0.0.1", nil), mk("node-b", "1.0.0.2", src)
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	return a, b
}

// TestSimulatedLossyLink runs calls and a pull over a simulated link with a
// 60 ms round trip and 3% loss, in a synctest bubble (simulated time, so
// the test takes no real time waiting): every call is answered, the
// object arrives whole, and calls made while the pull runs go on a
// connection of their own.
func TestSimulatedLossyLink(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		router := &lossyRouter{rng: rand.New(rand.NewPCG(1, 2)), loss: 0.03, cut: map[string]bool{}}
		data := make([]byte, 8<<20)
		_, _ = rand.NewChaCha8([32]byte{3, 4}).Read(data)
		src := &memSource{objs: map[[IDSize]byte][]byte{{1}: data}}
		a, b := simEndpoints(t, router, 60*time.Millisecond, src)
		ctx := context.Background()

		for i := range 20 {
			msg := []byte{byte(i)}
			if rt, rb, err := a.Call(ctx, b.Addr(), typeEcho, msg); err != nil || rt != typeEcho || !bytes.Equal(rb, msg) {
				t.Fatalf("call %d: %v %v %v", i, rt, rb, err)
			}
		}
		var got []byte
		pulled := make(chan error, 1)
		go func() {
			_, err := a.Pull(ctx, b.Addr(), [IDSize]byte{1}, func(size int64) ([]byte, error) {
				got = make([]byte, size)
				return got, nil
			}, PullOptions{})
			pulled <- err
		}()
		for i := range 10 {
			if _, _, err := a.Call(ctx, b.Addr(), typeEcho, []byte{byte(i)}); err != nil {
				t.Fatalf("call during the pull: %v", err)
			}
		}
		if err := <-pulled; err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, data) {
			t.Fatal("the pulled object differs")
		}
		a.mu.Lock()
		control, bulk := a.conns[connKey{b.Addr(), classControl}], a.conns[connKey{b.Addr(), classBulk}]
		a.mu.Unlock()
		if control == nil || bulk == nil || control == bulk {
			t.Fatalf("connections to b: control %p, bulk %p; want two", control, bulk)
		}
		router.mu.Lock()
		sent, lost := router.sent, router.lost
		router.mu.Unlock()
		if lost == 0 {
			t.Fatalf("no packet of %d was lost: the link is not lossy", sent)
		}
		t.Logf("%d packets, %d lost", sent, lost)
	})
}

// TestSimulatedNodeLoss cuts a node off a simulated network: calls to it
// fail at their deadline, and once the node is back, calls on the same
// endpoint succeed again.
func TestSimulatedNodeLoss(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		router := &lossyRouter{rng: rand.New(rand.NewPCG(5, 6)), cut: map[string]bool{}}
		a, b := simEndpoints(t, router, 20*time.Millisecond, nil)
		if _, _, err := a.Call(context.Background(), b.Addr(), typeEcho, []byte("hi")); err != nil {
			t.Fatal(err)
		}
		router.setCut(b.Addr(), true)
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		start := time.Now()
		_, _, err := a.Call(ctx, b.Addr(), typeEcho, []byte("anyone?"))
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("call to a cut-off node: %v, want a deadline error", err)
		}
		if d := time.Since(start); d < 3*time.Second {
			t.Fatalf("the call failed after %s, before its deadline", d)
		}
		router.setCut(b.Addr(), false)
		if _, _, err := a.Call(context.Background(), b.Addr(), typeEcho, []byte("back")); err != nil {
			t.Fatalf("call once the node is back: %v", err)
		}
	})
}
