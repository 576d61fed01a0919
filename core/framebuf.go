package core

import (
	"sync"
	"sync/atomic"
)

// Pooled receive buffers.
//
// A stream reads a frame whose payload is the size of a byte stream's
// chunk (64 KiB up to chunkBufSize) into a pooled buffer instead of a
// fresh allocation: bulk transfers receive one such frame after another,
// and allocating each (zeroing, page faults, the scavenger's madvise)
// was a third of a receiving child's CPU. The buffer is recorded on the
// message (Message.frame), and the rule that keeps reuse safe is who may
// give it back:
//
//   - a stream's writer, for a message it forwarded to the next hop,
//     once the frame is written; only for a message that was never
//     delivered in this context (Message.delivered);
//   - a byte stream, for a frame delivered to its handler, once every
//     byte of it was consumed: copied out by Read, written by WriteTo,
//     released after ReadChunk, or dropped by Close.
//
// Nothing else does: a message delivered to any other handler (calls,
// receivers, services) keeps its buffer for good, because call arguments
// and decoded Starlark strings alias the payload. Such a buffer is
// simply garbage once nothing references it. Only recycleFrame returns
// buffers to the pool, and it is called from stream.go and bytestream.go
// alone (TestFrameRecycleCallers checks this).

// frameBufMin is the smallest payload read into a pooled buffer.
const frameBufMin = 64 << 10

// frameClasses are the capacities of pooled buffers: a payload takes the
// smallest that holds it, so a buffer kept by a handler wastes at most
// half of itself.
var frameClasses = [...]int{
	frameBufMin + streamFrameOverhead,
	2*frameBufMin + streamFrameOverhead,
	chunkBufSize,
}

var framePools [len(frameClasses)]sync.Pool

// poisonRecycled, set by tests, fills every recycled buffer with
// poisonByte, so that a buffer given back while still referenced shows
// up as corrupt data.
var poisonRecycled atomic.Bool

// framesRecycled counts buffers given back, for tests.
var framesRecycled atomic.Int64

const poisonByte = 0xDB

// frameClass returns the pool index for an n-byte payload, or -1 when
// n is not pooled.
func frameClass(n int) int {
	if n < frameBufMin {
		return -1
	}
	for i, c := range frameClasses {
		if n <= c {
			return i
		}
	}
	return -1
}

// getFrame returns a pooled buffer for an n-byte payload, or nil when
// payloads of that size are allocated as they come.
func getFrame(n int) *[]byte {
	i := frameClass(n)
	if i < 0 {
		return nil
	}
	if b, ok := framePools[i].Get().(*[]byte); ok {
		*b = (*b)[:n]
		return b
	}
	b := make([]byte, n, frameClasses[i])
	return &b
}

// recycleFrame gives m's pooled buffer back, if it has one. The caller
// must be the buffer's last user (see the rule above); m.Data is
// cleared so the message no longer refers to it.
func recycleFrame(m *Message) {
	b := m.frame
	if b == nil {
		return
	}
	m.frame, m.Data = nil, nil
	putFrame(b)
}

// putFrame returns a buffer that getFrame gave.
func putFrame(b *[]byte) {
	*b = (*b)[:cap(*b)]
	framesRecycled.Add(1)
	if poisonRecycled.Load() {
		for i := range *b {
			(*b)[i] = poisonByte
		}
	}
	if i := frameClass(cap(*b)); i >= 0 && frameClasses[i] == cap(*b) {
		framePools[i].Put(b)
	}
}
