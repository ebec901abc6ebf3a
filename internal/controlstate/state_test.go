package controlstate

import (
	"cmp"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

const digest = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"

func submit(id string) Command {
	return Command{Submit: &Submit{ID: id, Digest: digest, Node: "n1", Time: 10, Args: []string{"a"}}}
}

// tenantSubmit is the submission of tenant's job named name.
func tenantSubmit(tenant, name string) Command {
	c := submit(JobKey(tenant, name))
	c.Submit.Tenant = tenant
	return c
}

// TestApply steps the state through each command's cases, one table row
// per step, and checks the error and the job afterwards.
func TestApply(t *testing.T) {
	steps := []struct {
		name  string
		cmd   Command
		err   error
		job   string   // the job to check after the step
		state JobState // its state then ("" when it is gone)
	}{
		{"submit", submit("j1"), nil, "j1", Pending},
		{"submit again", submit("j1"), ErrJobExists, "j1", Pending},
		{"bad id", submit("../x"), ErrBadCommand, "../x", ""},
		{"start a wrong attempt", Command{Start: &Start{ID: "j1", Attempt: 2}}, ErrStale, "j1", Pending},
		{"start", Command{Start: &Start{ID: "j1", Attempt: 1, Time: 11}}, nil, "j1", Running},
		{"start twice", Command{Start: &Start{ID: "j1", Attempt: 1, Time: 11}}, ErrStale, "j1", Running},
		{"delete a running job", Command{Delete: &Delete{ID: "j1"}}, ErrJobRunning, "j1", Running},
		{"end as running", Command{End: &End{ID: "j1", Attempt: 1, State: Running}}, ErrBadCommand, "j1", Running},
		{"end", Command{End: &End{ID: "j1", Attempt: 1, State: Failed, Error: "boom", ExitCode: 3, Time: 12}}, nil, "j1", Failed},
		{"end twice", Command{End: &End{ID: "j1", Attempt: 1, State: Succeeded, Time: 13}}, ErrStale, "j1", Failed},
		{"stop an ended job", Command{Stop: &Stop{ID: "j1", Time: 14}}, ErrStale, "j1", Failed},
		{"delete", Command{Delete: &Delete{ID: "j1"}}, nil, "j1", ""},
		{"delete again", Command{Delete: &Delete{ID: "j1"}}, ErrNoJob, "j1", ""},
		{"two changes", Command{Delete: &Delete{ID: "j1"}, Stop: &Stop{ID: "j1"}}, ErrBadCommand, "j1", ""},
		{"none", Command{}, ErrBadCommand, "j1", ""},
		{"submit j2", Command{Submit: &Submit{ID: "j2", Digest: digest, Node: "n1", Time: 20, MaxRestarts: 1}}, nil, "j2", Pending},
		{"restart", Command{Restart: &Restart{ID: "j2", Attempt: 1, Node: "n2", Cause: "n1 failed", Time: 21}}, nil, "j2", Pending},
		{"restart the old attempt", Command{Restart: &Restart{ID: "j2", Attempt: 1, Node: "n3", Time: 22}}, ErrStale, "j2", Pending},
		{"no restarts left", Command{Restart: &Restart{ID: "j2", Attempt: 2, Node: "n3", Time: 22}}, ErrStale, "j2", Pending},
		{"the lost attempt ends late", Command{End: &End{ID: "j2", Attempt: 1, State: Succeeded, Time: 23}}, ErrStale, "j2", Pending},
		{"stop", Command{Stop: &Stop{ID: "j2", Reason: "stopped by the user", Time: 24}}, nil, "j2", Stopped},
		{"the stopped driver ends", Command{End: &End{ID: "j2", Attempt: 2, State: Failed, Time: 25}}, ErrStale, "j2", Stopped},
	}
	s := New()
	for _, st := range steps {
		err := s.Apply(st.cmd)
		if !errors.Is(err, st.err) || (st.err == nil) != (err == nil) {
			t.Fatalf("%s: error %v, want %v", st.name, err, st.err)
		}
		j, ok := s.Job(st.job)
		if got := map[bool]JobState{true: j.State}[ok]; got != st.state {
			t.Fatalf("%s: job %s is %q, want %q", st.name, st.job, got, st.state)
		}
	}
	j, _ := s.Job("j2")
	want := Job{ID: "j2", Digest: digest, Node: "n2", State: Stopped, Submitted: 20, Ended: 24, Error: "stopped by the user",
		Attempt: 2, MaxRestarts: 1, Restarts: []string{"n1 failed"}}
	if !reflect.DeepEqual(j, want) {
		t.Fatalf("j2 is\n%+v, want\n%+v", j, want)
	}
}

// TestMaxJobs: past MaxJobs, a submission evicts the job that ended
// first, and is refused when none has ended.
func TestMaxJobs(t *testing.T) {
	s := New()
	for i := range MaxJobs {
		c := submit("j" + itoa(i))
		c.Submit.Time = int64(i)
		if err := s.Apply(c); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Apply(submit("extra")); !errors.Is(err, ErrTooManyJobs) {
		t.Fatalf("submission past the limit: %v", err)
	}
	for _, id := range []string{"j7", "j3"} {
		if err := s.Apply(Command{End: &End{ID: id, Attempt: 1, State: Succeeded, Time: 100}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Apply(submit("extra")); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Job("j3"); ok {
		t.Fatal("j3 (ended first, by ID) was kept")
	}
	if _, ok := s.Job("j7"); !ok {
		t.Fatal("j7 was evicted too")
	}
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var b []byte
	for ; i > 0; i /= 10 {
		b = append([]byte{byte('0' + i%10)}, b...)
	}
	return string(b)
}

// TestModules: holders are kept sorted and once; a module a running job
// uses cannot be deleted.
func TestModules(t *testing.T) {
	s := New()
	for _, n := range []string{"n2", "n1", "n2"} {
		if err := s.Apply(Command{AddModule: &AddModule{Digest: digest, Size: 5, Node: n, Name: "hello.wasm"}}); err != nil {
			t.Fatal(err)
		}
	}
	if m, _ := s.Module(digest); !reflect.DeepEqual(m.Nodes, []string{"n1", "n2"}) || m.Name != "hello.wasm" {
		t.Fatalf("module %+v", m)
	}
	if err := s.Apply(submit("j")); err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(Command{DeleteModule: &DeleteModule{Digest: digest}}); !errors.Is(err, ErrModuleInUse) {
		t.Fatalf("deleting a module in use: %v", err)
	}
	if err := s.Apply(Command{DeleteModule: &DeleteModule{Digest: digest, Node: "n1"}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(Command{Stop: &Stop{ID: "j"}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(Command{DeleteModule: &DeleteModule{Digest: digest}}); err != nil {
		t.Fatal(err)
	}
	if len(s.Modules()) != 0 {
		t.Fatal("module kept")
	}
	if err := s.Apply(Command{AddModule: &AddModule{Digest: strings.ToUpper(digest), Node: "n1"}}); !errors.Is(err, ErrBadCommand) {
		t.Fatalf("upper-case digest: %v", err)
	}
}

// TestSnapshotRoundTrip: a restored state equals the one snapshotted.
func TestSnapshotRoundTrip(t *testing.T) {
	s := New()
	for _, c := range []Command{submit("a"), submit("b"), {Start: &Start{ID: "a", Attempt: 1, Time: 3}},
		{AddModule: &AddModule{Digest: digest, Size: 9, Node: "n1"}}, nameActor("ns", "", "counter", "a1", "n1")} {
		if err := s.Apply(c); err != nil {
			t.Fatal(err)
		}
	}
	b, err := s.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	r, err := Restore(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(r.Jobs(nil), s.Jobs(nil)) || !reflect.DeepEqual(r.Modules(), s.Modules()) || !reflect.DeepEqual(r.Names(nil), s.Names(nil)) || len(r.Names(nil)) != 1 {
		t.Fatal("restored state differs")
	}
	if _, err := Restore([]byte{0xff, 0x00}); err == nil {
		t.Fatal("garbage restored")
	}
}

// FuzzApply decodes commands from arbitrary bytes and applies them: no
// input panics, and a state that applied them snapshots and restores to
// an equal one.
func FuzzApply(f *testing.F) {
	for _, c := range []Command{submit("a"), {Start: &Start{ID: "a", Attempt: 1}}, {End: &End{ID: "a", Attempt: 1, State: Failed, Error: "x"}},
		{Restart: &Restart{ID: "a", Attempt: 1, Node: "n"}}, {AddModule: &AddModule{Digest: digest, Node: "n"}}, {DeleteModule: &DeleteModule{Digest: digest}},
		nameActor("ns", "", "x", "a1", "n"), nameActor("", "job", "x", "a1", "n"), {UnnameActor: &UnnameActor{Namespace: "ns", Name: "x", Actor: []byte("a1")}},
		{ForgetNode: &ForgetNode{Node: "n"}}, {CreateTenant: &CreateTenant{Name: "t"}}, {DeleteTenant: &DeleteTenant{Name: "t"}},
		{CreateToken: &CreateToken{Token: Token{ID: "k", Tenant: "t", Role: RoleUser, Hash: make([]byte, 32)}}}, {RevokeToken: &RevokeToken{ID: "k"}},
		{AddTenantKey: &AddTenantKey{Tenant: "t", Key: make([]byte, 32)}}, {RemoveTenantKey: &RemoveTenantKey{Tenant: "t", ID: "0123456789abcdef"}},
		{AddModule: &AddModule{Digest: digest, Node: "n", Tenant: "t", Signature: make([]byte, 64)}}} {
		b, err := EncodeCommand(c)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s := New()
		_ = s.Apply(submit("a"))
		c, err := DecodeCommand(b)
		if err != nil {
			return
		}
		_ = s.Apply(c)
		snap, err := s.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		r, err := Restore(snap)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(r.Jobs(nil), s.Jobs(nil)) || !reflect.DeepEqual(r.Names(nil), s.Names(nil)) ||
			!reflect.DeepEqual(r.Tenants(), s.Tenants()) || !reflect.DeepEqual(r.Tokens(""), s.Tokens("")) {
			t.Fatal("restored state differs")
		}
	})
}

// TestRetriedRequest: a named command applied twice (a proposal retried
// after the leader that committed it died) answers the same the second
// time and changes nothing again, also after a snapshot's restore.
func TestRetriedRequest(t *testing.T) {
	s := New()
	c := submit("j")
	c.Request = "r1"
	for range 2 {
		if err := s.Apply(c); err != nil {
			t.Fatalf("a retried submission: %v", err)
		}
	}
	start := Command{Request: "r2", Start: &Start{ID: "j", Attempt: 1, Time: 5}}
	if err := s.Apply(start); err != nil {
		t.Fatal(err)
	}
	dup := submit("j")
	dup.Request = "r3"
	if err := s.Apply(dup); !errors.Is(err, ErrJobExists) {
		t.Fatalf("another submission of the ID: %v", err)
	}
	b, err := s.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	r, err := Restore(b)
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range []*State{s, r} {
		if err := st.Apply(start); err != nil {
			t.Fatalf("a retried start: %v", err)
		}
		if err := st.Apply(dup); !errors.Is(err, ErrJobExists) || !strings.Contains(err.Error(), `"j"`) {
			t.Fatalf("a retried refused submission: %v", err)
		}
	}
	for i := range MaxRequests + 1 {
		_ = s.Apply(Command{Request: "x" + itoa(i), Stop: &Stop{ID: "none"}})
	}
	if _, kept := s.requests["r1"]; kept || len(s.requests) != MaxRequests {
		t.Fatalf("%d request answers kept", len(s.requests))
	}
}

func nameActor(ns, job, name, actor, node string) Command {
	return Command{NameActor: &NameActor{ActorName: ActorName{Namespace: ns, Job: cmp.Or(job, "owner"), Name: name, Actor: []byte(actor), Node: node, Class: "C", Time: 1}}}
}

// TestNames steps the name registry: a name is held by one actor at a
// time, in its namespace or its job's own; naming again is no change;
// only the holder frees it; a dead holder is replaced only by name; a
// node's names go with it; and bad records are refused.
func TestNames(t *testing.T) {
	replace := nameActor("ns", "", "counter", "a3", "n2")
	group := nameActor("ns", "", "counter", "g1", "n3")
	group.NameActor.Group = true
	groupTaken := nameActor("ns", "", "counter", "g2", "n3")
	groupTaken.NameActor.Group = true
	replace.NameActor.Replaces = []byte("a1")
	steps := []struct {
		cmd  Command
		want error
	}{
		{nameActor("ns", "", "counter", "a1", "n1"), nil},
		{nameActor("ns", "", "counter", "a1", "n1"), nil}, // again: no change
		{nameActor("ns", "", "counter", "a2", "n2"), ErrNameTaken},
		{nameActor("other", "", "counter", "a2", "n2"), nil}, // another namespace
		{nameActor("", "j1", "counter", "a4", "n1"), nil},    // a job's own
		{nameActor("", "j2", "counter", "a5", "n1"), nil},
		{Command{UnnameActor: &UnnameActor{Namespace: "ns", Name: "counter", Actor: []byte("a2")}}, nil}, // not the holder: no change
		{nameActor("ns", "", "counter", "a2", "n2"), ErrNameTaken},
		{replace, nil},
		{Command{UnnameActor: &UnnameActor{Namespace: "ns", Name: "counter", Actor: []byte("a3")}}, nil},
		{nameActor("ns", "", "counter", "a2", "n2"), nil},
		{Command{ForgetNode: &ForgetNode{Node: "n2"}}, nil},
		{nameActor("", "", "x", "a1", "n1"), nil}, // no job: the helper's owner job
		{nameActor("ns", "", "", "a1", "n1"), ErrBadCommand},
		{nameActor("ns", "", strings.Repeat("x", MaxNameLength+1), "a1", "n1"), ErrBadCommand},
		{nameActor("ns", "", "y", "", "n1"), ErrBadCommand},
		{nameActor("ns", "", "y", "a1", ""), ErrBadCommand},
		{Command{ForgetNode: &ForgetNode{}}, ErrBadCommand},
		{group, nil}, // a group's name apart from the actors'
		{group, nil},
		{groupTaken, ErrNameTaken},
		{Command{UnnameActor: &UnnameActor{Namespace: "ns", Name: "counter", Job: "owner", Actor: []byte("g1")}}, nil}, // an actor's: no change
		{tenantName("acme", "a20"), nil},   // namespaces are per tenant: acme's ns/shared
		{tenantName("globex", "a21"), nil}, // and globex's, apart
		{tenantName("acme", "a22"), ErrNameTaken},
	}
	s := New()
	for i, st := range steps {
		if err := s.Apply(st.cmd); !errors.Is(err, st.want) || (st.want == nil) != (err == nil) {
			t.Fatalf("step %d: %v, want %v", i, err, st.want)
		}
	}
	var got []string
	for _, n := range s.Names(nil) {
		got = append(got, n.Namespace+"/"+n.Job+"/"+n.Name+"="+string(n.Actor)+"@"+n.Node)
	}
	want := []string{"/j1/counter=a4@n1", "/j2/counter=a5@n1", "/owner/x=a1@n1", "ns/owner/shared=a20@n1", "ns/owner/shared=a21@n1", "ns/owner/counter=g1@n3"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("names %q, want %q", got, want)
	}
	if n, ok := s.Name(false, "", "", "j1", "counter"); !ok || string(n.Actor) != "a4" {
		t.Fatalf("Name: %+v %v", n, ok)
	}
	if _, ok := s.Name(false, "", "ns", "", "counter"); ok {
		t.Fatal("a forgotten node's name is found")
	}
	if n, ok := s.Name(true, "", "ns", "", "counter"); !ok || string(n.Actor) != "g1" {
		t.Fatalf("a group's Name: %+v %v", n, ok)
	}
	if n, ok := s.Name(false, "globex", "ns", "", "shared"); !ok || string(n.Actor) != "a21" {
		t.Fatalf("globex's name: %+v %v", n, ok)
	}
	if _, ok := s.Name(false, "", "ns", "", "shared"); ok {
		t.Fatal("a tenant's name found in the operator's namespace")
	}
	if got := s.NamesOwnedBy(); !reflect.DeepEqual(got, []string{"n1", "n3"}) {
		t.Fatalf("owners %q", got)
	}
}

// TestMaxNames fills the registry: past MaxNames a new name is refused
// with ErrTooManyNames, and freeing one makes room.
func TestMaxNames(t *testing.T) {
	s := New()
	for i := range MaxNames {
		if err := s.Apply(nameActor("ns", "", strconv.Itoa(i), "a"+strconv.Itoa(i), "n")); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Apply(nameActor("ns", "", "one more", "b", "n")); !errors.Is(err, ErrTooManyNames) {
		t.Fatalf("past the limit: %v", err)
	}
	if err := s.Apply(Command{UnnameActor: &UnnameActor{Namespace: "ns", Name: "7", Actor: []byte("a7")}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(nameActor("ns", "", "one more", "b", "n")); err != nil {
		t.Fatal(err)
	}
}

func tenantName(tenant, actor string) Command {
	c := nameActor("ns", "", "shared", actor, "n1")
	c.NameActor.Tenant = tenant
	return c
}
