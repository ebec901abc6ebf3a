//go:build !wasip1

package sdk

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

var countTo = Generator1("count_to", func(n int, yield func(int) error) error {
	for i := range n {
		if err := yield(i * 10); err != nil {
			return err
		}
	}
	if n == 3 {
		return errors.New("three is too many")
	}
	return nil
})

// TestGenerator: a stream gives each item in order and then
// ErrEndOfStream; a generator that fails after k items keeps them
// readable and then gives its error; Refs returns them all at once.
func TestGenerator(t *testing.T) {
	newMemHost(t)
	cases := []struct {
		n       int
		want    []int
		wantErr string
	}{
		{0, nil, ""},
		{2, []int{0, 10}, ""},
		{3, []int{0, 10, 20}, "three is too many"},
	}
	for _, c := range cases {
		t.Run(fmt.Sprint(c.n), func(t *testing.T) {
			s := countTo.Remote(c.n)
			var got []int
			var err error
			for {
				var r Ref[int]
				if r, err = s.Next(); err != nil {
					break
				}
				v, gerr := r.Get()
				if gerr != nil {
					t.Fatal(gerr)
				}
				got = append(got, v)
			}
			if fmt.Sprint(got) != fmt.Sprint(c.want) {
				t.Errorf("items %v, want %v", got, c.want)
			}
			if c.wantErr == "" && !errors.Is(err, ErrEndOfStream) || c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)) {
				t.Errorf("end: %v, want %q", err, c.wantErr)
			}
			if _, err := s.Next(); !errors.Is(err, ErrEndOfStream) && c.wantErr == "" {
				t.Errorf("Next after the end: %v", err)
			}
			refs, err := countTo.Remote(c.n).Refs()
			vals, gerr := GetAll(refs)
			if fmt.Sprint(vals) != fmt.Sprint(c.want) && len(c.want) > 0 || gerr != nil {
				t.Errorf("Refs: %v %v, want %v", vals, gerr, c.want)
			}
			if (err != nil) != (c.wantErr != "") {
				t.Errorf("Refs error %v, want %q", err, c.wantErr)
			}
			n := 0
			for _, err := range countTo.Remote(c.n).All() {
				if err != nil {
					break
				}
				n++
			}
			if n != len(c.want) {
				t.Errorf("All gave %d items, want %d", n, len(c.want))
			}
		})
	}
}
