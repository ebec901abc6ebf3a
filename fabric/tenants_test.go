//go:build linux

package fabric

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestTokenChecksBounded: anyone who reaches the API may present a
// token, and each well-formed one is checked on the leader: past
// maxAuthChecks at once an agent answers 429 instead of asking, and a
// malformed token never reaches the leader.
func TestTokenChecksBounded(t *testing.T) {
	a := startJobsAgent(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	wellFormed := tokenPrefix + "0123456789ab_" + strings.Repeat("A", 43)
	if !wellFormedToken(wellFormed) || wellFormedToken(tokenPrefix+"x") || wellFormedToken(strings.TrimPrefix(wellFormed, tokenPrefix)) {
		t.Fatal("wellFormedToken")
	}
	for range maxAuthChecks {
		a.authSlots <- struct{}{}
	}
	_, err := (&Client{Address: a.HTTPAddr(), Token: wellFormed}).Whoami(ctx)
	if err == nil || !strings.Contains(err.Error(), "429") {
		t.Fatalf("a check past the bound: %v", err)
	}
	_, err = (&Client{Address: a.HTTPAddr(), Token: "fabric_nope"}).Whoami(ctx)
	if err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("a malformed token with no slot free: %v", err)
	}
	for range maxAuthChecks {
		<-a.authSlots
	}
	_, err = (&Client{Address: a.HTTPAddr(), Token: wellFormed}).Whoami(ctx)
	if err == nil || !strings.Contains(err.Error(), "401") || errors.Is(err, ErrTooMany) {
		t.Fatalf("an unknown token with slots free: %v", err)
	}
}
