//go:build unix

package mirror

import (
	"syscall"
	"time"
)

func init() {
	processCPU = func() (time.Duration, bool) {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			return 0, false
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), true
	}
}
