package sdk

import (
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"

	"github.com/wasmfabric/fabric/internal/abi"
)

// Errors that survive the trip. A task's error reaches its caller as a
// *TaskError. So that the caller can still use errors.As and errors.Is on
// the error the task returned, the guest reports with it:
//
//   - the type of every error in its chain (errors.Unwrap), by name;
//   - the value of each error type registered with RegisterErrorType that
//     errors.As finds in the chain, encoded as CBOR (exported fields);
//   - each sentinel registered with RegisterError that errors.Is finds.
//
// The caller's errors.As(err, &target) then decodes the value into target
// when the task's error had one of target's type, and errors.Is(err,
// sentinel) holds when the task's error wrapped a registered sentinel.
// Register at package level (a var or an init function), so that every
// instance of the module knows the same errors.

var (
	errorTypes     []reflect.Type
	errorSentinels = map[string]error{} // by name: "sentinel:" + message
)

// RegisterErrorType registers the error type E: when a task's error chain
// holds an E, its value travels with the error, and the caller's
// errors.As with an E target gets it back. E is usually a pointer to a
// struct with exported fields:
//
//	type NotFound struct{ Key string }
//	func (e *NotFound) Error() string { return "not found: " + e.Key }
//
//	func init() { sdk.RegisterErrorType[*NotFound]() }
func RegisterErrorType[E error]() {
	t := reflect.TypeFor[E]()
	if !slices.Contains(errorTypes, t) {
		errorTypes = append(errorTypes, t)
	}
}

// RegisterError registers a sentinel error and returns it, for use in a
// var declaration:
//
//	var ErrBusy = sdk.RegisterError(errors.New("busy"))
//
// A caller's errors.Is(err, ErrBusy) then holds when the task's error
// wrapped ErrBusy. Sentinels are told apart by their message, so two
// registered sentinels must not share one; the second registration panics.
func RegisterError(sentinel error) error {
	name := sentinelName(sentinel)
	if old, ok := errorSentinels[name]; ok && !sameError(old, sentinel) {
		panic(fmt.Sprintf("fabric: two sentinel errors registered with the message %q", sentinel.Error()))
	}
	errorSentinels[name] = sentinel
	return sentinel
}

func sentinelName(err error) string { return "sentinel:" + err.Error() }

func sameError(a, b error) bool {
	return reflect.TypeOf(a) == reflect.TypeOf(b) && reflect.TypeOf(a).Comparable() && a == b
}

// errorTypeName names a type the same way in every instance of a module:
// its package path and name, with a "*" per pointer.
func errorTypeName(t reflect.Type) string {
	prefix := ""
	for t.Kind() == reflect.Pointer && t.Name() == "" {
		prefix += "*"
		t = t.Elem()
	}
	if t.Name() != "" && t.PkgPath() != "" {
		return prefix + t.PkgPath() + "." + t.Name()
	}
	return prefix + t.String()
}

// RetryOn makes a task retry, under MaxRetries, when its error chain holds
// an error of type E (Ray's retry_exceptions with a list of classes). The
// type need not be registered.
func RetryOn[E error]() Option {
	name := errorTypeName(reflect.TypeFor[E]())
	return func(o *abi.Options) { o.RetryOn = append(o.RetryOn, name) }
}

// errorTypesOf lists what a failing call reports with its error: see the
// comment at the top of this file.
func errorTypesOf(err error) []abi.ErrorType {
	var out []abi.ErrorType
	seen := map[string]bool{}
	add := func(t abi.ErrorType) {
		if !seen[t.Name] {
			seen[t.Name] = true
			out = append(out, t)
		}
	}
	for _, t := range errorTypes {
		target := reflect.New(t)
		if errors.As(err, target.Interface()) {
			b, encErr := encMode.Marshal(target.Elem().Interface())
			if encErr != nil || len(b) > abi.MaxErrorTypes/2 {
				b = nil // the name still travels
			}
			add(abi.ErrorType{Name: errorTypeName(t), Value: b})
		}
	}
	for _, name := range slices.Sorted(maps.Keys(errorSentinels)) {
		if errors.Is(err, errorSentinels[name]) {
			add(abi.ErrorType{Name: name})
		}
	}
	walkErrors(err, func(e error) {
		if te, ok := e.(*TaskError); ok { // a failed call's error, passed on
			for _, t := range te.types {
				add(t)
			}
		}
		add(abi.ErrorType{Name: errorTypeName(reflect.TypeOf(e))})
	})
	return out
}

// walkErrors calls fn on err and every error it wraps.
func walkErrors(err error, fn func(error)) {
	for depth := 0; err != nil && depth < 100; depth++ {
		fn(err)
		switch u := err.(type) {
		case interface{ Unwrap() error }:
			err = u.Unwrap()
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				walkErrors(e, fn)
			}
			return
		default:
			return
		}
	}
}

// encodeErrorTypes is what the guest passes to return_error_types: nil
// when there is nothing to report; values are dropped, then names, to
// stay within the host's limit.
func encodeErrorTypes(types []abi.ErrorType) []byte {
	for len(types) > 0 {
		b, err := encMode.Marshal(types)
		if err == nil && len(b) <= abi.MaxErrorTypes {
			return b
		}
		types = types[:len(types)-1]
	}
	return nil
}

// Is reports whether the error is of the sentinel's kind (ErrWorkerDied,
// ErrTaskCancelled, ...), or wrapped, in the task, a sentinel registered
// with RegisterError.
func (e *TaskError) Is(target error) bool {
	if s, ok := kindErrors[e.Kind]; ok && s == target {
		return true
	}
	if target == nil || !reflect.TypeOf(target).Comparable() {
		return false
	}
	name := sentinelName(target)
	if s, ok := errorSentinels[name]; !ok || !sameError(s, target) {
		return false
	}
	return slices.ContainsFunc(e.types, func(t abi.ErrorType) bool { return t.Name == name })
}

// As sets target, a non-nil pointer to an error type, to the error of that
// type the task returned (somewhere in its chain), when the type was
// registered with RegisterErrorType.
func (e *TaskError) As(target any) bool {
	v := reflect.ValueOf(target)
	if v.Kind() != reflect.Pointer || v.IsNil() {
		return false
	}
	name := errorTypeName(v.Type().Elem())
	for _, t := range e.types {
		if t.Name == name && t.Value != nil {
			fresh := reflect.New(v.Type().Elem())
			if decMode.Unmarshal(t.Value, fresh.Interface()) != nil {
				return false
			}
			v.Elem().Set(fresh.Elem())
			return true
		}
	}
	return false
}

// ErrorTypes lists the names of the error types the task's error chain
// held (package path and type name, "*" for pointers) and of the
// registered sentinels it wrapped ("sentinel:" and the message).
func (e *TaskError) ErrorTypes() []string {
	names := make([]string, len(e.types))
	for i, t := range e.types {
		names[i] = t.Name
	}
	return names
}
