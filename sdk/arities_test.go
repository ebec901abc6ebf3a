//go:build !wasip1

package sdk

import (
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

// TestConstructorRefs: a constructor's arguments go as values
// (Remote) or as references and Vals (RemoteRefs), each of its
// parameter's type; a wrong one does not compile.
func TestConstructorRefs(t *testing.T) {
	newMemHost(t)
	ref, err := Put("from a ref")
	if err != nil {
		t.Fatal(err)
	}
	h := sixClass.RemoteRefs(Val(7), ref, Val(1.0), Val(false), Val([]int{}), Val(map[string]int{}))
	got, err := sixMethod.Remote(h, 1, "b", 0.5, true, []int{1}, map[string]int{"k": 2}).Get()
	if err != nil || !strings.HasPrefix(got, "7,from a ref,") {
		t.Fatalf("method of an actor made with RemoteRefs: %q %v", got, err)
	}
}
