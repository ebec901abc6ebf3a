// Package testguests holds guest programs that misbehave on purpose; the
// tests run them with the real binary. `make guests` builds each
// subdirectory to bin/testguests/NAME.wasm.
package testguests
