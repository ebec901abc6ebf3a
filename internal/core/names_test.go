package core

import (
	"fmt"
	"strings"
	"testing"
)

// TestJobNamesBounded: a job that names actor after actor is refused past
// maxJobNames, so that it cannot fill the registry every job shares; a
// name freed makes room again.
func TestJobNamesBounded(t *testing.T) {
	h := newHarness(t)
	for _, l := range []string{"node n1 clustered registry cpu=2", "job j1", "started w1", "ready w1"} {
		h.run(l)
	}
	for i := range maxJobNames {
		out := h.run(fmt.Sprintf("actor w1 A%d seq=%d class=K name=n%d ns=svc", i, i+1, i))
		if len(out) != 1 || !strings.HasPrefix(out[0], "register-name") {
			t.Fatalf("name %d: %q", i, out)
		}
		h.run(fmt.Sprintf("registered A%d", i))
	}
	out := h.run(fmt.Sprintf("actor w1 B1 seq=%d class=K name=one-more ns=svc", maxJobNames+1))
	if len(out) != 1 || !strings.Contains(out[0], "the job holds 1024 actor names on node n1, the most a job may") {
		t.Fatalf("past the bound: %q", out)
	}
	out = h.run(fmt.Sprintf("kill-actor w1 seq=%d actor=A0 norestart", maxJobNames+2))
	if !strings.HasPrefix(strings.Join(out, "\n"), "unregister-name A0") {
		t.Fatalf("kill: %q", out)
	}
	out = h.run(fmt.Sprintf("actor w1 B2 seq=%d class=K name=one-more ns=svc", maxJobNames+3))
	if len(out) != 1 || !strings.HasPrefix(out[0], "register-name B2") {
		t.Fatalf("after a name was freed: %q", out)
	}
}

// TestServeNamespaceReserved: a guest makes no actor in the namespace of
// deployments' replicas (whose lookups the shell answers), named or not.
func TestServeNamespaceReserved(t *testing.T) {
	h := newHarness(t)
	for _, l := range []string{"node n1 clustered registry cpu=2", "job j1", "started w1", "ready w1"} {
		h.run(l)
	}
	for i, extra := range []string{"name=preprocessor", ""} {
		out := h.run(fmt.Sprintf("actor w1 A%d seq=%d class=K %s ns=fabric.serve", i, i+1, extra))
		if len(out) != 1 || !strings.Contains(out[0], "fabric.serve") || !strings.Contains(out[0], "holds deployments' replicas: a guest makes no actor there") {
			t.Fatalf("an actor in fabric.serve (%s): %q", extra, out)
		}
	}
}
