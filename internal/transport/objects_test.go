package transport

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wasmfabric/fabric/internal/secrets"
)

// memSource serves objects from a map; hook, when set, runs on each request.
type memSource struct {
	mu   sync.Mutex
	objs map[[IDSize]byte][]byte
	hook atomic.Pointer[func(calls int64)] // set by tests while serving
	n    atomic.Int64
}

func (m *memSource) Object(_ string, id [IDSize]byte) ([]byte, func(), bool) {
	calls := m.n.Add(1)
	if h := m.hook.Load(); h != nil {
		(*h)(calls)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.objs[id]
	return b, func() {}, ok
}

func (m *memSource) setHook(f func(calls int64)) { m.hook.Store(&f) }

func pair(t testing.TB, src ObjectSource) (client, server *Endpoint) {
	t.Helper()
	c, err := secrets.Create()
	if err != nil {
		t.Fatal(err)
	}
	mk := func(id string, objs ObjectSource) *Endpoint {
		cert, err := c.NodeCertificate(id, []string{"127.0.0.1"}, false, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		e, err := Listen(Config{Addr: "127.0.0.1:0", TLS: c.TLSConfig(cert, secrets.TLSOptions{}), Objects: objs})
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	return mk("client", nil), mk("server", src)
}

func alloc(size int64) ([]byte, error) { return make([]byte, size), nil }

func TestPull(t *testing.T) {
	objs := map[[IDSize]byte][]byte{
		{1}: randomBytes(20 << 20),
		{2}: bytes.Repeat([]byte("compressible text, "), 1<<20),
		{3}: float64Array(2<<20, func(i int) float64 { return float64(i % 1000) }),
		{4}: {},
		{5}: []byte("small"),
	}
	src := &memSource{objs: objs}
	cl, srv := pair(t, src)
	defer cl.Close()
	defer srv.Close()
	ctx := context.Background()
	for id, want := range objs {
		st, err := cl.Pull(ctx, srv.Addr(), id, alloc, PullOptions{})
		if err != nil {
			t.Fatalf("object %d: %v", id[0], err)
		}
		t.Logf("object %d: %d bytes, %d on the wire, plan %+v", id[0], st.Size, st.Wire, st.Plan)
		if st.Size != int64(len(want)) {
			t.Fatalf("object %d: size %d", id[0], st.Size)
		}
		if id[0] == 2 || id[0] == 3 {
			if st.Wire*4 > st.Size {
				t.Fatalf("object %d: compressible, yet %d of %d bytes sent", id[0], st.Wire, st.Size)
			}
		}
	}
	var got []byte
	if _, err := cl.Pull(ctx, srv.Addr(), [IDSize]byte{2}, func(n int64) ([]byte, error) { got = make([]byte, n); return got, nil }, PullOptions{}); err != nil || !bytes.Equal(got, objs[[IDSize]byte{2}]) {
		t.Fatalf("content differs: %v", err)
	}
	if _, err := cl.Pull(ctx, srv.Addr(), [IDSize]byte{9}, alloc, PullOptions{}); !errors.Is(err, ErrRemote) || !bytes.Contains([]byte(err.Error()), []byte("does not hold")) {
		t.Fatalf("unknown object: %v", err)
	}
	// Spread over three connections, the bytes arrive the same.
	st, err := cl.Pull(ctx, srv.Addr(), [IDSize]byte{1}, func(n int64) ([]byte, error) { got = make([]byte, n); return got, nil }, PullOptions{Lanes: 3})
	if err != nil || st.Lanes != 3 || !bytes.Equal(got, objs[[IDSize]byte{1}]) {
		t.Fatalf("pull over 3 lanes: %d lanes, %v", st.Lanes, err)
	}
	// The counters: seven objects pulled, one pull failed; the server
	// served their bytes.
	var total int64
	for _, b := range objs {
		total += int64(len(b))
	}
	total += int64(len(objs[[IDSize]byte{2}]) + len(objs[[IDSize]byte{1}]))
	in, out := cl.Transfers(), srv.Transfers()
	// The server counts a range once its last write returned, which may
	// be after the client read it.
	for deadline := time.Now().Add(5 * time.Second); out.ServedBytes < total && time.Now().Before(deadline); out = srv.Transfers() {
		time.Sleep(time.Millisecond)
	}
	if in.Pulls != 7 || in.PullsFailed != 1 || in.PulledBytes != total || in.PulledWire <= 0 || in.PulledWire >= total {
		t.Fatalf("the client's transfers: %+v (want 7 pulls of %d bytes, 1 failed)", in, total)
	}
	if out.ServedBytes != total || out.Served < 5 || out.ServeFailed != 1 || out.Pulls != 0 {
		t.Fatalf("the server's transfers: %+v (want %d bytes served)", out, total)
	}
}

func TestLanesFor(t *testing.T) {
	cases := []struct {
		size int64
		rtt  time.Duration
		want int
	}{
		{1 << 30, time.Millisecond, 1}, // loopback or LAN: one connection
		{1 << 20, 100 * time.Millisecond, 1},
		{64 << 20, 100 * time.Millisecond, 4},
		{256 << 20, 100 * time.Millisecond, 16},
		{4 << 30, 20 * time.Millisecond, 16},
	}
	for _, c := range cases {
		if got := lanesFor(c.size, c.rtt); got != c.want {
			t.Errorf("lanesFor(%d, %v) = %d, want %d", c.size, c.rtt, got, c.want)
		}
	}
}

// TestPullResumes breaks the holder's connections in the middle of a pull:
// the puller dials again and asks for the missing chunks only.
func TestPullResumes(t *testing.T) {
	obj := randomBytes(48 << 20)
	src := &memSource{objs: map[[IDSize]byte][]byte{{1}: obj}}
	cl, srv := pair(t, src)
	defer cl.Close()
	defer srv.Close()
	var once sync.Once
	src.setHook(func(calls int64) {
		if calls == 4 {
			once.Do(func() {
				srv.mu.Lock()
				for c := range srv.served {
					go c.CloseWithError(7, "test: connection cut")
				}
				srv.mu.Unlock()
			})
		}
	})
	var got []byte
	st, err := cl.Pull(context.Background(), srv.Addr(), [IDSize]byte{1}, func(n int64) ([]byte, error) { got = make([]byte, n); return got, nil },
		PullOptions{Streams: 2, RangeChunks: 4})
	if err != nil {
		t.Fatal(err)
	}
	if st.Retries == 0 || !bytes.Equal(got, obj) {
		t.Fatalf("retries %d, equal %v", st.Retries, bytes.Equal(got, obj))
	}
	t.Logf("%d ranges asked for again", st.Retries)
}

// TestPullDetectsCorruption: a holder whose bytes change after it hashed
// them (a bug, or a bad disk) is caught by the hash check.
func TestPullDetectsCorruption(t *testing.T) {
	obj := randomBytes(4 << 20)
	src := &memSource{objs: map[[IDSize]byte][]byte{{1}: obj}}
	cl, srv := pair(t, src)
	defer cl.Close()
	defer srv.Close()
	src.setHook(func(calls int64) {
		if calls == 2 {
			src.mu.Lock()
			bad := append([]byte(nil), obj...)
			bad[12345] ^= 1
			src.objs[[IDSize]byte{1}] = bad
			src.mu.Unlock()
		}
	})
	if _, err := cl.Pull(context.Background(), srv.Addr(), [IDSize]byte{1}, alloc, PullOptions{}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("changed bytes: %v, want ErrCorrupt", err)
	}
}
