package core

import (
	"runtime"
	"sync/atomic"
	"time"
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
// it reads, and before running the next call after writing one (a
// context that returned a large result is about to make another). A
// collection is skipped when the last one took longer
// than a quarter of what moving the payload at 2 GiB/s takes, so a large
// live heap is not scanned for every frame.

// reuseMin is the payload size from which the stream collects.
const reuseMin = 8 << 20

var (
	lastCollect atomic.Int64 // duration of the last collection run here
	wroteLarge  atomic.Int64 // size of a large payload written since the last collection
)

// collectFor runs a collection ahead of (or after) moving n bytes, when
// it is worth it.
func collectFor(n int) {
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
	return make([]byte, n)
}

// noteWritten is called by a stream's writer after writing payloads, the
// largest n bytes long.
func noteWritten(n int) {
	if n >= reuseMin {
		wroteLarge.Store(int64(n))
	}
}

// collectWritten runs a collection if a large payload has been written
// since the last one: the executor calls it before each call, so that a
// call making another large value reuses the memory of the last one.
func collectWritten() {
	if n := wroteLarge.Swap(0); n > 0 {
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
