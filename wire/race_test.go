//go:build race

package wire

// raceEnabled reports whether the race detector is on. Under it sync.Pool
// drops a random share of what is put back, so allocation counts of pooled
// paths mean nothing; `make test` runs those tests again without -race.
const raceEnabled = true
