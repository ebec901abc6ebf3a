package sandbox

import (
	"fmt"
	"sync"
)

// DefaultOutputCap is the default number of output bytes kept per call.
const DefaultOutputCap = 8 << 20

// OutputFunc receives cleaned guest output: stream 1 is stdout, 2 stderr.
type OutputFunc func(stream uint8, p []byte)

// outputSink is the stdout and stderr of one instance. It strips terminal
// escape sequences and control characters, enforces a per-call byte cap and
// keeps the tail of stderr for error messages. One sink serves one instance,
// so one call at a time.
type outputSink struct {
	mu       sync.Mutex
	emit     OutputFunc
	cap      int64
	written  int64
	dropped  int64
	noticed  bool
	esc      [3]escState // per stream
	head     []byte      // first bytes of stderr
	tail     []byte      // last bytes of stderr
	errTotal int64       // stderr bytes written in this call
}

const (
	stderrHeadSize = 1024
	stderrTailSize = 3072
)

type escState uint8

const (
	escNone escState = iota
	escStart
	escCSI
	escOSC
	escOSCEsc
)

// reset starts a new call.
func (s *outputSink) reset(emit OutputFunc, capBytes int64) {
	s.mu.Lock()
	s.emit, s.cap, s.written, s.dropped, s.noticed = emit, capBytes, 0, 0, false
	s.esc = [3]escState{}
	s.tail = s.tail[:0]
	s.head = s.head[:0]
	s.errTotal = 0
	s.mu.Unlock()
}

// stream returns the writer for stdout (1) or stderr (2).
func (s *outputSink) stream(n uint8) *streamWriter { return &streamWriter{s: s, n: n} }

type streamWriter struct {
	s *outputSink
	n uint8
}

func (w *streamWriter) Write(p []byte) (int, error) {
	w.s.write(w.n, p)
	return len(p), nil
}

func (s *outputSink) write(n uint8, p []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	clean := stripControl(&s.esc[n], p)
	if n == 2 {
		if room := stderrHeadSize - len(s.head); room > 0 {
			s.head = append(s.head, clean[:min(room, len(clean))]...)
		}
		s.errTotal += int64(len(clean))
		s.tail = append(s.tail, clean...)
		if len(s.tail) > stderrTailSize {
			s.tail = append(s.tail[:0], s.tail[len(s.tail)-stderrTailSize:]...)
		}
	}
	if s.emit == nil || len(clean) == 0 {
		return
	}
	room := s.cap - s.written
	if room <= 0 {
		s.dropped += int64(len(clean))
		if !s.noticed {
			s.noticed = true
			s.emit(n, fmt.Appendf(nil, "\n[fabric: output of this call reached its cap of %d bytes; the rest is dropped]\n", s.cap))
		}
		return
	}
	if int64(len(clean)) > room {
		s.dropped += int64(len(clean)) - room
		clean = clean[:room]
	}
	s.written += int64(len(clean))
	s.emit(n, clean)
	if s.written >= s.cap && !s.noticed {
		s.noticed = true
		s.emit(n, fmt.Appendf(nil, "\n[fabric: output of this call reached its cap of %d bytes; the rest is dropped]\n", s.cap))
	}
}

// stderrTail returns the first and the last bytes written to stderr in
// this call (where a Go guest's fatal error puts its reason and its stack).
func (s *outputSink) stderrTail() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.errTotal <= int64(len(s.tail)) {
		return string(s.tail)
	}
	return string(s.head) + "\n...\n" + string(s.tail)
}

func (s *outputSink) droppedBytes() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dropped
}

// stripControl removes terminal escape sequences (CSI, OSC and two-byte
// escapes) and C0 control characters other than newline and tab. The state
// carries a sequence split across writes.
func stripControl(st *escState, p []byte) []byte {
	out := make([]byte, 0, len(p))
	for _, c := range p {
		switch *st {
		case escStart:
			switch c {
			case '[':
				*st = escCSI
			case ']':
				*st = escOSC
			default:
				*st = escNone
			}
			continue
		case escCSI:
			if c >= 0x40 && c <= 0x7e {
				*st = escNone
			}
			continue
		case escOSC:
			if c == 0x07 {
				*st = escNone
			} else if c == 0x1b {
				*st = escOSCEsc
			}
			continue
		case escOSCEsc:
			*st = escNone
			continue
		}
		switch {
		case c == 0x1b:
			*st = escStart
		case c == '\n' || c == '\t':
			out = append(out, c)
		case c < 0x20 || c == 0x7f:
			// dropped, including \r which can overwrite earlier output
		default:
			out = append(out, c)
		}
	}
	return out
}
