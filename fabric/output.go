package fabric

import (
	"bytes"
	"fmt"
	"io"

	"github.com/wasmfabric/fabric/internal/wire"
)

// output prints guest output: the driver's as it is, a task's line by line
// prefixed with its name and worker pid, as Ray prefixes worker output.
func (n *Node) output(w *workerProc, m wire.Output) {
	n.mu.Lock()
	t := w.task
	n.mu.Unlock()
	if t == nil || t.id != m.Task || m.Stream == 0 || m.Stream > 3 {
		return
	}
	dst := w.job.stdout
	if m.Stream != 1 {
		dst = w.job.stderr
	}
	n.outMu.Lock()
	defer n.outMu.Unlock()
	if t.kind == wire.ExecMain {
		_, _ = dst.Write(m.Data)
		return
	}
	buf := append(w.partial[m.Stream], m.Data...)
	for {
		i := bytes.IndexByte(buf, '\n')
		if i < 0 {
			break
		}
		writeLine(dst, t.name, w.pid, buf[:i])
		buf = buf[i+1:]
	}
	if len(buf) > 64<<10 { // a very long line: print it in pieces
		writeLine(dst, t.name, w.pid, buf)
		buf = nil
	}
	w.partial[m.Stream] = append(w.partial[m.Stream][:0], buf...)
}

func writeLine(dst io.Writer, name string, pid int, line []byte) {
	_, _ = fmt.Fprintf(dst, "(%s pid=%d) %s\n", name, pid, line)
}

// flushOutput prints what is left of a finished execution's partial lines.
func (n *Node) flushOutput(w *workerProc, t *task) {
	n.outMu.Lock()
	defer n.outMu.Unlock()
	for s := uint8(1); s <= 3; s++ {
		if len(w.partial[s]) > 0 {
			dst := w.job.stdout
			if s != 1 {
				dst = w.job.stderr
			}
			writeLine(dst, t.name, w.pid, w.partial[s])
			w.partial[s] = w.partial[s][:0]
		}
	}
}
