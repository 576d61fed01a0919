//go:build unix

package core

import (
	"sync"
	"sync/atomic"
	"syscall"
)

// Lending large pieces to a pipe.
//
// writev copies what it writes into pages of the pipe; vmsplice(2) puts
// references to the writer's own pages there instead, and the reader's
// read(2) copies straight out of them. For a 64 MiB payload that is one
// copy and 16,384 page allocations fewer, and the pipe's mutex is held
// for a moment instead of for a copy, so the reader copies almost without
// waiting (docs/benchmarks.md, session 5: 64 MiB results ~1.4 -> ~2
// GiB/s). The price is that the memory must not change, nor be freed and
// reused by the Go heap, until the reader has read it: a piece the
// reader has not read yet is "lent", and the fdWriter keeps a reference
// to it until FIONREAD shows that the pipe no longer holds it.
//
// Only pieces of at least spliceMin bytes are lent. Every such piece a
// stream writes is the memory of an immutable value (a Starlark string or
// bytes in a message's Tail) or a payload buffer of a forwarded frame
// that nothing writes to again; pooled frame and chunk buffers, which
// are reused, are far smaller (Message documents this for Go callers).
//
// A writer whose descriptor is closed while its reader had not read
// everything keeps its lent pieces for the life of the process: the
// reader may still read them, and nothing tells when it has.

// lentPiece is memory lent to a pipe: end is the writer's count of
// bytes put into the pipe when the piece's last lent byte went in.
type lentPiece struct {
	end   uint64
	piece []byte
}

// lenders are the fdWriters that have lent pieces; the collections
// around large payloads (collectFor) first take back what was read, so
// that the collector can free it.
var lenders struct {
	mu sync.Mutex
	w  map[*fdWriter]struct{}
}

// lentState is an fdWriter's record of its lent memory. mu guards it: the
// writer's owner adds to it, and releaseAllRead reads it from others.
type lentState struct {
	// put counts the bytes put into the descriptor, copied or lent, once
	// they are in: the reader has read at least put - FIONREAD of them.
	put      atomic.Uint64
	any      atomic.Bool // lent is not empty (read without mu on every write)
	noSplice bool        // the descriptor refused vmsplice: not a pipe
	mu       sync.Mutex
	lent     []lentPiece
}

// wrote counts n bytes copied into the descriptor, and takes back what
// the reader has read if anything is lent.
func (w *fdWriter) wrote(n int) {
	if spliceMin == 0 {
		return
	}
	if n > 0 {
		w.lend.put.Add(uint64(n))
	}
	if w.lend.any.Load() {
		w.releaseRead()
	}
}

// spliceable reports whether b is lent rather than copied.
func (w *fdWriter) spliceable(b []byte) bool {
	return spliceMin > 0 && len(b) >= spliceMin && !w.lend.noSplice
}

// splice lends at most pipeChunk bytes of b to the pipe fd and records
// the loan. A descriptor that is not a pipe turns lending off for good
// (err nil, n 0: the caller writes instead).
func (w *fdWriter) splice(fd uintptr, b []byte) (int, error) {
	n, err := vmspliceFD(fd, b[:min(len(b), pipeChunk)])
	switch err {
	case nil:
	case syscall.EBADF, syscall.EINVAL, syscall.ENOSYS:
		w.lend.noSplice = true
		return 0, nil
	default:
		return 0, err
	}
	if n > 0 {
		end := w.lend.put.Add(uint64(n))
		w.lend.mu.Lock()
		w.lend.lent = append(w.lend.lent, lentPiece{end: end, piece: b})
		first := len(w.lend.lent) == 1
		w.lend.any.Store(true)
		w.lend.mu.Unlock()
		if first {
			lenders.mu.Lock()
			if lenders.w == nil {
				lenders.w = map[*fdWriter]struct{}{}
			}
			lenders.w[w] = struct{}{}
			lenders.mu.Unlock()
		}
	}
	return n, nil
}

// releaseRead drops the lent pieces the reader has read, and reports
// whether any are still lent. A closed descriptor keeps them all.
func (w *fdWriter) releaseRead() bool {
	w.lend.mu.Lock()
	defer w.lend.mu.Unlock()
	if len(w.lend.lent) == 0 {
		return false
	}
	put := w.lend.put.Load() // before FIONREAD: bytes put later only make read smaller
	unread, err := -1, error(nil)
	if cerr := w.rc.Control(func(fd uintptr) { unread, err = pipeUnread(fd) }); cerr != nil || err != nil || unread < 0 {
		return true
	}
	var read uint64
	if uint64(unread) < put {
		read = put - uint64(unread)
	}
	i := 0
	for i < len(w.lend.lent) && w.lend.lent[i].end <= read {
		i++
	}
	if i > 0 {
		rest := copy(w.lend.lent, w.lend.lent[i:])
		clear(w.lend.lent[rest:])
		w.lend.lent = w.lend.lent[:rest]
	}
	w.lend.any.Store(len(w.lend.lent) > 0)
	return len(w.lend.lent) > 0
}

// releaseAllRead takes back, from every writer, the lent memory its
// reader has read.
func releaseAllRead() {
	lenders.mu.Lock()
	defer lenders.mu.Unlock()
	for w := range lenders.w {
		if !w.releaseRead() {
			delete(lenders.w, w)
		}
	}
}
