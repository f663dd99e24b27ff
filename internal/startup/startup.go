// Package startup makes the settings that must take effect before the other
// packages' initialisation runs: a main package imports it for its side
// effects. They keep the pages of the executable that the start touches,
// and so the resident memory of an idle process, small (README, Memory).
//
// The package imports only runtime, so that it is initialised among the
// first: the Go toolchain initialises, of the packages whose imports are
// done, the first by import path.
package startup

import "runtime"

// mainStack is the frame that the main goroutine's stack is grown to hold
// at once: more than the deepest it was measured to go during nlbridge's
// start (package initialisation, configuration, connecting).
const mainStack = 48 << 10

func init() {
	// The heap profile records the call stack of one allocation in every
	// 512 KiB; each record walks the stack's frames through the tables of
	// the executable. Nothing in nlbridge reads that profile (the embedded
	// NATS server's linked-in net/http/pprof is never served), so it
	// records nothing.
	runtime.MemProfileRate = 0
	// nlbridge run uses one P (cmd/nlbridge/main.go says why; its other
	// commands, and the GOMAXPROCS environment variable, set it back).
	// Set later, on a process that had already allocated on the other Ps,
	// it cost 0.5 MiB: each P given up hands its cached spans back to the
	// heap, whose lists of them grow in 4 KiB blocks.
	runtime.GOMAXPROCS(1)
	grow(false)
}

// grow has a frame of mainStack bytes, so that calling it grows the stack
// of its goroutine to hold it, in one step.
//
// Every goroutine starts with a 2 KiB stack, which the runtime doubles each
// time it runs out, copying it and walking every frame on it through the
// frame tables of each function (stack sizes, pointer maps). Package
// initialisation and nlbridge's start run deep call chains on the main
// goroutine (regular expressions compiled, reflection, YAML, logging), and
// those walks touched pages of the tables all over the executable, which
// the kernel maps 64 KiB at a time and which stay resident. Grown here, with
// three frames on it, the stack costs one short walk; the pages of it that
// are never used are never touched and cost no memory.
//
// The array is declared, and so zeroed, only when touch is true, which it
// never is: the frame is reserved, not written.
//
//go:noinline
func grow(touch bool) byte {
	if touch {
		var b [mainStack]byte
		return last(b[:])
	}
	return 0
}

//go:noinline
func last(b []byte) byte { return b[len(b)-1] }
