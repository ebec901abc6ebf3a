//go:build wasip1

package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/wasmfabric/fabric/sdk"
)

// NotFound is an error type the guest registers: its value reaches the
// caller's errors.As.
type NotFound struct{ Key string }

func (e *NotFound) Error() string { return "not found: " + e.Key }

// Transient is an error type that tasks retry on (RetryOn).
type Transient struct{ Attempt int }

func (e *Transient) Error() string { return fmt.Sprintf("transient failure in attempt %d", e.Attempt) }

// ErrBusy is a registered sentinel.
var ErrBusy = sdk.RegisterError(errors.New("busy"))

func init() {
	sdk.RegisterErrorType[*NotFound]()
	sdk.RegisterErrorType[*Transient]()
	moreCases["error_types"] = errorTypes
}

func attempt() int {
	rc, err := sdk.GetRuntimeContext()
	if err != nil {
		panic(err)
	}
	return rc.Attempt
}

var lookup = sdk.Task1("lookup", func(key string) (int, error) {
	return 0, fmt.Errorf("lookup failed: %w", &NotFound{Key: key})
})

var lookupVia = sdk.Task1("lookup_via", func(key string) (int, error) {
	v, err := lookup.Remote(key).Get()
	if err != nil {
		return 0, fmt.Errorf("lookup_via: %w", err)
	}
	return v, nil
})

var busy = sdk.Task0("busy", func() (int, error) { return 0, fmt.Errorf("queue full: %w", ErrBusy) })

// flakyTyped fails with a Transient twice, then returns its attempt.
var flakyTyped = sdk.Task0("flaky_typed", func() (int, error) {
	if a := attempt(); a < 2 {
		return 0, &Transient{Attempt: a}
	}
	return attempt(), nil
}, sdk.RetryOn[*Transient](), sdk.MaxRetries(3))

// busyOnce fails with ErrBusy once, then returns its attempt.
var busyOnce = sdk.Task0("busy_once", func() (int, error) {
	if a := attempt(); a < 1 {
		return 0, fmt.Errorf("attempt %d: %w", a, ErrBusy)
	}
	return attempt(), nil
}, sdk.RetryExceptions(ErrBusy), sdk.MaxRetries(3))

// wrongType retries on Transient only, and fails with another error.
var wrongType = sdk.Task0("wrong_type", func() (int, error) {
	return 0, fmt.Errorf("attempt %d: %w", attempt(), &NotFound{Key: "x"})
}, sdk.RetryOn[*Transient](), sdk.MaxRetries(3))

// errorTypes: user error types survive the trip, and decide retries.
func errorTypes() error {
	_, err := lookup.Remote("k1").Get()
	var nf *NotFound
	check("error_type_as", errors.As(err, &nf) && nf.Key == "k1", err)
	_, err = lookupVia.Remote("k2").Get()
	nf = nil
	check("error_type_nested", errors.As(err, &nf) && nf.Key == "k2", err)
	_, err = busy.Remote().Get()
	check("error_sentinel_is", errors.Is(err, ErrBusy) && !errors.As(err, &nf), err)
	v, err := flakyTyped.Remote().Get()
	check("retry_on_type", err == nil && v == 2, fmt.Sprint(v, err))
	v, err = busyOnce.Remote().Get()
	check("retry_on_sentinel", err == nil && v == 1, fmt.Sprint(v, err))
	_, err = wrongType.Remote().Get()
	check("no_retry_on_other_types", errors.As(err, &nf) && err != nil && strings.Contains(err.Error(), "attempt 0: not found"), err)
	return nil
}
