package testrig

import (
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// LossyRelay forwards UDP datagrams between one client and target with a
// delay and a loss rate each way, as `tc netem delay D loss L` would on
// both ends of a link; it returns the address clients send to. The client
// is whoever sent last (one UDP socket: a QUIC endpoint with any number of
// connections). The relay stops when the test ends.
func LossyRelay(t testing.TB, target string, delay time.Duration, loss float64) string {
	t.Helper()
	front, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	back, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dst, err := net.ResolveUDPAddr("udp", target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = front.Close(); _ = back.Close() })
	var client atomic.Pointer[net.Addr]
	r := rand.New(rand.NewPCG(7, 11))
	var rmu sync.Mutex
	drop := func() bool {
		rmu.Lock()
		defer rmu.Unlock()
		return r.Float64() < loss
	}
	pump := func(from net.PacketConn, send func(p []byte)) {
		buf := make([]byte, 65536)
		for {
			n, src, err := from.ReadFrom(buf)
			if err != nil {
				return
			}
			if from == front {
				client.Store(&src)
			}
			if drop() {
				continue
			}
			p := append([]byte(nil), buf[:n]...)
			time.AfterFunc(delay, func() { send(p) })
		}
	}
	go pump(front, func(p []byte) { _, _ = back.WriteTo(p, dst) })
	go pump(back, func(p []byte) {
		if c := client.Load(); c != nil {
			_, _ = front.WriteTo(p, *c)
		}
	})
	return front.LocalAddr().String()
}

// FreeUDPAddr returns a loopback UDP address that was free a moment ago.
func FreeUDPAddr(t testing.TB) string {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().String()
}
