//go:build wasip1

// Hostile is a guest that misbehaves in the way its first argument names,
// then shows that the node still serves by running an ordinary task.
package main

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/wasmfabric/fabric/sdk"
)

var answer = sdk.Task0("answer", func() (int, error) { return 42, nil })

// markup is a task whose name and error are HTML, for the dashboard's
// test: a page that put them in as markup would run them.
var markup = sdk.Task0(`<img src=x onerror="document.title='pwned'">`, func() (int, error) {
	return 0, errors.New(`<script>document.title='pwned'</script><b>bold</b>`)
})

// keeper is an actor that only answers, for listings of live actors.
type keeper struct{}

var keeperClass = sdk.Actor("Keeper", func() (*keeper, error) { return &keeper{}, nil })

var keeperPing = sdk.NewMethod0(keeperClass, "ping", func(*keeper) (int, error) { return 1, nil })

var panicky = sdk.Task0("panicky", func() (int, error) { panic("boom: the guest panicked") })

var spin = sdk.Task0("spin", func() (int, error) {
	x := 0
	for {
		x++
	}
}, sdk.TaskTimeout(time.Second))

var spinForever = sdk.Task0("spin_forever", func() (int, error) {
	x := 0
	for {
		x++
	}
})

// spinBriefly loops without calls past its deadline of 100 ms, beside
// siblings in the same worker process (half a CPU each, so that two run
// at once on a 2-CPU node, and the rest on lanes of the same process).
var spinBriefly = sdk.Task0("spin_briefly", func() (int, error) {
	x := 0
	for {
		x++
	}
}, sdk.TaskTimeout(100*time.Millisecond), sdk.CPUs(0.5))

// hold runs for ms milliseconds on one CPU and returns when it started
// and ended (Unix nanoseconds).
var hold = sdk.Task1("hold", func(ms int) ([2]int64, error) {
	start := time.Now().UnixNano()
	time.Sleep(time.Duration(ms) * time.Millisecond)
	return [2]int64{start, time.Now().UnixNano()}, nil
}, sdk.CPUs(1))

// overlap runs n hold tasks at once and prints how many ran at the same
// time at most: a tenant's quota on what runs bounds it.
func overlap(n, ms int) error {
	refs := make([]sdk.Ref[[2]int64], n)
	for i := range refs {
		refs[i] = hold.Remote(ms)
	}
	var spans [][2]int64
	for _, r := range refs {
		v, err := r.Get()
		if err != nil {
			return err
		}
		spans = append(spans, v)
	}
	most := 0
	for _, a := range spans {
		at := 0
		for _, b := range spans {
			if b[0] <= a[0] && a[0] < b[1] {
				at++
			}
		}
		most = max(most, at)
	}
	fmt.Printf("overlap: %d tasks, at most %d at once\n", n, most)
	var b strings.Builder
	for i, sp := range spans {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%d-%d", sp[0], sp[1])
	}
	fmt.Printf("spans: %s\n", b.String())
	return nil
}

// sibling computes for a while: the sum of i*i mod 1000003 for i < n.
var sibling = sdk.Task1("sibling", func(n int) (int, error) {
	s := 0
	for i := 0; i < n; i++ {
		s = (s + i*i) % 1000003
	}
	return s, nil
}, sdk.CPUs(0.5))

func siblingWant(n int) int {
	s := 0
	for i := 0; i < n; i++ {
		s = (s + i*i) % 1000003
	}
	return s
}

// maybeSpin is short unless asked to spin: once its calls are known to be
// short, the driver's process runs them itself under a lease, spinning
// one too; its deadline must still stop it.
var maybeSpin = sdk.Task1("maybe_spin", func(spin bool) (int, error) {
	x := 0
	for spin {
		x++
	}
	return 7, nil
}, sdk.TaskTimeout(500*time.Millisecond))

var keep [][]byte

var membomb = sdk.Task0("membomb", func() (int, error) {
	for {
		b := make([]byte, 1<<20)
		for i := range b {
			b[i] = 1
		}
		keep = append(keep, b)
	}
}, sdk.MaxRetries(0))

