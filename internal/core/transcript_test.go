package core

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wasmfabric/fabric/internal/abi"
	"github.com/wasmfabric/fabric/internal/objects"
	"github.com/wasmfabric/fabric/internal/peerwire"
	"github.com/wasmfabric/fabric/internal/scheduler"
	"github.com/wasmfabric/fabric/internal/wire"
)

// The transcript tests drive a core through files of events and check the
// effects each produces, in the manner of etcd raft's data-driven tests.
// A file (testdata/*.txt) is a sequence of cases:
//
//	# a comment
//	command arg key=value ...
//	----
//	effect
//	effect
//
// Names stand for IDs: the test names the IDs a worker or a peer makes (T1
// is a task, T1.1 its first return; A1 an actor; o1 a put object; G1 a
// group), and the harness names the ones the core makes (c1, c2, ...), the
// workers (w1 ...), timers (t1 ...) and jobs. Run with -update to rewrite
// the expected effects, then read the diff: a transcript is only as good as
// its review.

var update = flag.Bool("update", false, "rewrite the transcripts' expected effects")

func TestTranscripts(t *testing.T) {
	pattern := "testdata/*.txt"
	if p := os.Getenv("TRANSCRIPTS"); p != "" {
		pattern = p // a subset, or files being written
	}
	files, err := filepath.Glob(pattern)
	if err != nil || len(files) == 0 {
		t.Fatalf("no transcripts: %v", err)
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".txt"), func(t *testing.T) { runTranscript(t, f) })
	}
}

type tcase struct {
	line int
	cmd  string
	want []string
}

func parseTranscript(t *testing.T, path string) (head []string, cases []tcase) {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	n := 0
	var cur *tcase
	inWant := false
	for sc.Scan() {
		n++
		line := sc.Text()
		switch {
		case inWant && line == "":
			inWant = false
			cases = append(cases, *cur)
			cur = nil
		case inWant:
			cur.want = append(cur.want, line)
		case line == "----":
			if cur == nil {
				t.Fatalf("%s:%d: ---- without a command", path, n)
			}
			inWant = true
		case strings.HasPrefix(line, "#") || strings.TrimSpace(line) == "":
			if cur == nil && len(cases) == 0 {
				head = append(head, line)
			}
		default:
			if cur != nil {
				t.Fatalf("%s:%d: a command without ----", path, n)
			}
			cur = &tcase{line: n, cmd: line}
		}
	}
	if cur != nil {
		cases = append(cases, *cur)
	}
	return head, cases
}

func runTranscript(t *testing.T, path string) {
	_, cases := parseTranscript(t, path)
	h := newHarness(t)
	var out strings.Builder
	raw, _ := os.ReadFile(path)
	// Keep the file's comments and spacing: rewrite only the expectations.
	lines := strings.Split(string(raw), "\n")
	ci := 0
	failed := false
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		if ci < len(cases) && i+1 == cases[ci].line {
			c := cases[ci]
			ci++
			got := h.run(c.cmd)
			out.WriteString(line + "\n----\n")
			for _, g := range got {
				out.WriteString(g + "\n")
			}
			out.WriteString("\n")
			// skip the old expectations
			for i+1 < len(lines) && lines[i+1] != "----" {
				i++
			}
			i++ // ----
			for i+1 < len(lines) && lines[i+1] != "" {
				i++
			}
			i++ // blank
			if !*update && strings.Join(got, "\n") != strings.Join(c.want, "\n") {
				failed = true
				t.Errorf("%s:%d: %s\ngot:\n%s\nwant:\n%s", path, c.line, c.cmd, strings.Join(got, "\n"), strings.Join(c.want, "\n"))
			}
			continue
		}
		if i == len(lines)-1 && line == "" {
			continue
		}
		out.WriteString(line + "\n")
	}
	if *update && !failed {
		if err := os.WriteFile(path, []byte(out.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	h.checkInvariants()
}

// fakeStore is the object store as the core sees it, in memory.
type fakeStore struct {
	sealed map[objects.ID]bool // true: sealed; false: reserved
	pins   map[objects.ID]int
	sizes  map[objects.ID]int64
}

func newFakeStore() *fakeStore {
	return &fakeStore{sealed: map[objects.ID]bool{}, pins: map[objects.ID]int{}, sizes: map[objects.ID]int64{}}
}

func (s *fakeStore) Seal(id objects.ID) error {
	sealed, ok := s.sealed[id]
	if !ok {
		return objects.ErrObjectNotFound
	}
	if sealed {
		return objects.ErrAlreadySealed
	}
	s.sealed[id] = true
	return nil
}

func (s *fakeStore) Abort(id objects.ID) {
	if sealed, ok := s.sealed[id]; ok && !sealed {
		delete(s.sealed, id)
	}
}

func (s *fakeStore) PinInPlace(id objects.ID) (objects.Location, error) {
	if !s.sealed[id] {
		return objects.Location{}, objects.ErrObjectNotFound
	}
	s.pins[id]++
	return objects.Location{Offset: 64, Size: s.sizes[id]}, nil
}

func (s *fakeStore) Unpin(id objects.ID) {
	if s.pins[id] > 0 {
		s.pins[id]--
		if s.pins[id] == 0 {
			delete(s.pins, id)
		}
	}
}

func (s *fakeStore) Delete(id objects.ID) { delete(s.sealed, id) }

// harness drives one core (or several: node switches among them).
type harness struct {
	t      *testing.T
	cores  map[string]*harnessNode
	cur    *harnessNode
	names  map[objects.ID]string
	ids    map[string]objects.ID
	auto   int
	jobIDs map[string]JobID
}

type harnessNode struct {
	name   string
	core   *Core
	store  *fakeStore
	now    Time
	timers map[TimerID]Time
	// running are the executions sent to each worker, in order; the first
	// is the one it runs.
	running map[WorkerID][]objects.ID
}

func newHarness(t *testing.T) *harness {
	return &harness{t: t, cores: map[string]*harnessNode{}, names: map[objects.ID]string{}, ids: map[string]objects.ID{}, jobIDs: map[string]JobID{}}
}

// id returns the ID a name stands for, making one for a new name: T1 is a
// task (index 0), T1.2 its second return.
func (h *harness) id(name string) objects.ID {
	if id, ok := h.ids[name]; ok {
		return id
	}
	base, idx, hasIdx := strings.Cut(name, ".")
	if hasIdx {
		n, err := strconv.Atoi(idx)
		if err != nil {
			h.t.Fatalf("bad ID name %q", name)
		}
		id := h.id(base).WithIndex(uint32(n))
		h.ids[name], h.names[id] = id, name
		return id
	}
	var id objects.ID
	copy(id[:], "id:"+name)
	id[15] = 0xff // apart from the core's IDs
	h.ids[name], h.names[id] = id, name
	return id
}

// name returns the name of an ID, naming the core's own on first sight.
func (h *harness) name(id objects.ID) string {
	if n, ok := h.names[id]; ok {
		return n
	}
	if id.IsNil() {
		return "nil"
	}
	if idx := id.Index(); idx != 0 {
		return h.name(id.Task()) + "." + strconv.Itoa(int(idx))
	}
	h.auto++
	n := "c" + strconv.Itoa(h.auto)
	h.names[id], h.ids[n] = n, id
	return n
}

func (h *harness) names_(ids []objects.ID) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = h.name(id)
	}
	return strings.Join(s, ",")
}

