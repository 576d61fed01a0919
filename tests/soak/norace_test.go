//go:build !race

package soak

// raceEnabled: the race detector's shadow memory counts in the resident set.
const raceEnabled = false
