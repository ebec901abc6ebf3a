package scheduler

import (
	"math"
	"sort"
	"strconv"
	"strings"
)

// Unit is the fixed-point scale for CPU, GPU and custom resources: 1 CPU == Unit.
const Unit = 10000

// Resources is an amount of each kind. CPU, GPU and Custom are in 1/Unit;
// Memory is in bytes.
//
// Values returned by this package are canonical: Custom holds no zero entries
// and is nil when it would be empty.
type Resources struct {
	CPU    int64
	Memory int64
	GPU    int64
	Custom map[string]int64 // nil when none; keys are resource names like "TPU" or "disk_ssd"
}

// Quantity converts a fractional amount of CPU, GPU or a custom resource to
// fixed point, rounding f*Unit to the nearest integer (halves away from zero).
func Quantity(f float64) int64 {
	return int64(math.Round(f * Unit))
}

// Fits reports whether every amount r demands is at most the amount in avail.
// A custom resource missing from avail counts as zero. Kinds that r demands
// zero (or less) of always fit, even when avail is negative, so a task that
// needs no CPU can run on a node whose CPU is overcommitted by Unblocked.
func (r Resources) Fits(avail Resources) bool {
	if r.CPU > 0 && r.CPU > avail.CPU {
		return false
	}
	if r.Memory > 0 && r.Memory > avail.Memory {
		return false
	}
	if r.GPU > 0 && r.GPU > avail.GPU {
		return false
	}
	for k, v := range r.Custom {
		if v > 0 && v > avail.Custom[k] {
			return false
		}
	}
	return true
}

// Add returns r+o. The result never aliases the Custom maps of r or o.
func (r Resources) Add(o Resources) Resources {
	return r.combine(o, 1)
}

// Sub returns r-o. The result never aliases the Custom maps of r or o.
func (r Resources) Sub(o Resources) Resources {
	return r.combine(o, -1)
}

func (r Resources) combine(o Resources, sign int64) Resources {
	out := Resources{
		CPU:    r.CPU + sign*o.CPU,
		Memory: r.Memory + sign*o.Memory,
		GPU:    r.GPU + sign*o.GPU,
	}
	if len(r.Custom) == 0 && len(o.Custom) == 0 {
		return out
	}
	m := make(map[string]int64, len(r.Custom)+len(o.Custom))
	for k, v := range r.Custom {
		if v != 0 {
			m[k] = v
		}
	}
	for k, v := range o.Custom {
		if n := m[k] + sign*v; n != 0 {
			m[k] = n
		} else {
			delete(m, k)
		}
	}
	if len(m) > 0 {
		out.Custom = m
	}
	return out
}

// IsZero reports whether r holds nothing of any kind.
func (r Resources) IsZero() bool {
	if r.CPU != 0 || r.Memory != 0 || r.GPU != 0 {
		return false
	}
	for _, v := range r.Custom {
		if v != 0 {
			return false
		}
	}
	return true
}

// clone returns a canonical copy of r that shares no map with it.
func (r Resources) clone() Resources {
	return r.Add(Resources{})
}

// customKeys returns the custom resource names of r with non-zero amounts, sorted.
func (r Resources) customKeys() []string {
	keys := make([]string, 0, len(r.Custom))
	for k, v := range r.Custom {
		if v != 0 {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return keys
}

// String formats r for people, e.g. "CPU: 0.25, memory: 64MiB, GPU: 1, TPU: 2".
// Kinds of zero amount are left out, custom resources come last in name
// order, and "nothing" stands for no resources at all.
func (r Resources) String() string {
	var parts []string
	if r.CPU != 0 {
		parts = append(parts, "CPU: "+formatFixed(r.CPU))
	}
	if r.Memory != 0 {
		parts = append(parts, "memory: "+formatBytes(r.Memory))
	}
	if r.GPU != 0 {
		parts = append(parts, "GPU: "+formatFixed(r.GPU))
	}
	for _, k := range r.customKeys() {
		parts = append(parts, k+": "+formatFixed(r.Custom[k]))
	}
	if len(parts) == 0 {
		return "nothing"
	}
	return strings.Join(parts, ", ")
}

// formatFixed formats a fixed-point amount in units of 1/Unit, with trailing
// zeros of the fraction trimmed: 2500 -> "0.25", 20000 -> "2".
func formatFixed(v int64) string {
	neg := v < 0
	u := uint64(v)
	if neg {
		u = uint64(-v) // correct for math.MinInt64 too, by two's complement
	}
	s := strconv.FormatUint(u/Unit, 10)
	if frac := u % Unit; frac != 0 {
		f := strconv.FormatUint(frac+Unit, 10)[1:] // zero padded to 4 digits
		s += "." + strings.TrimRight(f, "0")
	}
	if neg {
		s = "-" + s
	}
	return s
}

// formatBytes formats a byte count in B, KiB, MiB or GiB with at most two
// decimals, trailing zeros trimmed: 1536 -> "1.5KiB".
func formatBytes(v int64) string {
	neg := v < 0
	u := uint64(v)
	if neg {
		u = uint64(-v)
	}
	units := []struct {
		name string
		size uint64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}}
	s := strconv.FormatUint(u, 10) + "B"
	for i, un := range units {
		if u < un.size {
			continue
		}
		q, rem := u/un.size, u%un.size
		hundredths := (rem*100 + un.size/2) / un.size
		if hundredths == 100 {
			q, hundredths = q+1, 0
		}
		if i > 0 && q == 1024 && hundredths == 0 {
			// Rounding reached the next unit, e.g. 1023.999KiB -> 1MiB.
			q, un = 1, units[i-1]
		}
		s = strconv.FormatUint(q, 10)
		if hundredths != 0 {
			f := strconv.FormatUint(hundredths+100, 10)[1:]
			s += "." + strings.TrimRight(f, "0")
		}
		s += un.name
		break
	}
	if neg {
		s = "-" + s
	}
	return s
}