func recurse(n int) int {
	var pad [64]byte
	pad[n%64] = byte(n)
	//lint:ignore SA5007 runaway recursion is what this guest tests
	return recurse(n+1) + int(pad[0])
}

var recursion = sdk.Task0("recursion", func() (int, error) { return recurse(0), nil }, sdk.MaxRetries(0))

var flood = sdk.Task0("flood", func() (int, error) {
	fmt.Print("\x1b[31mred\x1b[0m \x1b]0;title\x07done\n")
	line := strings.Repeat("x", 1023) + "\n"
	for range 20 << 10 { // 20 MiB
		os.Stdout.WriteString(line)
	}
	return 0, nil
})

//go:wasmimport fabric get
func rawGet(ids, n uint32, timeoutMs int64) int32

//go:wasmimport fabric put
func rawPut(ptr, n, refs, nrefs, idOut uint32) int32

//go:wasmimport fabric submit
func rawSubmit(spec, specLen, idsOut, idsCap uint32) int32

//go:wasmimport fabric staged_read
func rawStagedRead(i, ptr, n uint32) int32

//go:wasmimport fabric wait
func rawWait(ids, n, numReady uint32, timeoutMs int64, readyOut uint32) int32

//go:wasmimport fabric release
func rawRelease(ids, n uint32) int32

//go:wasmimport fabric return_value
func rawReturnValue(ptr, n uint32)

var badPointers = sdk.Task0("bad_pointers", func() (string, error) {
	const far = 0xfffffff0
	var id [20]byte
	idp := uint32(uintptr(unsafe.Pointer(&id[0])))
	results := []int32{
		rawGet(far, 1, 0),
		rawGet(idp, 1<<30, 0),
		rawPut(far, 100, 0, 0, idp),
		rawPut(idp, 20, 0, 0, far),
		rawSubmit(far, 10, idp, 1),
		rawStagedRead(0, far, 10),
		rawWait(far, 3, 1, 0, idp),
		rawRelease(far, 5),
		rawGet(idp, 1, 0), // a well-formed pointer to an unknown ID
	}
	for i, r := range results {
		if r >= 0 {
			return "", fmt.Errorf("bad call %d returned %d, want an error", i, r)
		}
	}
	return fmt.Sprintf("%d bad host calls rejected", len(results)), nil
})

var badReturn = sdk.Task0("bad_return", func() (int, error) {
	rawReturnValue(0xfffffff0, 64)
	return 0, nil
})

// link is one object of a chain: each holds a reference to the one before.
type link struct {
	N    int
	Prev sdk.Ref[link]
}

// chain puts n objects, each nesting a reference to the one before, keeps
// only the last, and releases it: the agent drops the whole chain at once.
func chain(n int) error {
	prev, err := sdk.Put(link{N: 0})
	if err != nil {
		return err
	}
	for i := 1; i < n; i++ {
		next, err := sdk.Put(link{N: i, Prev: prev})
		if err != nil {
			return err
		}
		prev.Release() // the chain keeps it
		prev = next
		if i%500_000 == 0 {
			fmt.Printf("chain: %d links\n", i)
		}
	}
	last, err := prev.Get()
	if err != nil {
		return fmt.Errorf("the chain's last link: %w", err)
	}
	prev.Release()
	fmt.Printf("chain: %d links made and released\n", last.N+1)
	return nil
}

// smallPuts keeps puts of 100 KiB until the node refuses them, then lets
// them all go.
func smallPuts(n int) error {
	refs := make([]sdk.Ref[[]byte], 0, n)
	value := make([]byte, 100<<10-16)
	refused := 0
	for i := range n {
		r, err := sdk.Put(value)
		if err != nil {
			return err
		}
		refs = append(refs, r)
		if i%1000 == 999 {
			if _, err := r.Get(); err != nil {
				refused++
				if refused == 1 {
					fmt.Printf("smallputs: refused after about %d puts: %v\n", i, firstLine(err))
				}
			}
		}
	}
	sdk.ReleaseAll(refs)
	fmt.Printf("smallputs: %d puts, refusals seen %d times\n", n, refused)
	return nil
}