func (h *harness) job(name string) JobID {
	if id, ok := h.jobIDs[name]; ok {
		return id
	}
	id := JobID(name)
	h.jobIDs[name] = id
	return id
}

// args parses "key=value" and bare words.
type args struct {
	pos []string
	kv  map[string]string
}

func parseArgs(fields []string) args {
	a := args{kv: map[string]string{}}
	for _, f := range fields {
		if k, v, ok := strings.Cut(f, "="); ok {
			if uq, err := strconv.Unquote(v); err == nil {
				v = uq
			}
			a.kv[k] = v
		} else {
			a.pos = append(a.pos, f)
		}
	}
	return a
}

func (a args) has(k string) bool {
	if _, ok := a.kv[k]; ok {
		return true
	}
	for _, p := range a.pos {
		if p == k {
			return true
		}
	}
	return false
}

func (a args) int(k string, def int) int {
	v, ok := a.kv[k]
	if !ok {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		panic(fmt.Sprintf("%s=%s is not a number", k, v))
	}
	return n
}

// splitFields splits a command line on spaces, keeping quoted values whole.
func splitFields(s string) []string {
	var out []string
	var b strings.Builder
	quoted := false
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case ch == '"' && (i == 0 || s[i-1] != '\\'):
			quoted = !quoted
			b.WriteByte(ch)
		case ch == ' ' && !quoted:
			if b.Len() > 0 {
				out = append(out, b.String())
				b.Reset()
			}
		default:
			b.WriteByte(ch)
		}
	}
	if b.Len() > 0 {
		out = append(out, b.String())
	}
	return out
}

// value encodes a literal as CBOR: a number, a quoted string, or [a,b].
func value(s string) []byte {
	var v any
	if n, err := strconv.Atoi(s); err == nil {
		v = n
	} else if strings.HasPrefix(s, "[") {
		var items []any
		for _, it := range strings.Split(strings.Trim(s, "[]"), ";") {
			if it == "" {
				continue
			}
			var x any
			_ = wire.Unmarshal(value(it), &x)
			items = append(items, x)
		}
		v = items
	} else {
		v = s
	}
	b, err := wire.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// show decodes a CBOR value for the transcript.
func show(b []byte) string {
	var v any
	if err := wire.Unmarshal(b, &v); err != nil {
		return fmt.Sprintf("<%d bytes>", len(b))
	}
	return fmt.Sprintf("%v", v)
}

func showError(b []byte) string {
	ev := decodeErrorValue(b)
	return fmt.Sprintf("%s(%q)", ev.Kind, ev.Message)
}

func (h *harness) node() *harnessNode {
	if h.cur == nil {
		h.newNode("n1", args{kv: map[string]string{}})
	}
	return h.cur
}

func (h *harness) newNode(name string, a args) {
	cpu := a.int("cpu", 2)
	cfg := Config{Node: NodeID(name), Resources: scheduler.Resources{CPU: scheduler.Quantity(float64(cpu)), Memory: 1 << 30},
		MaxWorkers: a.int("max-workers", 8), MaxInstances: a.int("max-instances", 0), Leases: a.int("leases", 0) == 1, InlineMax: a.int("inline", 1000), HeapBudget: int64(a.int("heap", 1<<20)),
		Seed: 1, Clustered: a.has("clustered"), Registry: a.has("registry"), TaskHistory: a.int("history", 0)}
	if a.has("grants") {
		// A grant here is "job/tenant/root/module" in the clear: what
		// the servers' signature stands for.
		cfg.VerifyGrant = func(job, tenant, root, module string, grant []byte) error {
			if string(grant) != job+"/"+tenant+"/"+root+"/"+module {
				return errors.New("not the servers' grant")
			}
			return nil
		}
	}
	if l, ok := a.kv["labels"]; ok {
		cfg.Labels = labels(l)
	}
	n := &harnessNode{name: name, store: newFakeStore(), timers: map[TimerID]Time{}, running: map[WorkerID][]objects.ID{}}
	n.core = New(cfg, n.store)
	h.cores[name] = n
	h.cur = n
}

func labels(s string) map[string]string {
	m := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		k, v, _ := strings.Cut(kv, ":")
		m[k] = v
	}
	return m
}

func workerID(s string) WorkerID {
	n, err := strconv.Atoi(strings.TrimPrefix(s, "w"))
	if err != nil {
		panic("bad worker " + s)
	}
	return WorkerID(n)
}

// current is the execution a worker runs, as the transcript has seen it.
func (n *harnessNode) current(w WorkerID) objects.ID {
	if q := n.running[w]; len(q) > 0 {
		return q[0]
	}
	return objects.NilID
}

