//go:build !windows

package durable

import "os"

// syncDir fsyncs the open directory d.
func syncDir(d *os.File) error { return d.Sync() }
