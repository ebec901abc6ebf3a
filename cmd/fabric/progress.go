package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/wasmfabric/fabric/fabric"
)

// progress draws a job's progress ("tasks: 37/100 finished") on the
// terminal's last line, below the job's output, while the job runs: the
// output's writers clear the line before they write and draw it again
// after a whole line. It draws nothing when its writer is not a terminal.
type progress struct {
	mu   sync.Mutex
	w    io.Writer // the terminal
	on   bool
	line string // drawn now ("": none)
	at   bool   // the output is at the start of a line
}

// newProgress draws on stderr when it is a terminal (and TERM is not
// "dumb").
func newProgress(stderr io.Writer) *progress {
	f, ok := stderr.(*os.File)
	return &progress{w: stderr, on: ok && isTerminal(f) && os.Getenv("TERM") != "dumb", at: true}
}

// set draws s as the progress line.
func (p *progress) set(s string) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.on || s == p.line {
		return
	}
	p.line = s
	if p.at {
		fmt.Fprintf(p.w, "\r\033[K%s", s)
	}
}

// clear removes the progress line for good.
func (p *progress) clear() {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.line != "" && p.at {
		fmt.Fprint(p.w, "\r\033[K")
	}
	p.line, p.on = "", false
}

// active reports whether the line is drawn (not cleared for good).
func (p *progress) active() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.on
}

// wrap returns w, writing around the progress line.
func (p *progress) wrap(w io.Writer) io.Writer {
	if p == nil || !p.on {
		return w
	}
	return progressWriter{p, w}
}

type progressWriter struct {
	p *progress
	w io.Writer
}

func (pw progressWriter) Write(b []byte) (int, error) {
	p := pw.p
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.on && p.line != "" && p.at {
		fmt.Fprint(p.w, "\r\033[K")
	}
	n, err := pw.w.Write(b)
	if n > 0 {
		p.at = b[n-1] == '\n'
	}
	if p.on && p.line != "" && p.at {
		fmt.Fprint(p.w, p.line)
	}
	return n, err
}

// progressLine is what the line says of a job's tasks.
func progressLine(finished, failed, total int) string {
	s := fmt.Sprintf("tasks: %d/%d finished", finished, total)
	if failed > 0 {
		s += fmt.Sprintf(", %d failed", failed)
	}
	return s
}

// followProgress draws a job's task counts, from the state API's summary,
// twice a second until ctx ends or the progress line is cleared.
func followProgress(ctx context.Context, cl *fabric.Client, job string, p *progress) {
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		sum, err := cl.TaskSummary(ctx, fabric.TaskQuery{Job: job})
		if err != nil {
			continue
		}
		finished, failed, total := 0, 0, 0
		for _, r := range sum.Rows {
			if r.Kind != "driver" {
				finished, failed, total = finished+r.States["finished"], failed+r.States["failed"], total+r.Total
			}
		}
		if total > 0 {
			p.set(progressLine(finished, failed, total))
		}
		if !p.active() {
			return
		}
	}
}
