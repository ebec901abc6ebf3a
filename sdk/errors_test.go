//go:build !wasip1

package sdk

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/wasmfabric/fabric/internal/abi"
)

type notFound struct {
	Key   string
	Tries int
}

func (e *notFound) Error() string { return "not found: " + e.Key }

type quota struct{ Limit int }

func (e quota) Error() string { return fmt.Sprintf("over quota %d", e.Limit) }

type unregistered struct{ N int }

func (e *unregistered) Error() string { return "unregistered" }

var errBusy = RegisterError(errors.New("busy"))

var failWith = Task1("errors.fail", func(kind string) (int, error) {
	switch kind {
	case "typed":
		return 0, fmt.Errorf("lookup: %w", &notFound{Key: "k1", Tries: 3})
	case "value":
		return 0, quota{Limit: 7}
	case "sentinel":
		return 0, fmt.Errorf("try later: %w", errBusy)
	case "joined":
		return 0, errors.Join(errBusy, &notFound{Key: "k2"})
	case "unregistered":
		return 0, &unregistered{N: 1}
	}
	return 0, errors.New("plain")
})

var passOn = Task1("errors.passOn", func(kind string) (int, error) {
	_, err := failWith.Remote(kind).Get()
	return 0, fmt.Errorf("nested: %w", err)
})

func init() {
	RegisterErrorType[*notFound]()
	RegisterErrorType[quota]()
}

// TestErrorTypesSurvive: a caller's errors.As and errors.Is see the error
// the task returned, for registered types and sentinels, also when
// another task passed it on.
func TestErrorTypesSurvive(t *testing.T) {
	newMemHost(t)
	for _, via := range []string{"direct", "nested"} {
		get := func(kind string) error {
			if via == "nested" {
				_, err := passOn.Remote(kind).Get()
				return err
			}
			_, err := failWith.Remote(kind).Get()
			return err
		}
		t.Run(via, func(t *testing.T) {
			var nf *notFound
			if err := get("typed"); !errors.As(err, &nf) || nf.Key != "k1" || nf.Tries != 3 {
				t.Errorf("typed: errors.As gave %+v from %v", nf, err)
			}
			var q quota
			if err := get("value"); !errors.As(err, &q) || q.Limit != 7 {
				t.Errorf("value type: errors.As gave %+v from %v", q, err)
			}
			if err := get("sentinel"); !errors.Is(err, errBusy) || errors.As(err, &nf) {
				t.Errorf("sentinel: errors.Is false, or As true, for %v", err)
			}
			err := get("joined")
			nf = nil
			if !errors.Is(err, errBusy) || !errors.As(err, &nf) || nf.Key != "k2" {
				t.Errorf("joined: Is %v, As %+v, for %v", errors.Is(err, errBusy), nf, err)
			}
			err = get("unregistered")
			var u *unregistered
			if errors.As(err, &u) {
				t.Errorf("unregistered type decoded: %+v", u)
			}
			var te *TaskError
			if !errors.As(err, &te) || !slices.Contains(te.ErrorTypes(), "*github.com/wasmfabric/fabric/sdk.unregistered") {
				t.Errorf("unregistered type not named: %v", te.ErrorTypes())
			}
			if err := get("plain"); errors.Is(err, errBusy) || errors.As(err, &nf) || errors.As(err, &q) {
				t.Errorf("plain error matched a registered type: %v", err)
			}
		})
	}
}

// TestRetryOnNames: the options carry the names the guest reports.
func TestRetryOnNames(t *testing.T) {
	o := applyOptions([]Option{RetryOn[*notFound](), RetryExceptions(errBusy)}, nil)
	want := []string{"*github.com/wasmfabric/fabric/sdk.notFound", "sentinel:busy"}
	if !slices.Equal(o.RetryOn, want) || o.RetryExceptions {
		t.Fatalf("RetryOn %q (all: %v), want %q", o.RetryOn, o.RetryExceptions, want)
	}
	types := errorTypesOf(fmt.Errorf("x: %w", errors.Join(&notFound{}, errBusy)))
	for _, name := range want {
		if !slices.ContainsFunc(types, func(e abi.ErrorType) bool { return e.Name == name }) {
			t.Errorf("reported types %+v lack %s", types, name)
		}
	}
	if o := applyOptions([]Option{RetryExceptions()}, nil); !o.RetryExceptions || o.RetryOn != nil {
		t.Errorf("RetryExceptions() = %+v", o)
	}
}

// TestRegisterErrorTwice: a second sentinel with the same message panics;
// the same one again does not.
func TestRegisterErrorTwice(t *testing.T) {
	RegisterError(errBusy)
	defer func() {
		if recover() == nil {
			t.Fatal("no panic for a second sentinel with the message \"busy\"")
		}
	}()
	RegisterError(errors.New("busy"))
}
