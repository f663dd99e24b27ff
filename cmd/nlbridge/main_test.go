package main

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func TestRealMainUsage(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "nlbridge.yaml")
	if err := os.WriteFile(bad, []byte("host: web-01\nnetlink:\n  recieve_buffer: 4MiB\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	badValue := filepath.Join(dir, "value.yaml")
	if err := os.WriteFile(badValue, []byte("encoding: xml\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args       []string
		code       int
		stdout     string
		stderrPart string
	}{
		{[]string{"version"}, 0, "nlbridge " + version + "\n", ""},
		{[]string{"help"}, 0, usage(), ""},
		{[]string{"frobnicate"}, 2, "", `unknown command "frobnicate"`},
		{[]string{"run", "--config", bad}, 2, "", "nlbridge.yaml:3: netlink.recieve_buffer: unknown key"},
		{[]string{"--config", badValue}, 2, "", `value.yaml:1: encoding: "xml" is not one of json, cbor`},
		{[]string{"run", "--config", filepath.Join(dir, "missing.yaml")}, 2, "", "missing.yaml"},
		{[]string{"run", "--bogus"}, 2, "", "flag provided but not defined: -bogus"},
		{[]string{"run", "extra"}, 2, "", `unexpected argument "extra"`},
		{[]string{"run", "--help"}, 0, "", "Usage: nlbridge run"},
		{[]string{"run", "--trace", filepath.Join(dir, "missing", "t.out")}, 2, "", "trace: open"},
		{[]string{"run", "--cpuprofile", filepath.Join(dir, "missing", "cpu.out")}, 2, "", "cpu profile: open"},
	}
	for _, tt := range tests {
		var stdout, stderr bytes.Buffer
		code := realMain(tt.args, &stdout, &stderr)
		if code != tt.code || stdout.String() != tt.stdout && tt.stdout != "" || !strings.Contains(stderr.String(), tt.stderrPart) {
			t.Errorf("nlbridge %v: exit %d, stdout %q, stderr %q; want exit %d, stdout %q, stderr containing %q",
				tt.args, code, stdout.String(), stderr.String(), tt.code, tt.stdout, tt.stderrPart)
		}
	}
}

func TestShouldRelease(t *testing.T) {
	const mib = 1 << 20
	busy := heapReading{allocs: 100 * mib}
	for _, tt := range []struct {
		name string
		prev heapReading
		now  heapReading
		want bool
	}{
		{"quiet after a burst: garbage", busy, heapReading{allocs: 100*mib + 1000, live: 20 * mib, objects: 35 * mib}, true},
		{"quiet after a burst: free pages", busy, heapReading{allocs: 100 * mib, live: 20 * mib, objects: 20 * mib, free: 6 * mib}, true},
		{"still allocating", busy, heapReading{allocs: 110 * mib, live: 20 * mib, objects: 35 * mib}, false},
		{"quiet, little reclaimable", busy, heapReading{allocs: 100 * mib, live: 2 * mib, objects: 3 * mib, free: 2 * mib}, false},
		{"quiet, less than a quarter of the live heap", busy, heapReading{allocs: 100 * mib, live: 40 * mib, objects: 45 * mib, free: 4 * mib}, false},
		{"quiet, objects below the last live heap", busy, heapReading{allocs: 100 * mib, live: 40 * mib, objects: 30 * mib, free: mib}, false},
		{"idle from the start", heapReading{}, heapReading{}, false},
	} {
		if got := shouldRelease(tt.prev, tt.now); got != tt.want {
			t.Errorf("%s: shouldRelease(%+v, %+v) = %v, want %v", tt.name, tt.prev, tt.now, got, tt.want)
		}
	}
}

func TestSetProcs(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	runtime.SetDefaultGOMAXPROCS()
	def := runtime.GOMAXPROCS(0)
	tests := []struct {
		name, command, env string
		want               int
	}{
		{"run keeps one P", "run", "", 1},
		{"run with GOMAXPROCS", "run", "3", 3},
		{"run with a bad GOMAXPROCS", "run", "x", def},
		{"run with GOMAXPROCS 0", "run", "0", def},
		{"other commands get the default", "show", "", def},
		{"other commands with GOMAXPROCS", "watch", "5", 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("GOMAXPROCS", tt.env)
			runtime.GOMAXPROCS(1) // as internal/startup leaves it
			setProcs(tt.command)
			if got := runtime.GOMAXPROCS(0); got != tt.want {
				t.Errorf("GOMAXPROCS after setProcs(%q) with GOMAXPROCS=%q: got %d, want %d", tt.command, tt.env, got, tt.want)
			}
		})
	}
}
