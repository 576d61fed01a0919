//go:build !race

package core

// recycleChunks says whether sent chunk buffers go back to the pool once
// the peer has consumed them (see bytestream_race.go).
const recycleChunks = true
