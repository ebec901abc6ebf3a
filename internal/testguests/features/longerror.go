//go:build wasip1

package main

import (
	"errors"
	"strings"
)

func init() { moreCases["long_error"] = longError }

// longError fails the job with an error of 20,000 bytes over 200 lines,
// which must reach the client whole.
func longError() error {
	var b strings.Builder
	b.WriteString("a long error begins\n")
	for range 200 {
		b.WriteString(strings.Repeat("0123456789", 10) + "\n")
	}
	b.WriteString("and ends here")
	return errors.New(b.String())
}
