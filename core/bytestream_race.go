//go:build race

package core

// recycleChunks is off under the race detector: a sent chunk buffer is
// reused once the peer's credit proves it was written out, but that
// proof travels through the peer's process, which the detector cannot
// see, so reuse would look like a race with the write(2) that sent it.
const recycleChunks = false