// run executes one command and returns what happened.
func (h *harness) run(line string) (out []string) {
	defer func() {
		if r := recover(); r != nil {
			out = append(out, fmt.Sprintf("PANIC: %v", r))
		}
	}()
	f := splitFields(line)
	cmd, a := f[0], parseArgs(f[1:])
	if cmd == "node" {
		h.newNode(a.pos[0], a)
		return nil
	}
	if cmd == "on" { // switch to another node
		h.cur = h.cores[a.pos[0]]
		return nil
	}
	n := h.node()
	var ev Event
	switch cmd {
	case "tick":
		d, err := time.ParseDuration(a.pos[0])
		if err != nil {
			panic(err)
		}
		n.now += d
		var due []TimerID
		for id, at := range n.timers {
			if at <= n.now {
				due = append(due, id)
			}
		}
		sort.Slice(due, func(i, j int) bool { return due[i] < due[j] })
		for _, id := range due {
			delete(n.timers, id)
			out = append(out, h.step(n, TimerFired{Timer: id})...)
		}
		return out
	case "counters": // the running totals metrics read, and each tenant's tasks
		c := n.core.Counters()
		out := []string{fmt.Sprintf("finished=%d failed=%d retries=%d restarts=%d exec-failed=%v", c.TasksFinished, c.TasksFailed, c.TaskRetries, c.ActorRestarts, c.ExecutionsFailed)}
		tt := n.core.TenantTasks()
		for _, tenant := range slices.Sorted(maps.Keys(tt)) {
			t := tt[tenant]
			out = append(out, fmt.Sprintf("tenant %q pending=%d running=%d finished=%d failed=%d", tenant, t.Pending, t.Running, t.Finished, t.Failed))
		}
		return out
	case "stats":
		st := n.core.Stats()
		return []string{fmt.Sprintf("workers=%d objects=%d tasks=%d jobs=%d stored=%d cpu=%s/%s queued=%d heap=%d",
			st.Workers, st.Objects, st.Tasks, st.Jobs, st.Stored, fmtQ(st.Available.CPU), fmtQ(st.Total.CPU), st.Queued, st.Heap)}
	case "objects":
		return h.objects(n)
	case "object-records": // the state API's records of the node's objects
		var out []string
		recs := n.core.ObjectRecords(ObjectFilter{AnyTenant: true})
		sort.Slice(recs, func(i, j int) bool { return h.name(recs[i].ID) < h.name(recs[j].ID) })
		for _, r := range recs {
			s := fmt.Sprintf("%s %s size=%d refs=%d", h.name(r.ID), r.Where, r.Size, r.Refs)
			if r.Remote != "" {
				s += fmt.Sprintf(" remote=%s borrows=%d", r.Remote, r.Borrows)
			}
			if r.Producer != "" {
				s += " producer=" + r.Producer
			}
			if r.Error {
				s += " error"
			}
			if len(r.Copies) > 0 {
				s += fmt.Sprintf(" copies=%v", r.Copies)
			}
			out = append(out, s)
		}
		return append(out, fmt.Sprintf("%d objects", len(recs)))
	case "workers-list": // the state API's records of the node's workers and groups
		var out []string
		ws := n.core.WorkerRecords(TaskFilter{AnyTenant: true})
		sort.Slice(ws, func(i, j int) bool { return ws[i].ID < ws[j].ID })
		for _, w := range ws {
			out = append(out, fmt.Sprintf("w%d %s %s %s running=%s", w.ID, w.Job, w.Kind, w.State, w.Running))
		}
		gs := n.core.GroupRecords(TaskFilter{AnyTenant: true})
		sort.Slice(gs, func(i, j int) bool { return h.name(objects.ID(gs[i].ID)) < h.name(objects.ID(gs[j].ID)) })
		for _, g := range gs {
			out = append(out, fmt.Sprintf("%s %s %s bundles=%d nodes=%v", h.name(objects.ID(g.ID)), g.Strategy, g.State, len(g.Bundles), g.Nodes))
		}
		return append(out, "end")
	case "actors": // actors [state=S]
		var out []string
		recs := n.core.ActorRecords(ActorFilter{AnyTenant: true, State: a.kv["state"]})
		sort.Slice(recs, func(i, j int) bool { return h.name(recs[i].ID) < h.name(recs[j].ID) })
		for _, r := range recs {
			s := fmt.Sprintf("%s %s %s node=%s restarts=%d created=%s", h.name(r.ID), r.Class, r.State, r.Node, r.Restarts, time.Duration(r.Created))
			if r.Name != "" {
				s += fmt.Sprintf(" name=%s ns=%s", r.Name, r.Namespace)
			}
			if r.Tenant != "" {
				s += " tenant=" + r.Tenant
			}
			if r.Cause != "" {
				s += fmt.Sprintf(" cause=%q", firstLine(r.Cause))
			}
			out = append(out, s)
		}
		return append(out, fmt.Sprintf("%d actors", len(recs)))
	case "tasks": // tasks [state=S] [job=J] [name=F] [own=1] [limit=N] [summary=1]
		f := TaskFilter{AnyTenant: true, State: a.kv["state"], Name: a.kv["name"], Own: a.kv["own"] == "1"}
		if tenant, ok := a.kv["tenant"]; ok {
			f.Tenant, f.AnyTenant = tenant, false
		}
		if j, ok := a.kv["job"]; ok {
			f.Job = h.job(j)
		}
		return h.tasks(n, f, a.kv["limit"], a.kv["summary"] == "1")
	case "job":
		argv, _ := wire.Marshal([]any{a.pos[1:]})
		ev = SubmitJob{Job: h.job(a.pos[0]), Digest: "mod", Args: argv, Tenant: a.kv["tenant"]}
		if g, ok := a.kv["grant"]; ok {
			ev = SubmitJob{Job: h.job(a.pos[0]), Digest: "mod", Args: argv, Tenant: a.kv["tenant"], Grant: []byte(g)}
		}
	case "allowance":
		// allowance TENANT cpu=N tasks=N actors=N quota-cpu=N quota-tasks=N quota-actors=N (absent: no bound)
		bound := func(k string) int64 {
			if v, ok := a.kv[k]; ok {
				f, err := strconv.ParseFloat(v, 64)
				if err != nil {
					panic(err)
				}
				return scheduler.Quantity(f)
			}
			return -1
		}
		count := func(k string) int {
			if _, ok := a.kv[k]; ok {
				return a.int(k, 0)
			}
			return -1
		}
		ev = Allowances{Tenants: map[string]scheduler.Allowance{a.pos[0]: {CPU: bound("cpu"), GPU: -1, Memory: -1, Tasks: count("tasks"), Actors: count("actors"),
			Quota: scheduler.Quota{CPU: bound("quota-cpu"), GPU: -1, Memory: -1, Tasks: count("quota-tasks"), Actors: count("quota-actors")}}}}
	case "cancel-job":
		ev = CancelJob{Job: h.job(a.pos[0]), Reason: a.kv["reason"]}
	case "started":
		w := workerID(a.pos[0])
		ev = WorkerStarted{Worker: w, Pid: a.int("pid", 100+int(w))}
	case "start-failed":
		ev = WorkerStartFailed{Worker: workerID(a.pos[0]), Err: a.kv["err"]}
	case "ready":
		ev = WorkerReady{Worker: workerID(a.pos[0])}
	case "load-failed":
		ev = WorkerLoadFailed{Worker: workerID(a.pos[0]), Err: a.kv["err"]}
	case "exited":
		ev = WorkerExited{Worker: workerID(a.pos[0]), Cause: a.kv["cause"]}
	case "stored":
		ev = ValueStored{ID: h.id(a.pos[0]), Err: a.kv["err"]}
	case "reserved":
		ev = Reserved{Worker: workerID(a.pos[0]), Seq: uint64(a.int("seq", 0)), ID: h.id(a.kv["id"]), Off: int64(a.int("off", 0)), Err: a.kv["err"]}
	case "peer-up":
		ev = PeerUp{Node: NodeID(a.pos[0]), Resources: scheduler.Resources{CPU: scheduler.Quantity(float64(a.int("cpu", 1))), Memory: 1 << 30},
			Labels: labels(a.kv["labels"])}
		if a.kv["labels"] == "" {
			ev = PeerUp{Node: NodeID(a.pos[0]), Resources: scheduler.Resources{CPU: scheduler.Quantity(float64(a.int("cpu", 1))), Memory: 1 << 30}}
		}
	case "peer-down":
		ev = PeerDown{Node: NodeID(a.pos[0]), Gone: a.has("gone")}
	case "module":
		ev = ModuleReady{Digest: a.pos[0], Err: a.kv["err"]}
	case "pulled":
		n.store.sealed[h.id(a.pos[0])] = true
		n.store.sizes[h.id(a.pos[0])] = int64(a.int("size", 0))
		ev = ObjectPulled{Job: h.job(a.kv["job"]), ID: h.id(a.pos[0]), Size: int64(a.int("size", 0)), Err: a.kv["err"]}
	case "add-object":
		ev = AddObject{ID: h.id(a.pos[0]), Inline: value(a.kv["value"])}
	case "continue":
		ev = Continue{}
	case "registered": // registered A1 [err=...] [holder=A2 at=n2 class=K]
		e := NameRegistered{Actor: h.id(a.pos[0]), Err: a.kv["err"]}
		if hd := a.kv["holder"]; hd != "" {
			e.Holder = &NamedActor{Actor: h.id(hd), Node: NodeID(a.kv["at"]), Class: a.kv["class"]}
		}
		ev = e
	case "found": // found seq=1 [A1 at=n2 class=K] [err=...]
		e := NameFound{Seq: uint64(a.int("seq", 0)), Err: a.kv["err"]}
		if len(a.pos) > 0 {
			e.Holder = &NamedActor{Actor: h.id(a.pos[0]), Node: NodeID(a.kv["at"]), Class: a.kv["class"]}
		}
		ev = e
	case "delete-object":
		ev = DeleteObject{ID: h.id(a.pos[0])}
	case "from":
		ev = PeerMessage{From: NodeID(a.pos[0]), Msg: h.peerMsg(a)}
	default:
		ev = h.workerMsg(n, cmd, a)
	}
	return h.step(n, ev)
}

