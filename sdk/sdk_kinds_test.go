package sdk

import (
	"errors"
	"testing"

	"github.com/wasmfabric/fabric/internal/abi"
)

// Every kind the host stores has its sentinel, so errors.Is works for all
// of them (the SDK's list once lacked object_lost).
func TestEveryErrorKindHasSentinel(t *testing.T) {
	seen := map[error]abi.ErrorKind{}
	for _, k := range abi.ErrorKinds {
		if k == KindTask {
			continue
		}
		s, ok := kindErrors[k]
		if !ok {
			t.Errorf("kind %q has no sentinel", k)
			continue
		}
		if other, dup := seen[s]; dup {
			t.Errorf("kinds %q and %q share a sentinel", k, other)
		}
		seen[s] = k
		if !errors.Is(&TaskError{Kind: k}, s) {
			t.Errorf("errors.Is(TaskError{%q}, %v) = false", k, s)
		}
	}
	if errors.Is(&TaskError{Kind: KindTask}, ErrTaskCancelled) {
		t.Error("a task error matches ErrTaskCancelled")
	}
}
