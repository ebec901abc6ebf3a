package controlstate

import (
	"errors"
	"reflect"
	"testing"
)

func joinToken(id string, created, expires int64, server bool) Command {
	return Command{CreateJoinToken: &CreateJoinToken{Token: JoinToken{ID: id, Created: created, Expires: expires, Server: server}}}
}

// TestJoinTokensAndNodes steps join tokens and node records: a join
// token admits one node, once, before it expires, under an ID no node
// was admitted with; a revoked node's ID stays taken; a snapshot keeps
// both.
func TestJoinTokensAndNodes(t *testing.T) {
	steps := []struct {
		cmd  Command
		want error
	}{
		{Command{AdmitNode: &AdmitNode{Node: "s1", Server: true, Time: 1}}, nil},
		{joinToken("j1", 10, 100, false), nil},
		{joinToken("j1", 10, 100, false), ErrTokenExists},
		{joinToken("j2", 10, 5, false), ErrBadCommand},
		{joinToken("bad id!", 10, 100, false), ErrBadCommand},
		{joinToken("j3", 10, 100, true), nil},
		{joinToken("j4", 10, 20, false), nil},
		{Command{UseJoinToken: &UseJoinToken{ID: "j1", Node: "n1", Time: 50}}, nil},
		{Command{UseJoinToken: &UseJoinToken{ID: "j1", Node: "n2", Time: 51}}, ErrJoinTokenUsed},
		{Command{UseJoinToken: &UseJoinToken{ID: "j4", Node: "n2", Time: 20}}, ErrJoinTokenExpired},
		{Command{UseJoinToken: &UseJoinToken{ID: "nope", Node: "n2", Time: 20}}, ErrNoJoinToken},
		{Command{UseJoinToken: &UseJoinToken{ID: "j3", Node: "n1", Time: 52}}, ErrNodeExists},
		{Command{UseJoinToken: &UseJoinToken{ID: "j3", Node: "join:x", Time: 52}}, ErrBadCommand},
		{Command{UseJoinToken: &UseJoinToken{ID: "j3", Node: "s2", Time: 53}}, nil},
		{Command{RevokeNode: &RevokeNode{Node: "n1", Time: 60}}, nil},
		{Command{RevokeNode: &RevokeNode{Node: "n1", Time: 70}}, nil}, // again: the first time stays
		{Command{RevokeNode: &RevokeNode{Node: "zz", Time: 70}}, ErrNoNode},
		{joinToken("j5", 80, 200, false), nil},
		{Command{UseJoinToken: &UseJoinToken{ID: "j5", Node: "n1", Time: 81}}, ErrNodeRevoked},
		{Command{DeleteJoinToken: &DeleteJoinToken{ID: "j5"}}, nil},
		{Command{UseJoinToken: &UseJoinToken{ID: "j5", Node: "n3", Time: 82}}, ErrNoJoinToken},
	}
	s := New()
	for i, st := range steps {
		if err := s.Apply(st.cmd); !errors.Is(err, st.want) || (st.want == nil) != (err == nil) {
			t.Fatalf("step %d: %v, want %v", i, err, st.want)
		}
	}
	if got, want := s.Revoked(), []string{"n1"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Revoked() = %v, want %v", got, want)
	}
	if n, ok := s.NodeRecord("s2"); !ok || !n.Server || n.Token != "j3" || n.Joined != 53 {
		t.Errorf("NodeRecord(s2) = %+v, %v", n, ok)
	}
	b, err := s.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	r, err := Restore(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(r.NodeRecords(), s.NodeRecords()) || !reflect.DeepEqual(r.JoinTokens(), s.JoinTokens()) {
		t.Errorf("restored: %+v %+v, want %+v %+v", r.NodeRecords(), r.JoinTokens(), s.NodeRecords(), s.JoinTokens())
	}
}

// TestMaxJoinTokens: past the bound, used and expired join tokens make
// room; when none is, creating one is refused.
func TestMaxJoinTokens(t *testing.T) {
	s := New()
	for i := range MaxJoinTokens {
		if err := s.Apply(joinToken("j"+itoa(i), 1, 100, false)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Apply(joinToken("more", 2, 100, false)); !errors.Is(err, ErrTooManyTokens) {
		t.Fatalf("past the bound: %v, want ErrTooManyTokens", err)
	}
	if err := s.Apply(Command{UseJoinToken: &UseJoinToken{ID: "j7", Node: "n7", Time: 3}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(joinToken("more", 4, 100, false)); err != nil {
		t.Fatalf("with a used token to drop: %v", err)
	}
	if err := s.Apply(joinToken("later", 100, 200, false)); err != nil {
		t.Fatalf("with every other token expired: %v", err)
	}
	if n := len(s.JoinTokens()); n != 1 {
		t.Errorf("%d join tokens kept, want 1", n)
	}
}