func fmtQ(q int64) string { return strconv.FormatFloat(float64(q)/scheduler.Unit, 'f', -1, 64) }

// workerMsg builds a message from a worker.
func (h *harness) workerMsg(n *harnessNode, cmd string, a args) Event {
	w := workerID(a.pos[0])
	task := n.current(w)
	if tk, ok := a.kv["task"]; ok {
		task = h.id(tk)
	}
	seq := uint64(a.int("seq", 1))
	ids := func(k string) []objects.ID {
		var out []objects.ID
		if s := a.kv[k]; s != "" {
			for _, x := range strings.Split(s, ",") {
				out = append(out, h.id(x))
			}
		}
		return out
	}
	var msg any
	switch cmd {
	case "submit", "call":
		tid := h.id(a.pos[1])
		nret := a.int("n", 1)
		rets := make([]objects.ID, max(nret, 1))
		for i := range rets {
			rets[i] = tid.WithIndex(uint32(i + 1))
			h.name(rets[i])
		}
		sub := wire.Submit{Task: task, Spec: h.spec(a), IDs: rets}
		if l, ok := a.kv["lane"]; ok { // run by its process under the lane's lease
			sub.Lane = uint64(workerID(l))
			n.running[workerID(l)] = append(n.running[workerID(l)], tid)
		}
		msg = sub
	case "actor":
		aid := h.id(a.pos[1])
		msg = wire.Submit{Seq: seq, Task: task, Actor: true, Spec: h.spec(a), IDs: []objects.ID{aid}}
	case "done":
		d := wire.Done{Task: task, OK: !a.has("err"), Refs: ids("refs")}
		if v, ok := a.kv["value"]; ok {
			d.Value = wire.Piece{Inline: value(v)}
		}
		if v, ok := a.kv["values"]; ok { // several returns: an array
			d.Value = wire.Piece{Inline: value("[" + v + "]")}
		}
		if c, ok := a.kv["created"]; ok {
			d.Created = h.id(c)
			d.Value = wire.Piece{Arena: true, Size: int64(a.int("size", 1<<20))}
		}
		if !d.OK {
			d.Error, d.Kind = a.kv["err"], a.kv["kind"]
			d.ExitCode = uint32(a.int("code", 0))
		}
		if q := n.running[w]; len(q) > 0 { // a concurrent actor's may end in any order
			if i := slices.Index(q, task); i >= 0 {
				n.running[w] = slices.Delete(q, i, i+1)
			}
		}
		msg = d
	case "dropped":
		tid := h.id(a.pos[1])
		q := n.running[w]
		for i, x := range q {
			if x == tid {
				n.running[w] = append(q[:i:i], q[i+1:]...)
				break
			}
		}
		msg = wire.Done{Task: tid, Dropped: true}
	case "put":
		p := wire.Put{Task: task, ID: h.id(a.pos[1]), Refs: ids("refs")}
		if v, ok := a.kv["value"]; ok {
			p.Data = value(v)
		}
		if a.has("created") {
			p.Created = p.ID
		}
		if s, ok := a.kv["bytes"]; ok {
			k, _ := strconv.Atoi(s)
			p.Data = make([]byte, k)
		}
		p.Item = uint32(a.int("item", 0)) // a generator's yield
		msg = p
	case "create":
		msg = wire.Create{Seq: seq, Task: task, Size: int64(a.int("size", 1<<20)), Result: a.has("result")}
	case "get":
		msg = wire.Get{Seq: seq, Task: task, IDs: ids("ids"), TimeoutMs: int64(a.int("timeout", -1))}
	case "wait":
		msg = wire.Wait{Seq: seq, Task: task, IDs: ids("ids"), NumReady: a.int("num", 1), TimeoutMs: int64(a.int("timeout", -1))}
	case "cancel":
		msg = wire.Cancel{Seq: seq, Task: task, ID: h.id(a.kv["id"]), Force: a.has("force"), Recursive: a.has("recursive")}
	case "release":
		msg = wire.Release{Task: task, IDs: ids("ids")}
	case "unpin":
		msg = wire.Unpin{IDs: ids("ids")}
	case "lookup":
		msg = wire.ActorLookup{Seq: seq, Task: task, Name: a.kv["name"], Namespace: a.kv["ns"], List: a.has("list")}
	case "kill-actor":
		msg = wire.ActorKill{Seq: seq, Task: task, Actor: h.id(a.kv["actor"]), NoRestart: a.has("norestart")}
	case "output":
		msg = wire.Output{Task: task, Stream: uint8(a.int("stream", 1)), Data: []byte(a.kv["data"])}
	case "pg-create":
		spec := abi.GroupSpec{Strategy: a.kv["strategy"], Name: a.kv["name"]}
		if a.has("detached") {
			spec.Lifetime = abi.LifetimeDetached
		}
		for _, b := range strings.Split(a.kv["bundles"], ";") {
			m := map[string]float64{}
			for _, kv := range strings.Split(b, ",") {
				k, v, _ := strings.Cut(kv, ":")
				f, _ := strconv.ParseFloat(v, 64)
				m[k] = f
			}
			spec.Bundles = append(spec.Bundles, m)
		}
		raw, _ := wire.Marshal(spec)
		if a.has("garbage") {
			raw = []byte{0xff}
		}
		msg = wire.GroupCreate{Task: task, Spec: raw, ID: h.id(a.pos[1])}
	case "pg-wait":
		msg = wire.GroupWait{Seq: seq, Task: task, Group: h.id(a.pos[1]), TimeoutMs: int64(a.int("timeout", -1))}
	case "pg-remove":
		msg = wire.GroupRemove{Task: task, Group: h.id(a.pos[1])}
	case "lease-over":
		msg = wire.LeaseOver{}
	case "raw":
		msg = struct{}{} // a message of no known kind
	default:
		panic("unknown command " + cmd)
	}
	return WorkerMessage{Worker: w, Msg: msg}
}

