package core

import (
	"runtime"
	"runtime/metrics"
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
// it reads, and after writing one (the sender has usually dropped its
// value by then). A collection is skipped when the last one took longer
// than a quarter of what moving the payload at 2 GiB/s takes, so a large
// live heap is not scanned for every frame.

// reuseMin is the payload size from which the stream collects.
const reuseMin = 8 << 20

var (
	lastCollect atomic.Int64 // duration of the last collection run here
	collecting  atomic.Bool  // a background collection is running
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

// wroteLarge is called by a stream's writer after writing an n-byte
// payload: one collection at a time runs in the background, so the next
// large allocation finds the memory free.
func wroteLarge(n int) {
	if n < reuseMin || !collecting.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer collecting.Store(false)
		collectFor(n)
	}()
}

// heapObjects returns the bytes of heap objects, live or not yet freed.
func heapObjects() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}