// bigPuts keeps puts of mib MiB, each got back to see it stored, until
// one fails or n are held; then holds them for hold before letting go.
// bytesSpread returns MIB mebibytes, its tasks spread over the nodes: the
// driver's get pulls those made elsewhere (object transfers).
var bytesSpread = sdk.Task1("bytes_spread", func(mib int) ([]byte, error) {
	b := make([]byte, mib<<20)
	for i := range b {
		b[i] = byte(i * 7)
	}
	return b, nil
}, sdk.SchedulingStrategy("SPREAD"))

func bigPuts(n, mib int, hold time.Duration) error {
	refs := make([]sdk.Ref[[]byte], 0, n)
	value := make([]byte, mib<<20)
	for i := range n {
		value[0] = byte(i)
		r, err := sdk.Put(value)
		if err == nil {
			_, err = r.Get()
		}
		if err != nil {
			fmt.Printf("bigputs: %d puts of %d MiB held, then: %v\n", i, mib, firstLine(err))
			break
		}
		refs = append(refs, r)
	}
	if len(refs) == n {
		fmt.Printf("bigputs: all %d puts of %d MiB held\n", n, mib)
	}
	time.Sleep(hold)
	sdk.ReleaseAll(refs)
	return nil
}

// memHold touches mib MiB and holds it for ms: a task that declares no
// CPU and no memory, whose use only its tenant's control group bounds.
var memHold = sdk.Task2("mem_hold", func(mib, ms int) (int, error) {
	keep := make([][]byte, 0, mib)
	for range mib {
		b := make([]byte, 1<<20)
		for i := 0; i < len(b); i += 4096 {
			b[i] = 1
		}
		keep = append(keep, b)
	}
	time.Sleep(time.Duration(ms) * time.Millisecond)
	return len(keep), nil
}, sdk.CPUs(0), sdk.MaxRetries(0))

// burn spins for ms, declaring no CPU.
var burn = sdk.Task1("burn", func(ms int) (int, error) {
	end := time.Now().Add(time.Duration(ms) * time.Millisecond)
	n := 0
	for time.Now().Before(end) {
		for range 10000 {
			n++
		}
	}
	return n, nil
}, sdk.CPUs(0))

// work computes a fixed amount on the one CPU it declares and returns
// how long it took (ns).
var work = sdk.Task1("work", func(n int) (int64, error) {
	start := time.Now()
	s := 0
	for i := 0; i < n; i++ {
		s = (s + i*i) % 1000003
	}
	if s < 0 {
		return 0, nil
	}
	return int64(time.Since(start)), nil
}, sdk.CPUs(1))

func init() { sdk.Main(run) }