// spec builds a task spec from fn=, args=, refs=, n= and options.
func (h *harness) spec(a args) []byte {
	if a.has("garbage") {
		return []byte{0xff, 0x00}
	}
	s := abi.TaskSpec{Func: a.kv["fn"], NumReturns: a.int("n", 0)}
	if c, ok := a.kv["class"]; ok {
		s.Func = c
	}
	if x := a.kv["args"]; x != "" {
		for _, arg := range strings.Split(x, ",") {
			if strings.HasPrefix(arg, "@") {
				id := h.id(arg[1:])
				s.Args = append(s.Args, abi.Arg{Ref: id[:]})
			} else {
				s.Args = append(s.Args, abi.Arg{Value: value(arg)})
			}
		}
	}
	if x := a.kv["refs"]; x != "" {
		for _, r := range strings.Split(x, ",") {
			id := h.id(r)
			s.Refs = append(s.Refs, id[:])
		}
	}
	if v, ok := a.kv["cpu"]; ok {
		f, _ := strconv.ParseFloat(v, 64)
		s.Options.CPU = &f
	}
	if v, ok := a.kv["gpu"]; ok {
		s.Options.GPU, _ = strconv.ParseFloat(v, 64)
	}
	if _, ok := a.kv["mem"]; ok {
		s.Options.Memory = int64(a.int("mem", 0))
	}
	if _, ok := a.kv["retries"]; ok {
		r := a.int("retries", 0)
		s.Options.MaxRetries = &r
	}
	s.Options.RetryExceptions = a.has("retry-exc")
	s.Options.TimeoutMs = int64(a.int("timeout", 0))
	s.Options.Name = a.kv["name"]
	s.Options.GetIfExists = a.has("get-if-exists")
	s.Options.MaxRestarts = a.int("restarts", 0)
	s.Options.MaxTaskRetries = a.int("task-retries", 0)
	s.Options.MaxConcurrency = a.int("concurrency", 0)
	s.Options.Generator = a.has("generator")
	s.Options.Namespace = a.kv["ns"]
	if a.has("detached") {
		s.Options.Lifetime = abi.LifetimeDetached
	}
	s.Options.ConcurrencyGroup = a.kv["cgroup"]
	if g, ok := a.kv["groups"]; ok { // name:limit,...
		s.Options.ConcurrencyGroups = map[string]int{}
		for _, kv := range strings.Split(g, ",") {
			name, limit, _ := strings.Cut(kv, ":")
			s.Options.ConcurrencyGroups[name], _ = strconv.Atoi(limit)
		}
	}
	if l, ok := a.kv["labels"]; ok {
		s.Options.Labels = labels(l)
	}
	if act, ok := a.kv["actor"]; ok {
		id := h.id(act)
		s.Actor = id[:]
	}
	if g, ok := a.kv["group"]; ok {
		id := h.id(g)
		s.Options.Group = id[:]
		if _, ok := a.kv["bundle"]; ok {
			b := a.int("bundle", 0)
			s.Options.Bundle = &b
		}
	}
	return s.AppendCBOR(nil)
}

