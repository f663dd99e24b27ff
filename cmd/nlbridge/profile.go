package main

import (
	"errors"
	"fmt"
	"os"
	"runtime/pprof"
	"runtime/trace"
)

// startProfiles starts what `nlbridge run` was asked for, for its whole
// life: a Go CPU profile to the file cpuPath, and an execution trace
// (goroutine hand-offs, system calls, the collector) to the file
// tracePath; "" leaves either out. The returned stop writes them out.
// They are for measuring (README, Performance), not for production: a
// trace costs about a microsecond per event.
func startProfiles(cpuPath, tracePath string) (stop func() error, err error) {
	var stops []func() error
	stop = func() error {
		var errs []error
		for _, f := range stops {
			errs = append(errs, f())
		}
		return errors.Join(errs...)
	}
	if path := cpuPath; path != "" {
		f, err := os.Create(path)
		if err != nil {
			return nil, fmt.Errorf("cpu profile: %w", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return nil, fmt.Errorf("cpu profile: %w", err)
		}
		stops = append(stops, func() error { pprof.StopCPUProfile(); return f.Close() })
	}
	if path := tracePath; path != "" {
		f, err := os.Create(path)
		if err != nil {
			return nil, errors.Join(fmt.Errorf("trace: %w", err), stop())
		}
		if err := trace.Start(f); err != nil {
			f.Close()
			return nil, errors.Join(fmt.Errorf("trace: %w", err), stop())
		}
		stops = append(stops, func() error { trace.Stop(); return f.Close() })
	}
	return stop, nil
}
