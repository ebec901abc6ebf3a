package membership

import (
	"bytes"
	"errors"
	"reflect"
	"runtime"
	"testing"
	"time"
)

var key = bytes.Repeat([]byte{7}, 32)

func start(t *testing.T, id string, k []byte, labels map[string]string) *Membership {
	t.Helper()
	m, err := Start(Config{
		Info:     Info{ID: id, QUIC: "127.0.0.1:1", HTTP: "127.0.0.1:2", Role: "client", Resources: map[string]float64{"CPU": 2, "memory": 1 << 30}, Labels: labels},
		BindAddr: "127.0.0.1:0", Key: k, Timing: Fast,
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// eventually polls cond for up to d.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func statuses(m *Membership) map[string]Status {
	out := map[string]Status{}
	for _, mm := range m.Members() {
		out[mm.ID] = mm.Status
	}
	return out
}

// waitEvent reads events until one of kind about id arrives.
func waitEvent(t *testing.T, m *Membership, kind EventKind, id string) Event {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case e := <-m.Events():
			if e.Kind == kind && e.Member.ID == id {
				return e
			}
		case <-timeout:
			t.Fatalf("no %s event for %s", kind, id)
		}
	}
}

func TestClusterOfThree(t *testing.T) {
	before := runtime.NumGoroutine()
	a := start(t, "node-a", key, map[string]string{"tier": "edge"})
	b := start(t, "node-b", key, nil)
	c := start(t, "node-c", key, nil)
	for _, m := range []*Membership{b, c} {
		if n, err := m.Join(a.Addr()); err != nil || n != 1 {
			t.Fatalf("join: %d %v", n, err)
		}
	}
	all := map[string]Status{"node-a": Alive, "node-b": Alive, "node-c": Alive}
	for _, m := range []*Membership{a, b, c} {
		eventually(t, 10*time.Second, "all three alive", func() bool { return reflect.DeepEqual(statuses(m), all) })
	}
	waitEvent(t, c, Joined, "node-b")
	// Round trips, from the probes' network coordinates: known, and short
	// on loopback.
	eventually(t, 10*time.Second, "c's round trip to a", func() bool {
		rtt, ok := c.RTT("node-a")
		return ok && rtt > 0 && rtt < time.Second
	})
	if _, ok := c.RTT("node-z"); ok {
		t.Fatal("a round trip to a node that does not exist")
	}

	// What a node gossips reaches the others.
	var seen Member
	for _, mm := range c.Members() {
		if mm.ID == "node-a" {
			seen = mm
		}
	}
	want := Info{ID: "node-a", QUIC: "127.0.0.1:1", HTTP: "127.0.0.1:2", Role: "client",
		Resources: map[string]float64{"CPU": 2, "memory": 1 << 30}, Labels: map[string]string{"tier": "edge"}}
	if !reflect.DeepEqual(seen.Info, want) || seen.Gossip != a.Addr() {
		t.Fatalf("c sees a as %+v at %s, want %+v at %s", seen.Info, seen.Gossip, want, a.Addr())
	}
	if err := a.Update(Info{QUIC: "127.0.0.1:9", Resources: map[string]float64{"CPU": 4}}); err != nil {
		t.Fatal(err)
	}
	if e := waitEvent(t, c, Updated, "node-a"); e.Member.QUIC != "127.0.0.1:9" || e.Member.Resources["CPU"] != 4 {
		t.Fatalf("update event: %+v", e.Member)
	}

	// A node that stops answering is declared dead; one that leaves, left.
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if e := waitEvent(t, c, Failed, "node-b"); e.Member.Status != Dead {
		t.Fatalf("failed member has status %s", e.Member.Status)
	}
	if err := a.Leave(); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, c, LeftCluster, "node-a")
	eventually(t, 5*time.Second, "a left, b dead", func() bool {
		s := statuses(c)
		return s["node-a"] == Left && s["node-b"] == Dead && s["node-c"] == Alive
	})
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "goroutines of closed members gone", func() bool { return runtime.NumGoroutine() <= before })
}

func TestWrongKeyCannotJoin(t *testing.T) {
	a := start(t, "node-a", key, nil)
	defer a.Close()
	intruder := start(t, "intruder", bytes.Repeat([]byte{8}, 32), nil)
	defer intruder.Close()
	if _, err := intruder.Join(a.Addr()); !errors.Is(err, ErrNoJoin) {
		t.Fatalf("join with the wrong key: %v, want ErrNoJoin", err)
	}
	time.Sleep(300 * time.Millisecond)
	if s := statuses(a); len(s) != 1 {
		t.Fatalf("the cluster lists %v after an intruder tried to join", s)
	}
	if _, err := Start(Config{Info: Info{ID: "keyless"}, BindAddr: "127.0.0.1:0"}); !errors.Is(err, ErrNoKey) {
		t.Fatalf("start without a key: %v, want ErrNoKey", err)
	}
}