// peerMsg builds a message from another node: `from n2 <kind> key=value`.
func (h *harness) peerMsg(a args) peerwire.Message {
	job := a.kv["job"]
	ids := func(k string) []objects.ID {
		var out []objects.ID
		if s := a.kv[k]; s != "" {
			for _, x := range strings.Split(s, ",") {
				out = append(out, h.id(x))
			}
		}
		return out
	}
	switch a.pos[1] {
	case "run_task":
		m := &peerwire.RunTask{Job: job, Root: a.kv["root"], Digest: "mod", Task: h.id(a.kv["task"]), Attempt: uint32(a.int("attempt", 1)),
			Spec: h.spec(a), Refs: ids("export"), Incarnation: uint64(a.int("inc", 0)), Tenant: a.kv["tenant"]}
		if g, ok := a.kv["grant"]; ok {
			m.Grant = []byte(g)
		}
		if d, ok := a.kv["digest"]; ok {
			m.Digest = d
		}
		switch a.kv["what"] {
		case "create":
			m.What, m.Actor = peerwire.RunActorCreate, h.id(a.kv["actor"])
			m.Spec = h.spec(args{kv: map[string]string{"class": a.kv["class"], "args": a.kv["args"]}})
		case "call":
			m.What = peerwire.RunActorCall
		}
		return m
	case "task_done":
		m := &peerwire.TaskDone{Job: job, Task: h.id(a.kv["task"]), Attempt: uint32(a.int("attempt", 1)), Refused: a.kv["refused"], Refs: ids("refs")}
		if e, ok := a.kv["error"]; ok {
			kind := abi.KindTask
			if k, ok := a.kv["error-kind"]; ok {
				kind = abi.ErrorKind(k)
			}
			m.Error, _ = wire.Marshal(abi.ErrorValue{Kind: kind, Message: e})
		}
		if v, ok := a.kv["value"]; ok {
			m.Results = append(m.Results, peerwire.Result{Value: value(v)})
		}
		if held, ok := a.kv["held"]; ok {
			m.Results = append(m.Results, peerwire.Result{Held: true, ID: h.id(held), Size: int64(a.int("size", 1<<20))})
		}
		if free, ok := a.kv["busy"]; ok { // free CPUs
			cpu, err := strconv.ParseFloat(free, 64)
			if err != nil {
				panic(err)
			}
			m.Busy, _ = wire.Marshal(scheduler.Resources{CPU: int64(cpu * scheduler.Unit)})
		}
		return m
	case "task_yield":
		m := &peerwire.TaskYield{Job: job, Task: h.id(a.kv["task"]), Attempt: uint32(a.int("attempt", 1)), Index: uint32(a.int("index", 2)), Refs: ids("refs")}
		if v, ok := a.kv["value"]; ok {
			m.Result = peerwire.Result{Value: value(v)}
		}
		if held, ok := a.kv["held"]; ok {
			m.Result = peerwire.Result{Held: true, ID: h.id(held), Size: int64(a.int("size", 1<<20))}
		}
		return m
	case "cancel_task":
		return &peerwire.CancelTask{Job: job, Task: h.id(a.kv["task"]), Attempt: uint32(a.int("attempt", 1)), Force: a.has("force")}
	case "get_object":
		id := h.id(a.kv["id"])
		return &peerwire.GetObject{Job: job, ID: id, For: h.id(a.kv["for"])}
	case "object_value":
		m := &peerwire.ObjectValue{Job: job, ID: h.id(a.kv["id"]), For: h.id(a.kv["for"]), Missing: a.kv["missing"],
			Stored: a.has("stored"), Size: int64(a.int("size", 0)), Refs: ids("refs")}
		if v, ok := a.kv["value"]; ok {
			m.Inline = value(v)
		}
		return m
	case "release":
		m := &peerwire.Release{Job: job, IDs: ids("ids")}
		for range m.IDs {
			m.Counts = append(m.Counts, uint32(a.int("count", 1)))
		}
		return m
	case "end_job":
		return &peerwire.EndJob{Job: job}
	case "output":
		return &peerwire.Output{Job: job, Data: []byte(a.kv["data"])}
	case "actor_died":
		return &peerwire.ActorDied{Job: job, Actor: h.id(a.kv["actor"]), Incarnation: uint64(a.int("inc", 1)), Cause: a.kv["cause"]}
	case "register_actor":
		return &peerwire.RegisterActor{Job: job, Actor: h.id(a.kv["actor"]), Class: a.kv["class"]}
	case "actor_registered":
		return &peerwire.ActorRegistered{Job: job, Actor: h.id(a.kv["actor"]), Err: a.kv["err"]}
	case "share_opened":
		return &peerwire.ShareOpened{Job: job, Grant: []byte(a.kv["grant"])}
	case "kill_actor":
		return &peerwire.KillActor{Job: job, Actor: h.id(a.kv["actor"]), Incarnation: uint64(a.int("inc", 1)), NoRestart: a.has("norestart")}
	}
	panic("unknown peer message " + a.pos[1])
}

// step applies an event and describes its effects.
func (h *harness) step(n *harnessNode, ev Event) []string {
	n.core.Step(n.now, ev)
	var out []string
	for _, e := range n.core.Effects() {
		out = append(out, h.describe(n, e))
	}
	return out
}

func (h *harness) describe(n *harnessNode, e Effect) string {
	switch e := e.(type) {
	case StartWorker:
		if e.Process != "" {
			return fmt.Sprintf("start w%d job=%s process=%s", e.Worker, e.Job, e.Process)
		}
		return fmt.Sprintf("start w%d job=%s", e.Worker, e.Job)
	case KillWorker:
		return fmt.Sprintf("kill w%d", e.Worker)
	case SendWorker:
		return fmt.Sprintf("-> w%d %s", e.Worker, h.workerSend(n, e))
	case SetTimer:
		n.timers[e.Timer] = e.At
		return fmt.Sprintf("timer t%d at=%s", e.Timer, e.At)
	case StopTimer:
		delete(n.timers, e.Timer)
		return fmt.Sprintf("stop-timer t%d", e.Timer)
	case JobOutput:
		stream := "stdout"
		if e.Stderr {
			stream = "stderr"
		}
		return fmt.Sprintf("output %s %s %q", e.Job, stream, e.Data)
	case JobResult:
		if e.Err == "" {
			return fmt.Sprintf("result %s ok", e.Job)
		}
		return fmt.Sprintf("result %s err=%q", e.Job, e.Err)
	case JobEnded:
		return fmt.Sprintf("ended %s", e.Job)
	case Log:
		return fmt.Sprintf("log %q", e.Text)
	case Reserve:
		n.store.sealed[e.ID] = false // reserved; the test answers with reserved
		n.store.sizes[e.ID] = e.Size
		return fmt.Sprintf("reserve w%d seq=%d id=%s size=%d", e.Worker, e.Seq, h.name(e.ID), e.Size)
	case StoreValue:
		n.store.sealed[e.ID] = true // stored at once, as far as the fake knows
		n.store.sizes[e.ID] = int64(len(e.Data))
		return fmt.Sprintf("store %s bytes=%d", h.name(e.ID), len(e.Data))
	case PeerSend:
		return fmt.Sprintf("-> %s %s", e.Node, h.peerSend(e.Msg))
	case FetchModule:
		return fmt.Sprintf("fetch-module %s from=%s", e.Digest, e.From)
	case PullObject:
		return fmt.Sprintf("pull %s from=%s as=%s size=%d job=%s", h.name(e.ID), e.From, h.name(e.As), e.Size, e.Job)
	case TrimStore:
		return "trim"
	case RegisterName:
		kind := "register-name"
		if e.Group {
			kind = "register-group-name"
		}
		out := fmt.Sprintf(kind+" %s ns=%q name=%q job=%s class=%s", h.name(e.Actor), e.Namespace, e.Name, e.Job, e.Class)
		if e.Detached {
			out += " detached"
		}
		if !e.Replaces.IsNil() {
			out += " replaces=" + h.name(e.Replaces)
		}
		if e.Tenant != "" {
			out += " tenant=" + e.Tenant
		}
		return out
	case UnregisterName:
		if e.Group {
			return fmt.Sprintf("unregister-group-name %s ns=%q name=%q job=%s", h.name(e.Actor), e.Namespace, e.Name, e.Job)
		}
		return fmt.Sprintf("unregister-name %s ns=%q name=%q job=%s", h.name(e.Actor), e.Namespace, e.Name, e.Job)
	case LookupName:
		if e.Tenant != "" {
			return fmt.Sprintf("lookup-name seq=%d ns=%q name=%q job=%s tenant=%s", e.Seq, e.Namespace, e.Name, e.Job, e.Tenant)
		}
		return fmt.Sprintf("lookup-name seq=%d ns=%q name=%q job=%s", e.Seq, e.Namespace, e.Name, e.Job)
	case Yield:
		return "yield"
	}
	return fmt.Sprintf("%T %+v", e, e)
}

