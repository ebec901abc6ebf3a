//go:build linux

package fabric

import (
	"bytes"
	"context"
	"encoding/binary"
	"path/filepath"
	"testing"
)

// TestJobLogFollow: a reader that follows a job's log gets what was
// written before and after it started, frame for frame, and stops when
// the log closes; output past the limit is counted in a last notice.
func TestJobLogFollow(t *testing.T) {
	dir := t.TempDir()
	l, err := openJobLog(dir, "j", 64)
	if err != nil {
		t.Fatal(err)
	}
	l.write(FrameStdout, []byte("one\n"))
	var got bytes.Buffer
	done := make(chan error, 1)
	go func() { done <- copyJobLog(context.Background(), l.path, l, true, &got) }()
	l.write(FrameStderr, []byte("two\n"))
	l.write(FrameStdout, bytes.Repeat([]byte("x"), 100)) // past the limit
	l.close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	followed := bytes.Clone(got.Bytes())
	var out, errOut bytes.Buffer
	if _, err := copyFrames(&splitFrames{&out, &errOut}, &got); err != nil {
		t.Fatal(err)
	}
	if out.String() != "one\n" || errOut.String() != "two\nfabric: 100 bytes of this job's output were not kept: past the job log limit of 64 bytes (--job-log-limit)\n" {
		t.Fatalf("stdout %q, stderr %q", out.String(), errOut.String())
	}
	// After the log closed (and after a restart), the file is read as is.
	var again bytes.Buffer
	if err := copyJobLog(context.Background(), filepath.Join(dir, "j.log"), nil, true, &again); err != nil || !bytes.Equal(again.Bytes(), followed) {
		t.Fatalf("reading the closed log: %v, %d bytes, want %d", err, again.Len(), len(followed))
	}
}

// splitFrames writes whole frames' payloads to stdout or stderr.
type splitFrames struct{ stdout, stderr *bytes.Buffer }

func (s *splitFrames) Write(p []byte) (int, error) {
	if p[0] == FrameStderr {
		s.stderr.Write(p[5:])
	} else {
		s.stdout.Write(p[5:])
	}
	return len(p), nil
}

// FuzzCopyFrames: a log file or a peer's log stream of any bytes (a file
// cut by a crash, a hostile peer) never panics the reader, and what it
// passes on is whole, well-formed frames only.
func FuzzCopyFrames(f *testing.F) {
	f.Add([]byte{FrameStdout, 0, 0, 0, 3, 'a', 'b', 'c', FrameStderr, 0, 0, 0, 1})
	f.Add([]byte{FrameResult, 0, 0, 0, 0})
	f.Add([]byte{FrameStdout, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		var out bytes.Buffer
		n, _ := copyFrames(&out, bytes.NewReader(b))
		if n != int64(out.Len()) || !bytes.Equal(out.Bytes(), b[:n]) {
			t.Fatalf("passed on %d bytes, counted %d, not a prefix of the input", out.Len(), n)
		}
		for rest := out.Bytes(); len(rest) > 0; {
			if rest[0] != FrameStdout && rest[0] != FrameStderr {
				t.Fatalf("a frame of kind %d passed on", rest[0])
			}
			size := int(binary.BigEndian.Uint32(rest[1:5]))
			rest = rest[5+size:]
		}
	})
}
