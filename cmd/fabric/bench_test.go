//go:build linux

package main

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func ptr(v float64) *float64 { return &v }

func TestCheckFloors(t *testing.T) {
	results := []benchResult{
		{Name: "baseline_goroutine_pool_sync", Value: 1_000_000, Unit: "/s"},
		{Name: "baseline_wazero_call", Value: 10_000_000, Unit: "/s"},
		{Name: "single_client_tasks_sync", Value: 2000, Unit: "/s"},
		{Name: "cold_start_c_guest", Value: 50, Unit: "µs"},
	}
	decorate(results)
	dir := t.TempDir()
	cases := []struct {
		name   string
		floors string
		want   error
	}{
		{"above floors", `{"single_client_tasks_sync": 0.001, "cold_start_c_guest": 0.001}`, nil},
		{"task regression", `{"single_client_tasks_sync": 0.01}`, ErrBenchRegression},
		// 50 µs is 20,000 starts/s: 0.002 of 10M calls/s
		{"time regression", `{"cold_start_c_guest": 0.003}`, ErrBenchRegression},
		{"not measured", `{"n_n_actor_calls_async": 0.1}`, ErrBenchRegression},
	}
	for _, c := range cases {
		p := filepath.Join(dir, "floors.json")
		if err := os.WriteFile(p, []byte(c.floors), 0o600); err != nil {
			t.Fatal(err)
		}
		err := checkFloors(p, results, io.Discard)
		if !errors.Is(err, c.want) || (c.want == nil) != (err == nil) {
			t.Errorf("%s: got %v, want %v", c.name, err, c.want)
		}
	}
}

func TestUpdateDoc(t *testing.T) {
	p := filepath.Join(t.TempDir(), "PERF.md")
	doc := "# Perf\n\nintro\n\n" + docStart + "\nold table\n" + docEnd + "\n\nnotes\n"
	if err := os.WriteFile(p, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	results := []benchResult{
		{Name: "baseline_goroutine_pool_sync", Value: 1_500_000, SD: ptr(1000), Unit: "/s"},
		{Name: "single_client_tasks_sync", Value: 2500, SD: ptr(10), Unit: "/s"},
	}
	decorate(results)
	if err := updateDoc(p, results, 2); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	got := string(b)
	for _, want := range []string{"intro", "notes", "on 2 CPUs", "| single_client_tasks_sync | 2,500 ± 10.00 /s | 981 /s | 2.55x | baseline_goroutine_pool_sync: 1,500,000 ± 1,000 /s |"} {
		if !strings.Contains(got, want) {
			t.Errorf("doc lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "old table") {
		t.Error("old table kept")
	}
	if err := os.WriteFile(p, []byte("no markers"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := updateDoc(p, results, 2); err == nil {
		t.Error("a file without markers was accepted")
	}
}

func TestBenchLines(t *testing.T) {
	var got []benchResult
	w := &benchLineWriter{onResult: func(r benchResult) { got = append(got, r) }}
	_, _ = w.Write([]byte("noise\nBENCH {\"name\":\"a\",\"value\":1.5,\"sd\":0.1,\"unit\":\"/s\",\"runs\":3}\nBENCH {bad json}\nBENCH {\"name\":\"b\","))
	_, _ = w.Write([]byte("\"value\":2,\"unit\":\"GB/s\"}"))
	w.flush()
	if len(got) != 2 || got[0].Name != "a" || got[0].Value != 1.5 || *got[0].SD != 0.1 || got[1].Unit != "GB/s" {
		t.Errorf("parsed %+v", got)
	}
}

func TestHumanNumber(t *testing.T) {
	cases := map[float64]string{1234567: "1,234,567", 981: "981", 19.9: "19.90", 0.474: "0.474", 100: "100"}
	for in, want := range cases {
		if got := humanNumber(in); got != want {
			t.Errorf("humanNumber(%v) = %q, want %q", in, got, want)
		}
	}
}
