package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

func TestStartProfiles(t *testing.T) {
	dir := t.TempDir()
	cpu, tr := filepath.Join(dir, "cpu.pprof"), filepath.Join(dir, "run.trace")
	stop, err := startProfiles(cpu, tr)
	if err != nil {
		t.Fatal(err)
	}
	if err := stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	for path, magic := range map[string][]byte{
		cpu: {0x1f, 0x8b},    // a gzipped profile.proto
		tr:  []byte("go 1."), // the execution trace header
	} {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(b, magic) {
			t.Errorf("%s starts with %q, want %q", filepath.Base(path), b[:min(len(b), 8)], magic)
		}
	}

	// Neither asked for: nothing is written, and stop is a no-op.
	stop, err = startProfiles("", "")
	if err != nil {
		t.Fatal(err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	// A trace that cannot be written stops the CPU profile already begun,
	// so that another can start.
	if _, err := startProfiles(filepath.Join(dir, "cpu2.pprof"), filepath.Join(dir, "missing", "t")); err == nil {
		t.Fatal("startProfiles with an unwritable trace: no error")
	}
	stop, err = startProfiles(filepath.Join(dir, "cpu3.pprof"), "")
	if err != nil {
		t.Fatalf("a CPU profile after a failed start: %v", err)
	}
	stop()
}
