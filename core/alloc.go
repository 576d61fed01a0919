package core

import (
	"runtime"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"
)

// Large payloads and fresh memory.
//
// On virtual machines the first touch of a page the process has not used
// before is a host page fault: 64 MiB of fresh pages cost 150–250 ms on
// the benchmark machines against a few ms for pages the heap already
// has (docs/benchmarks.md). A process that moves one large payload after
// another keeps reusing the same memory only if the collector frees each
// payload before the next is allocated; left to itself, the collector
// runs when the next allocation pushes the heap over its goal, too late
// for that allocation, which takes fresh pages. So around large payloads
// the stream runs the collector itself: before allocating a large frame
// it reads, and before running the next call after a large payload was
// dropped: written (a context that returned a large result is about to
// make another) or served (the argument of the call that just ended). A
// collection is skipped when the last one took longer
// than a quarter of what moving the payload at 2 GiB/s takes, so a large
// live heap is not scanned for every frame.

// reuseMin is the payload size from which the stream collects.
const reuseMin = 8 << 20

var (
	lastCollect  atomic.Int64 // duration of the last collection run here
	largeDropped atomic.Int64 // size of a large payload dropped since the last collection
)

// collectFor runs a collection ahead of (or after) moving n bytes, when
// it is worth it.
func collectFor(n int) {
	releaseAllRead() // what pipes' readers have read can be freed
	if n < reuseMin || heapObjects() < uint64(n) {
		return
	}
	if budget := time.Duration(n) * time.Second / (8 << 30); time.Duration(lastCollect.Load()) > budget {
		return
	}
	t0 := time.Now()
	runtime.GC()
	lastCollect.Store(int64(time.Since(t0)))
}

// payloadBuffer returns a buffer for an n-byte frame payload, reusing
// the memory of dropped payloads when it can.
func payloadBuffer(n int) []byte {
	collectFor(n)
	if n < noZeroMin {
		return make([]byte, n)
	}
	return makeNoZero(n)
}

// noZeroMin is the payload size from which payloadBuffer does not clear
// the memory it hands out: the payload is read over all of it at once.
// Clearing reused memory cost the reader of a 64 MiB result 5–8 ms of
// its 55–60 ms here (docs/benchmarks.md).
const noZeroMin = 64 << 10

// makeNoZero returns n bytes of memory that is not cleared first: it may
// hold what dead objects of this process left there, so the caller must
// write all of it before anything reads it, and drop it on a failed
// read. Go has no public non-clearing allocation; strings.Builder's Grow
// makes one (internal/bytealg.MakeNoZero) of at least n bytes, reached
// here through the one-byte string built on it.
func makeNoZero(n int) []byte {
	var b strings.Builder
	b.Grow(n)
	b.WriteByte(0)
	s := b.String()
	return unsafe.Slice(unsafe.StringData(s), n)
}

// noteDropped records that this process is done with a payload n bytes
// long: a stream's writer has written it, or the executor has served the
// call that carried it.
func noteDropped(n int) {
	if n >= reuseMin {
		largeDropped.Store(int64(n))
	}
}

// collectDropped runs a collection if a large payload has been dropped
// since the last one: the executor calls it before each call, so that a
// call making another large value reuses the memory of the last one.
func collectDropped() {
	if n := largeDropped.Swap(0); n > 0 {
		collectFor(int(n))
	}
}

// heapObjects returns the bytes of heap objects, live or not yet freed.
// It reads runtime.MemStats, which stops the world for a few
// microseconds: it is called only ahead of moving 8 MiB or more.
// (runtime/metrics would not stop the world, but its package init costs
// every process 1–2 ms at start on the benchmark machines.)
func heapObjects() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}
