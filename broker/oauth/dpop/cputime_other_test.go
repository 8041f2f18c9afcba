//go:build !unix

package dpop_test

import "time"

func cpuTime() time.Duration { return 0 }