func (h *harness) workerSend(n *harnessNode, e SendWorker) string {
	switch m := e.Msg.(type) {
	case wire.Exec:
		n.running[e.Worker] = append(n.running[e.Worker], m.Task)
		var args []string
		for i, p := range m.Args {
			if i == 0 && m.Kind != wire.ExecMain {
				continue // the array's head
			}
			switch {
			case p.Arena:
				args = append(args, "arena")
			case p.Path != "":
				args = append(args, "file")
			default:
				args = append(args, show(p.Inline))
			}
		}
		s := fmt.Sprintf("exec %s %s(%s)", h.name(m.Task), m.Name, strings.Join(args, ", "))
		if len(m.Unpin) > 0 {
			s += " pins=" + h.names_(m.Unpin)
		}
		if m.Serve {
			if m.Group != "" {
				s += " group=" + m.Group
			}
			s += fmt.Sprintf(" serve limit=%d", m.Limit)
		}
		return s
	case wire.Reply:
		if m.Error != "" {
			return fmt.Sprintf("reply seq=%d err=%q", m.Seq, m.Error)
		}
		s := fmt.Sprintf("reply seq=%d", m.Seq)
		if m.Code != 0 {
			s += fmt.Sprintf(" code=%d", m.Code)
		}
		if len(m.IDs) > 0 {
			s += " ids=" + h.names_(m.IDs)
		}
		if m.Off != 0 {
			s += fmt.Sprintf(" off=%d", m.Off)
		}
		for _, it := range m.Items {
			switch {
			case it.IsError:
				s += " " + showError(it.Data.Inline)
			case it.Data.Arena:
				s += " arena"
			case it.Data.Path != "":
				s += " file"
			default:
				s += " " + show(it.Data.Inline)
			}
		}
		if m.Ready != nil {
			s += fmt.Sprintf(" ready=%v", m.Ready)
		}
		return s
	case wire.Drop:
		return fmt.Sprintf("drop %s", h.name(m.Task))
	case wire.Stop:
		if m.Soft {
			return fmt.Sprintf("stop %s soft", h.name(m.Task))
		}
		return fmt.Sprintf("stop %s", h.name(m.Task))
	case wire.Lease:
		return fmt.Sprintf("lease fn=%s opts=%x", m.Fn, m.Opts)
	case wire.LeaseEnd:
		return "lease_end"
	}
	return fmt.Sprintf("%T", e.Msg)
}

func (h *harness) peerSend(m peerwire.Message) string {
	switch m := m.(type) {
	case *peerwire.RunTask:
		var spec abi.TaskSpec
		_ = wire.Unmarshal(m.Spec, &spec)
		var args []string
		for _, a := range spec.Args {
			if a.Ref != nil {
				args = append(args, "@"+h.name(objects.ID(a.Ref)))
			} else {
				args = append(args, show(a.Value))
			}
		}
		what := []string{"task", "create", "call"}[m.What]
		s := fmt.Sprintf("run_task %s job=%s task=%s attempt=%d %s(%s)", what, m.Job, h.name(m.Task), m.Attempt, spec.Func, strings.Join(args, ", "))
		if len(m.Refs) > 0 {
			s += " export=" + h.names_(m.Refs)
		}
		if m.What == peerwire.RunActorCreate {
			s += fmt.Sprintf(" actor=%s inc=%d", h.name(m.Actor), m.Incarnation)
		}
		if m.What == peerwire.RunActorCall {
			s += fmt.Sprintf(" inc=%d", m.Incarnation)
		}
		if len(m.Grant) > 0 {
			s += fmt.Sprintf(" grant=%s", m.Grant)
		}
		return s
	case *peerwire.TaskDone:
		s := fmt.Sprintf("task_done job=%s task=%s attempt=%d", m.Job, h.name(m.Task), m.Attempt)
		if m.Refused != "" {
			s += fmt.Sprintf(" refused=%q", m.Refused)
		}
		if m.Error != nil {
			s += " " + showError(m.Error)
		}
		for _, r := range m.Results {
			if r.Held {
				s += fmt.Sprintf(" held=%s size=%d", h.name(r.ID), r.Size)
			} else {
				s += " value=" + show(r.Value)
			}
		}
		if len(m.Refs) > 0 {
			s += " refs=" + h.names_(m.Refs)
		}
		if m.Busy != nil {
			var free scheduler.Resources
			_ = wire.Unmarshal(m.Busy, &free)
			s += fmt.Sprintf(" busy=%g", float64(free.CPU)/scheduler.Unit)
		}
		return s
	case *peerwire.TaskYield:
		s := fmt.Sprintf("task_yield job=%s task=%s attempt=%d index=%d", m.Job, h.name(m.Task), m.Attempt, m.Index)
		switch {
		case m.Error != nil:
			s += " " + showError(m.Error)
		case m.Result.Held:
			s += fmt.Sprintf(" held=%s size=%d", h.name(m.Result.ID), m.Result.Size)
		default:
			s += " value=" + show(m.Result.Value)
		}
		if len(m.Refs) > 0 {
			s += " refs=" + h.names_(m.Refs)
		}
		return s
	case *peerwire.CancelTask:
		s := fmt.Sprintf("cancel_task job=%s task=%s attempt=%d", m.Job, h.name(m.Task), m.Attempt)
		if m.Force {
			s += " force"
		}
		return s
	case *peerwire.GetObject:
		return fmt.Sprintf("get_object job=%s id=%s for=%s", m.Job, h.name(m.ID), h.name(m.For))
	case *peerwire.ObjectValue:
		s := fmt.Sprintf("object_value job=%s id=%s for=%s", m.Job, h.name(m.ID), h.name(m.For))
		switch {
		case m.Missing != "":
			s += fmt.Sprintf(" missing=%q", m.Missing)
		case m.Stored:
			s += fmt.Sprintf(" stored size=%d", m.Size)
		case m.IsError:
			s += " " + showError(m.Inline)
		default:
			s += " value=" + show(m.Inline)
		}
		if len(m.Refs) > 0 {
			s += " refs=" + h.names_(m.Refs)
		}
		return s
	case *peerwire.Release:
		parts := make([]string, len(m.IDs))
		for i, id := range m.IDs {
			parts[i] = fmt.Sprintf("%s:%d", h.name(id), m.Counts[i])
		}
		return fmt.Sprintf("release job=%s %s", m.Job, strings.Join(parts, ","))
	case *peerwire.EndJob:
		return fmt.Sprintf("end_job job=%s", m.Job)
	case *peerwire.ShareOpened:
		return fmt.Sprintf("share_opened job=%s grant=%s", m.Job, m.Grant)
	case *peerwire.Output:
		return fmt.Sprintf("output job=%s %q", m.Job, m.Data)
	case *peerwire.ActorDied:
		return fmt.Sprintf("actor_died job=%s actor=%s inc=%d cause=%q", m.Job, h.name(m.Actor), m.Incarnation, m.Cause)
	case *peerwire.RegisterActor:
		return fmt.Sprintf("register_actor job=%s actor=%s class=%s", m.Job, h.name(m.Actor), m.Class)
	case *peerwire.ActorRegistered:
		return fmt.Sprintf("actor_registered job=%s actor=%s err=%q", m.Job, h.name(m.Actor), m.Err)
	case *peerwire.KillActor:
		return fmt.Sprintf("kill_actor job=%s actor=%s inc=%d norestart=%v", m.Job, h.name(m.Actor), m.Incarnation, m.NoRestart)
	}
	return fmt.Sprintf("%T", m)
}

