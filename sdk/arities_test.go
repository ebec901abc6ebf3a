//go:build !wasip1

package sdk

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

type six struct{ base string }

var (
	join6 = Task6("arities.join6", func(a int, b string, c float64, d bool, e []int, f map[string]int) (string, error) {
		return fmtSix(a, b, c, d, e, f), nil
	})
	sixClass = Actor6("arities.Six", func(a int, b string, c float64, d bool, e []int, f map[string]int) (*six, error) {
		return &six{base: fmtSix(a, b, c, d, e, f)}, nil
	})
	sixMethod = NewMethod6(sixClass, "join", func(s *six, a int, b string, c float64, d bool, e []int, f map[string]int) (string, error) {
		return s.base + "|" + fmtSix(a, b, c, d, e, f), nil
	})
)

func fmtSix(a int, b string, c float64, d bool, e []int, f map[string]int) string {
	return fmt.Sprint(a, ",", b, ",", c, ",", d, ",", len(e), ",", f["k"])
}

// TestSixArguments: tasks, constructors and methods take six typed
// arguments, each a value or a reference.
func TestSixArguments(t *testing.T) {
	newMemHost(t)
	ref, err := Put("two")
	if err != nil {
		t.Fatal(err)
	}
	got, err := join6.RemoteRefs(Val(1), ref, Val(0.5), Val(true), Val([]int{1, 2, 3}), Val(map[string]int{"k": 9})).Get()
	if want := "1,two,0.5,true,3,9"; err != nil || got != want {
		t.Fatalf("Task6 = %q, %v; want %q", got, err, want)
	}
	h := sixClass.Remote(7, "x", 1.0, false, []int{}, map[string]int{})
	got, err = sixMethod.Remote(h, 2, "y", 0.1, true, []int{4}, map[string]int{"k": 1}).Get()
	if want := "7,x,1,false,0,0|2,y,0.1,true,1,1"; err != nil || got != want {
		t.Fatalf("NewMethod6 = %q, %v; want %q", got, err, want)
	}
}

// TestConstructorArgumentsChecked: a constructor's arguments are checked
// at Remote, before anything is sent: a value of the wrong type or the
// wrong number of them makes the handle's error; a Ref or a Val of the
// right type passes.
func TestConstructorArgumentsChecked(t *testing.T) {
	h := newMemHost(t)
	before := len(h.specs)
	cases := []struct {
		name string
		args []any
		want string
	}{
		{"wrong type", []any{"seven", "x", 1.0, false, []int{}, map[string]int{}}, "argument 0 is string, want int"},
		{"too few", []any{7}, "takes 6 arguments, got 1"},
		{"ref of the wrong type", []any{7, Ref[int]{}, 1.0, false, []int{}, map[string]int{}}, "argument 1 is sdk.Ref[int], want string"},
	}
	for _, c := range cases {
		if err := sixClass.Remote(c.args...).Err(); !errors.Is(err, ErrBadArguments) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
	if len(h.specs) != before {
		t.Errorf("a refused creation was sent")
	}
	if err := sixClass.Remote(Val(7), "x", 1.0, false, nil, map[string]int{}).Err(); err != nil {
		t.Errorf("a Val and a nil slice: %v", err)
	}
}
