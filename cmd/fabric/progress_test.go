package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestProgressWriter: the progress line is cleared before the output
// and drawn again after a whole line, never in the middle of one; cleared
// for good, it is not drawn again; off a terminal, nothing is drawn.
func TestProgressWriter(t *testing.T) {
	var term bytes.Buffer
	p := &progress{w: &term, on: true, at: true}
	out := p.wrap(&term)
	p.set("tasks: 0/2 finished")
	out.Write([]byte("first line\n"))
	out.Write([]byte("half "))
	p.set("tasks: 1/2 finished") // in the middle of a line: not drawn
	out.Write([]byte("and the rest\n"))
	p.clear()
	p.set("tasks: 2/2 finished")
	out.Write([]byte("after\n"))
	const clr = "\r\x1b[K"
	want := clr + "tasks: 0/2 finished" + clr + "first line\n" + "tasks: 0/2 finished" + clr + "half " + "and the rest\n" + "tasks: 1/2 finished" + clr + "after\n"
	if got := term.String(); got != want {
		t.Fatalf("the terminal got\n%q\nwant\n%q", got, want)
	}
	var plain bytes.Buffer
	q := newProgress(&plain)
	q.wrap(&plain).Write([]byte("x\n"))
	q.set("tasks: 1/1 finished")
	q.clear()
	if plain.String() != "x\n" || q.active() {
		t.Fatalf("off a terminal: %q", plain.String())
	}
	if got := progressLine(3, 1, 10); !strings.Contains(got, "3/10 finished, 1 failed") {
		t.Fatal(got)
	}
}