// objects lists the core's objects with their counts.
// tasks prints the task records f selects, a line each, or their
// summary.
func (h *harness) tasks(n *harnessNode, f TaskFilter, limit string, summary bool) []string {
	var out []string
	if summary {
		for _, c := range n.core.TaskSummary(f) {
			out = append(out, fmt.Sprintf("%s %s %s=%d", c.Name, c.Kind, c.State, c.Count))
		}
		return append(out, "end")
	}
	lim, _ := strconv.Atoi(limit)
	recs, total := n.core.TaskRecords(f, lim)
	for _, r := range recs {
		s := fmt.Sprintf("%s %s %s %s node=%s attempt=%d submitted=%s", h.name(r.ID), r.Name, r.Kind, r.State, r.Node, r.Attempt, time.Duration(r.Submitted))
		for _, t := range []struct {
			name string
			at   Time
		}{{"placed", r.Placed}, {"started", r.Started}, {"ended", r.Ended}} {
			if t.at != 0 {
				s += fmt.Sprintf(" %s=%s", t.name, time.Duration(t.at))
			}
		}
		if r.Tenant != "" {
			s += " tenant=" + r.Tenant
		}
		if r.For != "" {
			s += " for=" + string(r.For)
		}
		if r.Actor != (objects.ID{}) {
			s += " actor=" + h.name(r.Actor)
		}
		if r.Error != "" {
			s += fmt.Sprintf(" error=%s:%q", r.ErrorKind, firstLine(r.Error))
		}
		out = append(out, s)
	}
	return append(out, fmt.Sprintf("%d of %d", len(recs), total))
}

func (h *harness) objects(n *harnessNode) []string {
	var out []string
	for _, id := range sortedIDs(n.core.objs) {
		o := n.core.objs[id]
		s := fmt.Sprintf("%s refs=%d", h.name(id), o.refs)
		if o.ready {
			s += " ready"
		}
		if o.stored {
			s += " stored"
		}
		if o.remote != "" {
			s += fmt.Sprintf(" remote=%s borrows=%d", o.remote, o.borrows)
		}
		if o.fetching {
			s += " fetching"
		}
		out = append(out, s)
	}
	sort.Strings(out)
	if len(out) == 0 {
		out = []string{"none"}
	}
	return out
}

// checkInvariants checks what must hold after any step.
func (h *harness) checkInvariants() {
	for name, n := range h.cores {
		if err := n.core.CheckInvariants(); err != nil {
			h.t.Errorf("node %s: %v", name, err)
		}
	}
}

// TestEveryEffectDescribed: the transcripts print every kind of effect in
// their own words, and every event and effect is of its interface.
func TestEveryEffectDescribed(t *testing.T) {
	h := newHarness(t)
	n := h.node()
	effects := []Effect{StartWorker{}, KillWorker{}, SendWorker{Msg: wire.Drop{}}, SetTimer{}, StopTimer{}, JobOutput{}, JobResult{},
		JobEnded{}, Log{}, Reserve{}, StoreValue{}, PeerSend{Msg: &peerwire.EndJob{}}, FetchModule{}, PullObject{}, TrimStore{}, Yield{}}
	for _, e := range effects {
		e.effect()
		if d := h.describe(n, e); strings.Contains(d, "core.") {
			t.Errorf("%T is not described: %s", e, d)
		}
	}
}

// TestDetachedActorsBounded: a node keeps at most maxDetachedActors
// detached actors, since no job's end frees them: one more is refused,
// with a message that says what to do, and killing one makes room.
func TestDetachedActorsBounded(t *testing.T) {
	h := newHarness(t)
	for _, cmd := range []string{"job j1", "started w1", "ready w1"} {
		h.run(cmd)
	}
	for i := range maxDetachedActors {
		got := h.run(fmt.Sprintf("actor w1 A%d seq=%d class=K name=k%d detached", i, i+1, i))
		if strings.Contains(strings.Join(got, "\n"), "err=") {
			t.Fatalf("detached actor %d refused: %v", i, got)
		}
	}
	got := strings.Join(h.run(fmt.Sprintf("actor w1 A%d seq=%d class=K name=extra detached", maxDetachedActors, maxDetachedActors+1)), "\n")
	if !strings.Contains(got, "the node has 256 detached actors, the most it keeps; kill some") {
		t.Fatalf("one past the bound: %s", got)
	}
	h.run(fmt.Sprintf("kill-actor w1 seq=%d actor=A0 norestart", maxDetachedActors+2))
	got = strings.Join(h.run(fmt.Sprintf("actor w1 A%d seq=%d class=K name=again detached", maxDetachedActors+1, maxDetachedActors+3)), "\n")
	if strings.Contains(got, "err=") {
		t.Fatalf("after a kill: %s", got)
	}
}