func run(args []string) error {
	if len(args) == 0 {
		return errors.New("usage: hostile actors|markup|panic|timeout|deadline|lease_spin|loop|overlap|ticks|membomb|recursion|flood|loud|chain|smallputs|bigputs|spreadbytes|memhold|burn|work|badptr")
	}
	switch args[0] {
	case "panic":
		_, err := panicky.Remote().Get()
		fmt.Printf("get returned: %v\n", err)
	case "timeout":
		if _, err := answer.Remote().Get(); err != nil { // a warm worker, so the clock measures the timeout
			return err
		}
		start := time.Now()
		_, err := spin.Remote().Get()
		fmt.Printf("get returned: %v (is timeout: %v)\n", err, errors.Is(err, sdk.ErrTaskTimeout))
		// The task's timeout is 1 s: it must fail within 1 s more.
		fmt.Printf("failed within the timeout plus 1s: %v (%s)\n", time.Since(start) < 2*time.Second, time.Since(start).Round(time.Millisecond))
	case "deadline": // a deadline on one of several tasks running in one worker process
		if _, err := sdk.GetAll([]sdk.Ref[int]{sibling.Remote(1), sibling.Remote(1), sibling.Remote(1), sibling.Remote(1)}); err != nil {
			return err // warm lanes, so that the clock measures the deadline
		}
		const n = 20_000_000
		sibs := []sdk.Ref[int]{sibling.Remote(n), sibling.Remote(n + 1), sibling.Remote(n + 2)}
		start := time.Now()
		_, err := spinBriefly.Remote().Get()
		late := time.Since(start) - 100*time.Millisecond
		fmt.Printf("deadline: %v (is timeout: %v)\n", err, errors.Is(err, sdk.ErrTaskTimeout))
		fmt.Printf("deadline: stopped within 50ms of it: %v (%s after)\n", late <= 50*time.Millisecond, late.Round(time.Millisecond))
		vs, err := sdk.GetAll(sibs)
		ok := err == nil && vs[0] == siblingWant(n) && vs[1] == siblingWant(n+1) && vs[2] == siblingWant(n+2)
		fmt.Printf("deadline: siblings correct: %v %v\n", ok, err)
	case "lease_spin": // a call under a lease that spins past its deadline
		for range 30 {
			if _, err := maybeSpin.Remote(false).Get(); err != nil {
				return err
			}
		}
		start := time.Now()
		_, err := maybeSpin.Remote(true).Get()
		fmt.Printf("lease_spin: %v (is timeout: %v, within 1.5s: %v)\n", err, errors.Is(err, sdk.ErrTaskTimeout), time.Since(start) < 1500*time.Millisecond)
		v, err := maybeSpin.Remote(false).Get()
		fmt.Printf("lease_spin: next call %d %v\n", v, err)
	case "loop":
		_, err := spinForever.Remote().Get()
		return err
	case "markup": // a task whose name and error are HTML
		_, err := markup.Remote().Get()
		fmt.Printf("markup: %v\n", firstLine(err))
	case "actors": // actors N MS [pg]: N actors (and with pg a placement group of two one-CPU bundles), alive for MS, then the job ends
		n, ms := 2, 1000
		if len(args) > 2 {
			n, _ = strconv.Atoi(args[1])
			ms, _ = strconv.Atoi(args[2])
		}
		for range n {
			if _, err := keeperPing.Remote(keeperClass.Remote()).Get(); err != nil {
				return err
			}
		}
		fmt.Printf("actors: %d up\n", n)
		if len(args) > 3 && args[3] == "pg" {
			pg, err := sdk.NewPlacementGroup([]sdk.Bundle{{"CPU": 1}, {"CPU": 1}}, "SPREAD", sdk.GroupName("pair"))
			if err != nil {
				return err
			}
			if err := pg.Ready(); err != nil {
				return err
			}
		}
		time.Sleep(time.Duration(ms) * time.Millisecond)
	case "overlap": // overlap N MS: N one-CPU tasks of MS each; how many ran at once
		n, ms := 4, 200
		if len(args) > 2 {
			n, _ = strconv.Atoi(args[1])
			ms, _ = strconv.Atoi(args[2])
		}
		return overlap(n, ms)
	case "ticks": // ticks N MS: N lines, MS apart, for tests of kept and followed output
		n, ms := 10, 100
		if len(args) > 2 {
			n, _ = strconv.Atoi(args[1])
			ms, _ = strconv.Atoi(args[2])
		}
		for i := range n {
			fmt.Printf("tick %d\n", i)
			time.Sleep(time.Duration(ms) * time.Millisecond)
		}
		fmt.Println("ticks: done")
	case "membomb":
		_, err := membomb.Remote().Get()
		fmt.Printf("get returned: %v\n", firstLine(err))
	case "recursion":
		_, err := recursion.Remote().Get()
		fmt.Printf("get returned: %v\n", firstLine(err))
	case "flood":
		if _, err := flood.Remote().Get(); err != nil {
			return err
		}
	case "loud":
		// Output far past any socket buffer, then a long quiet wait: a
		// client that never reads its job's output must not hold up the
		// node (TestStuckOutputReader).
		refs := make([]sdk.Ref[int], 4)
		for i := range refs {
			refs[i] = flood.Remote()
		}
		if _, err := sdk.GetAll(refs); err != nil {
			return err
		}
		fmt.Println("loud: done")
		time.Sleep(10 * time.Minute)
	case "chain":
		n := 3_000_000
		if len(args) > 1 {
			n, _ = strconv.Atoi(args[1])
		}
		if err := chain(n); err != nil {
			return err
		}
	case "smallputs":
		n := 40_000
		if len(args) > 1 {
			n, _ = strconv.Atoi(args[1])
		}
		if err := smallPuts(n); err != nil {
			return err
		}
	case "spreadbytes": // spreadbytes N MIB: N tasks spread over the nodes, each returning MIB, got by the driver
		n, _ := strconv.Atoi(args[1])
		mib, _ := strconv.Atoi(args[2])
		refs := make([]sdk.Ref[[]byte], n)
		for i := range refs {
			refs[i] = bytesSpread.Remote(mib)
		}
		vs, err := sdk.GetAll(refs)
		if err != nil {
			return err
		}
		fmt.Printf("spreadbytes: got %d values of %d bytes\n", len(vs), len(vs[0]))
	case "bigputs": // bigputs N MIB HOLD_MS
		n, mib, ms := 10, 1, 0
		if len(args) > 3 {
			n, _ = strconv.Atoi(args[1])
			mib, _ = strconv.Atoi(args[2])
			ms, _ = strconv.Atoi(args[3])
		}
		if err := bigPuts(n, mib, time.Duration(ms)*time.Millisecond); err != nil {
			return err
		}
	case "memhold": // memhold N MIB MS: N tasks of no declared CPU or memory, each holding MIB for MS
		n, mib, ms := 4, 64, 1000
		if len(args) > 3 {
			n, _ = strconv.Atoi(args[1])
			mib, _ = strconv.Atoi(args[2])
			ms, _ = strconv.Atoi(args[3])
		}
		refs := make([]sdk.Ref[int], n)
		for i := range refs {
			refs[i] = memHold.Remote(mib, ms)
		}
		held, first := 0, error(nil)
		for _, r := range refs {
			if _, err := r.Get(); err != nil {
				first = cmp.Or(first, err)
			} else {
				held++
			}
		}
		fmt.Printf("memhold: %d of %d held %d MiB; first error: %v\n", held, n, mib, firstLine(first))
	case "burn": // burn N MS: N tasks of no declared CPU spinning for MS
		n, ms := 4, 1000
		if len(args) > 2 {
			n, _ = strconv.Atoi(args[1])
			ms, _ = strconv.Atoi(args[2])
		}
		refs := make([]sdk.Ref[int], n)
		for i := range refs {
			refs[i] = burn.Remote(ms)
		}
		if _, err := sdk.GetAll(refs); err != nil {
			return err
		}
		fmt.Printf("burn: %d done\n", n)
	case "work": // work N: one one-CPU task of N steps; how long it took
		n := 100_000_000
		if len(args) > 1 {
			n, _ = strconv.Atoi(args[1])
		}
		d, err := work.Remote(n).Get()
		if err != nil {
			return err
		}
		fmt.Printf("work: %d ns\n", d)
	case "badptr":
		msg, err := badPointers.Remote().Get()
		if err != nil {
			return err
		}
		fmt.Println(msg)
		_, err = badReturn.Remote().Get()
		fmt.Printf("bad return_value: %v\n", err)
	default:
		return fmt.Errorf("unknown case %q", args[0])
	}
	v, err := answer.Remote().Get()
	if err != nil {
		return err
	}
	fmt.Printf("still serving: %d\n", v)
	return nil
}

func firstLine(err error) string {
	if err == nil {
		return "<nil>"
	}
	s := err.Error()
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

func main() {}
