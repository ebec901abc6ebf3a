//go:build linux

package fabric

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
)

// DefaultJobLogLimit bounds the output an agent keeps of one job.
const DefaultJobLogLimit = 16 << 20

// jobLog is the kept output of a job whose driver runs on this node: a
// file of frames (MediaJobStream's stdout and stderr frames) under the
// data directory, bounded, that readers follow while the job runs. It
// outlives the job, and the agent: after a restart its file is read as
// it was left.
type jobLog struct {
	path  string
	limit int64

	mu      sync.Mutex
	f       *os.File
	size    int64 // bytes written, all whole frames
	dropped int64 // bytes past the limit
	live    bool
	changed chan struct{} // closed and replaced on each change
}

func jobLogPath(dir, id string) string { return filepath.Join(dir, id+".log") }

// openJobLog opens (appending) the log of a job that starts here.
func openJobLog(dir, id string, limit int64) (*jobLog, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	path := jobLogPath(dir, id)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, err
	}
	return &jobLog{path: path, limit: limit, f: f, size: st.Size(), live: true, changed: make(chan struct{})}, nil
}

// write appends a frame of kind, or counts it as dropped past the limit.
func (l *jobLog) write(kind byte, p []byte) {
	if len(p) == 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.live {
		return
	}
	if l.size+int64(len(p))+5 > l.limit {
		l.dropped += int64(len(p))
		return
	}
	l.appendFrame(kind, p)
}

// frame returns p as one frame of kind (MediaJobStream's framing).
func frame(kind byte, p []byte) []byte {
	b := make([]byte, 5, 5+len(p))
	b[0] = kind
	binary.BigEndian.PutUint32(b[1:], uint32(len(p)))
	return append(b, p...)
}

func (l *jobLog) appendFrame(kind byte, p []byte) {
	b := frame(kind, p)
	if _, err := l.f.Write(b); err != nil {
		l.dropped += int64(len(p))
		return
	}
	l.size += int64(len(b))
	close(l.changed)
	l.changed = make(chan struct{})
}

// Writers of the job's two streams.
func (l *jobLog) Stdout() io.Writer { return logStream{l, FrameStdout} }
func (l *jobLog) Stderr() io.Writer { return logStream{l, FrameStderr} }

type logStream struct {
	l    *jobLog
	kind byte
}

func (s logStream) Write(p []byte) (int, error) {
	s.l.write(s.kind, p)
	return len(p), nil
}

// close ends the log: a notice says what the limit dropped, and readers
// that follow it stop at its end.
func (l *jobLog) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.live {
		return
	}
	if l.dropped > 0 {
		l.appendFrame(FrameStderr, fmt.Appendf(nil, "fabric: %d bytes of this job's output were not kept: past the job log limit of %d bytes (--job-log-limit)\n", l.dropped, l.limit))
	}
	_ = l.f.Close()
	l.live = false
	close(l.changed)
	l.changed = make(chan struct{})
}

// state returns what a reader may read and whether more may come.
func (l *jobLog) state() (size int64, live bool, changed <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.size, l.live, l.changed
}

// copyJobLog writes a job's kept output, as frames, to w: from the file
// at path, and, when follow is set and live is the job's open log (nil
// when it has none here), what comes until the log closes or ctx ends.
func copyJobLog(ctx context.Context, path string, live *jobLog, follow bool, w io.Writer) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	var off int64
	for {
		var size int64
		var more bool
		var changed <-chan struct{}
		if live != nil {
			size, more, changed = live.state()
		} else {
			st, err := f.Stat()
			if err != nil {
				return err
			}
			size = st.Size()
		}
		if size > off {
			// Whole frames only: a file cut by a crash may end in part
			// of one.
			n, err := copyFrames(w, io.NewSectionReader(f, off, size-off))
			off += n
			if err != nil {
				return err
			}
		}
		if !follow || !more {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// copyFrames copies the whole frames of r to w and returns the bytes
// they took.
func copyFrames(w io.Writer, r io.Reader) (int64, error) {
	var n int64
	var head [5]byte
	for {
		if _, err := io.ReadFull(r, head[:]); err != nil {
			return n, nil
		}
		size := binary.BigEndian.Uint32(head[1:])
		if size > maxFrame || (head[0] != FrameStdout && head[0] != FrameStderr) {
			return n, fmt.Errorf("fabric: a job log with a malformed frame at byte %d", n)
		}
		body := make([]byte, size)
		if _, err := io.ReadFull(r, body); err != nil {
			return n, nil
		}
		if _, err := w.Write(append(head[:], body...)); err != nil {
			return n, err
		}
		n += int64(5 + size)
	}
}
