// Package gcpace paces the garbage collector of a process that serves
// others, the agent: it lets the heap grow by up to four times what is
// live, as long as that is at most a fixed headroom more than Go's
// default pace would allow.
//
// An agent's live heap is small and long-lived (its tables, the
// records of ended tasks) and its garbage is what each request leaves,
// a few KiB. With Go's default (GOGC=100) a node under load collects
// several times a second; on a small node each collection takes CPU
// from the requests in flight, and they show it in their tail latency.
// Letting the heap grow four times past the live data makes collections
// four times rarer for a few tens of MiB, while the cap on the headroom
// keeps an agent holding much live data at Go's default pace.
//
// A user who sets GOGC keeps it: Start does nothing then.
package gcpace

import (
	"os"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"time"
)

const (
	// DefaultHeadroom is how much garbage at most, in bytes, the pace
	// allows to grow past the live heap beyond Go's default.
	DefaultHeadroom = 256 << 20
	// MaxPercent is the largest GOGC the pace sets.
	MaxPercent = 400
	// interval is how often the pace is set again from the live heap.
	interval = time.Second
)

// Percent returns the GOGC for a live heap of live bytes: MaxPercent
// while the garbage it allows stays within headroom, falling to Go's
// default of 100 as the live heap grows.
func Percent(live, headroom int64) int {
	if live <= 0 || headroom/MaxPercent >= live/100 {
		return MaxPercent
	}
	p := headroom * 100 / live
	return int(min(max(p, 100), MaxPercent))
}

// Start paces the collector from the live heap, once a second, until
// stop is called; stop puts the pace back as it was. It does nothing
// when the environment sets GOGC.
func Start(headroom int64) (stop func()) {
	if _, set := os.LookupEnv("GOGC"); set {
		return func() {}
	}
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	live := func() int64 {
		metrics.Read(sample)
		if sample[0].Value.Kind() != metrics.KindUint64 {
			return 0
		}
		return int64(sample[0].Value.Uint64())
	}
	current := Percent(live(), headroom)
	previous := debug.SetGCPercent(current)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			// Only a change of a tenth or more is worth setting.
			if p := Percent(live(), headroom); p*10 < current*9 || p*10 > current*11 {
				debug.SetGCPercent(p)
				current = p
			}
		}
	})
	var once sync.Once
	return func() {
		once.Do(func() {
			close(done)
			wg.Wait()
			debug.SetGCPercent(previous)
		})
	}
}