func TestTags(t *testing.T) {
	cases := []struct {
		name string
		in   Info
		err  error
	}{
		{"full", Info{ID: "n1", QUIC: "10.0.0.1:7947", HTTP: "10.0.0.1:7948", Role: "server",
			Resources: map[string]float64{"CPU": 0.5, "GPU": 1, "memory": 1 << 34, "custom": 1e-3}, Used: map[string]float64{"CPU": 0.25}, Labels: map[string]string{"tier": "edge", "zone": ""}}, nil},
		{"bare", Info{ID: "n2"}, nil},
		{"no ID", Info{}, ErrBadTags},
		{"negative resource", Info{ID: "n", Resources: map[string]float64{"CPU": -1}}, ErrBadTags},
		{"comma in label", Info{ID: "n", Labels: map[string]string{"a": "b,c"}}, ErrBadTags},
		{"space in name", Info{ID: "n", Labels: map[string]string{"a b": "c"}}, ErrBadTags},
		{"too large", Info{ID: "n", Labels: map[string]string{"k": string(bytes.Repeat([]byte{'x'}, 600))}}, ErrTagsTooLarge},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tags, err := encodeTags(c.in)
			if !errors.Is(err, c.err) {
				t.Fatalf("encode: %v, want %v", err, c.err)
			}
			if err != nil {
				return
			}
			got, err := decodeTags(tags)
			if err != nil || !reflect.DeepEqual(got, c.in) {
				t.Fatalf("decode: %+v %v, want %+v", got, err, c.in)
			}
		})
	}
}

// FuzzDecodeTags feeds arbitrary gossip tags: decoding never panics, and
// what it accepts encodes back to tags that decode the same.
func FuzzDecodeTags(f *testing.F) {
	f.Add("n1", "1.2.3.4:5", "CPU=2,memory=1024", "tier=edge")
	f.Add("", "", "CPU=", "=x")
	f.Fuzz(func(t *testing.T, id, quic, res, labels string) {
		in, err := decodeTags(map[string]string{tagID: id, tagQUIC: quic, tagResources: res, tagUsed: res, tagLabels: labels})
		if err != nil {
			return
		}
		tags, err := encodeTags(in)
		if err != nil {
			return // readable but not writable (for example too large): fine
		}
		again, err := decodeTags(tags)
		if err != nil || !reflect.DeepEqual(again, in) {
			t.Fatalf("%+v re-decodes as %+v, %v", in, again, err)
		}
	})
}

// TestKeyRotation: the cluster moves to a new gossip key (installed
// everywhere, then used, then the old one removed) without a member
// lost; a member left out of the rotation can no longer join.
func TestKeyRotation(t *testing.T) {
	a := start(t, "node-a", key, nil)
	defer a.Close()
	b := start(t, "node-b", key, nil)
	defer b.Close()
	if _, err := b.Join(a.Addr()); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "two alive", func() bool { return len(statuses(a)) == 2 && len(statuses(b)) == 2 })
	fresh := bytes.Repeat([]byte{9}, 32)
	for _, step := range []func(m *Membership) error{
		func(m *Membership) error { return m.InstallKey(fresh) },
		func(m *Membership) error { return m.UseKey(fresh) },
		func(m *Membership) error { return m.RemoveKey(key) },
	} {
		for _, m := range []*Membership{a, b} {
			if err := step(m); err != nil {
				t.Fatal(err)
			}
		}
	}
	if ks := a.Keys(); len(ks) != 1 || !bytes.Equal(ks[0], fresh) {
		t.Fatalf("a's keys after the rotation: %d", len(ks))
	}
	if err := a.RemoveKey(fresh); err == nil {
		t.Fatal("removed the key in use")
	}
	time.Sleep(500 * time.Millisecond)
	eventually(t, 5*time.Second, "both still alive", func() bool {
		s := statuses(a)
		return s["node-a"] == Alive && s["node-b"] == Alive
	})
	stale := start(t, "node-stale", key, nil)
	defer stale.Close()
	if _, err := stale.Join(a.Addr()); !errors.Is(err, ErrNoJoin) {
		t.Fatalf("a member with the old key joined: %v", err)
	}
	rotated := start(t, "node-c", fresh, nil)
	defer rotated.Close()
	if _, err := rotated.Join(a.Addr()); err != nil {
		t.Fatalf("a member with the new key: %v", err)
	}
}
