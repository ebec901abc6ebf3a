package gcpace

import (
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

func TestPercent(t *testing.T) {
	const mib = 1 << 20
	for _, tc := range []struct {
		live, headroom int64
		want           int
	}{
		{0, DefaultHeadroom, MaxPercent},
		{20 * mib, DefaultHeadroom, MaxPercent}, // 80 MiB of garbage: within the headroom
		{64 * mib, DefaultHeadroom, MaxPercent}, // 256 MiB: at it
		{128 * mib, DefaultHeadroom, 200},       // the headroom's worth
		{256 * mib, DefaultHeadroom, 100},       // Go's default from here on
		{4096 * mib, DefaultHeadroom, 100},      // never below it
		{100 * mib, 150 * mib, 150},             // a smaller headroom
		{1, 1 << 62, MaxPercent},                // never above the maximum
	} {
		if got := Percent(tc.live, tc.headroom); got != tc.want {
			t.Errorf("Percent(%d, %d) = %d, want %d", tc.live, tc.headroom, got, tc.want)
		}
	}
}

// TestStart: the pace is set at once, put back by stop, and stop leaves
// no goroutine behind; with GOGC in the environment nothing changes.
func TestStart(t *testing.T) {
	goroutines := runtime.NumGoroutine()
	before := debug.SetGCPercent(100)
	defer debug.SetGCPercent(before)
	stop := Start(DefaultHeadroom)
	if got := debug.SetGCPercent(MaxPercent); got != MaxPercent { // a test's heap is small
		t.Errorf("paced at %d, want %d", got, MaxPercent)
	}
	stop()
	stop()
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("after stop the pace is %d, want 100 as before", got)
	}
	for deadline := time.Now().Add(5 * time.Second); runtime.NumGoroutine() > goroutines; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines after stop, %d before Start", runtime.NumGoroutine(), goroutines)
		}
	}

	t.Setenv("GOGC", "150")
	debug.SetGCPercent(150)
	Start(DefaultHeadroom)()
	if got := debug.SetGCPercent(100); got != 150 {
		t.Errorf("with GOGC set the pace became %d", got)
	}
}
