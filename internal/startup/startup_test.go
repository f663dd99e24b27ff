package startup

import (
	"runtime"
	"testing"
)

// TestInit checks what init leaves for the rest of the process: no heap
// profile, one P. The test binary's own initialisation ran after it, and
// the testing package changes neither unless told to by flags.
func TestInit(t *testing.T) {
	if got := runtime.MemProfileRate; got != 0 {
		t.Errorf("MemProfileRate: got %d, want 0", got)
	}
	if got := runtime.GOMAXPROCS(0); got != 1 {
		t.Errorf("GOMAXPROCS: got %d, want 1", got)
	}
}
