package wire

import (
	"sync"
	"time"
)

// Large payloads live in pooled buffers. A bulk transfer sends and
// receives its data in frames of up to a byte stream's chunk size; with
// a fresh allocation per frame the garbage collector runs every few
// megabytes, and the memory it returns to the system is mapped and
// cleared again for the next frames: the goal of fs.put over OpenSSH is
// met with the pool and missed without it (docs/benchmarks.md, "Pooled
// payloads"). A Buf goes back to the pool through Free only, called once
// by whoever finishes with its bytes: the link that wrote the frame, or
// the reader that copied them out. A Buf nobody frees is garbage like
// any other memory.

// PoolSize is the size of a pooled buffer: a byte stream's largest frame
// payload (a 256 KiB chunk and its head), with room to spare.
const PoolSize = 256<<10 + 64

// poolMin is the smallest payload read into a pooled buffer: below it a
// plain allocation costs less than the pool's bookkeeping.
const poolMin = 64 << 10

// Payload returns memory for a payload of n bytes: from the pool, with
// its Buf, when n is large enough to be worth it and fits, else a plain
// allocation and a nil Buf.
func Payload(n int) ([]byte, *Buf) {
	if n < poolMin || n > PoolSize {
		return make([]byte, n), nil
	}
	b := GetBuf(n)
	return b.B, b
}

// A Buf is a pooled buffer. B is its memory while the Buf is held.
type Buf struct {
	B    []byte
	free bool
}

// The pool is a free list rather than a sync.Pool: a sync.Pool is
// emptied by every garbage collection, and a process receiving a
// transfer collects often enough that it would keep allocating. The
// list keeps at most poolKeep buffers, and lets them all go once the
// process has asked for none for poolIdle, so that an idle context holds
// no transfer's memory.
const (
	poolKeep = 64
	poolIdle = 2 * time.Second
)

var pool struct {
	mu    sync.Mutex
	free  []*Buf
	used  bool        // a buffer was asked for since the last check
	timer *time.Timer // runs trimPool while buffers are kept
}

// GetBuf returns a pooled buffer whose B holds n bytes (n ≤ PoolSize),
// not cleared: the caller overwrites them.
func GetBuf(n int) *Buf {
	if n > PoolSize {
		panic("wire: GetBuf larger than PoolSize")
	}
	pool.mu.Lock()
	pool.used = true
	var b *Buf
	if k := len(pool.free); k > 0 {
		b = pool.free[k-1]
		pool.free[k-1] = nil
		pool.free = pool.free[:k-1]
	}
	pool.mu.Unlock()
	if b == nil {
		b = &Buf{B: make([]byte, PoolSize)}
	}
	b.free = false
	b.B = b.B[:n]
	return b
}

// Free gives b back to the pool: nothing may use b.B, or a slice of it,
// afterwards. Free of nil does nothing.
func (b *Buf) Free() {
	if b == nil {
		return
	}
	if b.free {
		panic("wire: buffer freed twice")
	}
	b.free = true
	b.B = b.B[:cap(b.B)]
	pool.mu.Lock()
	if len(pool.free) < poolKeep {
		pool.free = append(pool.free, b)
		if pool.timer == nil {
			pool.timer = time.AfterFunc(poolIdle, trimPool)
		}
	}
	pool.mu.Unlock()
}

// trimPool lets the kept buffers go once none was asked for in poolIdle.
func trimPool() {
	pool.mu.Lock()
	defer pool.mu.Unlock()
	if pool.used {
		pool.used = false
		pool.timer.Reset(poolIdle)
		return
	}
	clear(pool.free)
	pool.free = pool.free[:0]
	pool.timer = nil
}
