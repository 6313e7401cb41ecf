//go:build !unix

package ca

import "time"

// processCPU is not measured where getrusage is missing: the benchmark's
// cpu-µs/op reads 0 there.
func processCPU() time.Duration { return 0 }
