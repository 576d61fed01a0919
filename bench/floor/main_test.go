package main

import (
	"strings"
	"testing"
)

func TestNativeRows(t *testing.T) {
	for metric, want := range map[string]string{
		"ssh_connect_first_call": "ssh_native_connect_first_call",
		"ssh_rtt":                "ssh_native_rtt",
		"ssh_bulk_64m":           "ssh_native_bulk_64m",
		"ssh_fanout_100_wall":    "ssh_native_fanout_100_wall",
		"fs_put_ssh_64m":         "fs_put_ssh_native_64m",
		"fs_put_ssh_native_64m":  "",
		"ssh_native_rtt":         "",
		"call_rtt":               "",
	} {
		if got, _ := nativeName(metric); got != want {
			t.Errorf("nativeName(%q) = %q, want %q", metric, got, want)
		}
	}
	var out strings.Builder
	e := &emitter{w: &out}
	if err := e.values("fs_put_ssh_8m", "MiB/s", []float64{1}); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out.String(), "\n"); n != 2 {
		t.Errorf("%d rows written, want the row and its native twin:\n%s", n, out.String())
	}
}
