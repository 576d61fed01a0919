package core

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"time"
)

// Routes and context ids.
//
// Ids are handed out in blocks of idBlockSize, hop by hop: a context that
// needs ids asks its parent (ALLOCATE_ID), which takes a block from the
// master's counter (asking its own parent in turn) and records it as
// granted through the stream of the child that asked. A route
// announcement (ADD_ROUTE) from a child stream is accepted only for an id
// inside a block granted through that stream, so a child can announce
// its own descendants and nothing else. The announcement names the new
// context's parent, which must be the announcing child or one of its
// descendants: every router thus knows the ancestry of its descendants,
// which is how it tells a relay on the way to a context (which may
// answer for it with a dead message) from anyone else.

// maxBlocksPerStream bounds the id blocks one child stream may take: a
// child can never exhaust the tree's ids.
const maxBlocksPerStream = 1024

// maxContextID is the last id the master hands out.
const maxContextID = math.MaxUint32 - 1

// An idRange is the ids [start, end).
type idRange struct{ start, end uint32 }

func (b idRange) has(id uint32) bool { return id >= b.start && id < b.end }

// addChild registers a started child's stream and announces it upward.
func (r *Router) addChild(s *Stream) {
	r.mu.Lock()
	r.children[s.remoteID] = s
	r.mu.Unlock()
	r.addRoute(routeUpdate{ID: s.remoteID, Name: s.name, Parent: r.id}, s)
	s.start()
}

// addRoute routes u.ID to the child stream s, records its parent and
// name, and announces it to this router's parent. The caller has checked
// that the route is s's to take.
func (r *Router) addRoute(u routeUpdate, s *Stream) {
	r.mu.Lock()
	r.routes[u.ID] = s
	r.parentOf[u.ID] = u.Parent
	delete(r.dead, u.ID)
	r.contextLocked(u.ID, u.Name)
	parent := r.parent
	r.mu.Unlock()
	if parent != nil {
		r.sendRouteUpdate(parent, handleAddRoute, u)
	}
}

func (r *Router) sendRouteUpdate(s *Stream, handle uint32, u routeUpdate) {
	data, _ := Marshal(u)
	s.forward(&Message{DstID: s.remoteID, SrcID: r.id, AuthID: r.id, Handle: handle, Data: data}, controlReserve)
}

// warnf logs a refusal as a warning every context's log shows (a policy,
// a security check or a full queue refused something), at most ten lines
// a second: a hostile child cannot flood the log with them.
func (r *Router) warnf(format string, args ...any) {
	now := time.Now()
	r.mu.Lock()
	dropped := 0
	if now.Sub(r.warnStart) >= time.Second {
		dropped = max(r.warnCount-maxWarnings, 0)
		r.warnStart, r.warnCount = now, 0
	}
	r.warnCount++
	n := r.warnCount
	r.mu.Unlock()
	if dropped > 0 {
		r.Emit(slog.LevelWarn, fmt.Sprintf("(%d more warnings were not logged)", dropped))
	}
	if n <= maxWarnings {
		r.Emit(slog.LevelWarn, fmt.Sprintf(format, args...))
	}
}

// maxWarnings is how many warnings warnf logs in a second.
const maxWarnings = 10

// nameOfLocked is how this router names a context in its logs: "NAME
// (context ID)".
func (r *Router) nameOfLocked(id uint32) string {
	if c, ok := r.contexts[id]; ok && c.name.Load() != nil {
		return fmt.Sprintf("%s (context %d)", c.Name(), id)
	}
	return fmt.Sprintf("context %d", id)
}

func (r *Router) nameOf(id uint32) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.nameOfLocked(id)
}

func (r *Router) onAddRoute(m *Message) {
	var u routeUpdate
	if err := m.Decode(&u); err != nil {
		r.warnf("refused ADD_ROUTE from %s: %v", r.nameOf(m.SrcID), err)
		return
	}
	in := m.from
	r.mu.Lock()
	why := r.checkAddRouteLocked(u, in)
	from := r.nameOfLocked(m.SrcID)
	r.mu.Unlock()
	if why != "" {
		r.warnf("refused ADD_ROUTE for context %d (%q) from %s: %s", u.ID, u.Name, from, why)
		return
	}
	r.addRoute(u, in)
}

// checkAddRouteLocked says why a route announcement from the child
// stream in is refused, or "".
func (r *Router) checkAddRouteLocked(u routeUpdate, in *Stream) string {
	existing, routed := r.routes[u.ID]
	switch {
	case u.ID == r.id || slices.Contains(r.parentIDs, u.ID):
		return "the id is this context's or an ancestor's"
	case routed && existing != in:
		return "the id is routed to another stream"
	case !slices.ContainsFunc(r.granted[in], func(b idRange) bool { return b.has(u.ID) }):
		return "the id was not allocated through that stream"
	case u.Parent != in.remoteID && r.routes[u.Parent] != in:
		return fmt.Sprintf("its parent %d is not behind that stream", u.Parent)
	}
	return ""
}

func (r *Router) onDelRoute(m *Message) {
	var u routeUpdate
	if err := m.Decode(&u); err != nil {
		r.warnf("refused DEL_ROUTE from %s: %v", r.nameOf(m.SrcID), err)
		return
	}
	in := m.from
	if in == nil {
		return
	}
	r.mu.Lock()
	via, routed := r.routes[u.ID]
	r.mu.Unlock()
	if in.isParent {
		if routed {
			return // one of ours: the parent cannot declare it gone
		}
	} else if !routed || via != in {
		r.warnf("refused DEL_ROUTE for %s from %s: it is not behind that stream", r.nameOf(u.ID), r.nameOf(m.SrcID))
		return
	}
	if u.Reason == "" {
		u.Reason = msgRespondentDisconnect
	}
	r.contextGone(u.ID, u.Reason, in)
}

// isAncestorOf reports whether a is an ancestor of x, as far as this
// router knows: x's parent, its parent's parent, and so on, up to this
// context or one of its own ancestors.
func (r *Router) isAncestorOf(a, x uint32) bool {
	if slices.Contains(r.parentIDs, a) {
		return true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for range 1 << 16 { // a cycle in lying announcements must end
		p, ok := r.parentOf[x]
		if !ok {
			return false
		}
		if p == a {
			return true
		}
		if p == r.id {
			return a == r.id
		}
		x = p
	}
	return false
}

// AllocateID returns a fresh context id: from the master's counter in the
// master, from a block asked of the parent (ALLOCATE_ID) elsewhere.
func (r *Router) AllocateID(ctx context.Context) (uint32, error) {
	r.mu.Lock()
	if r.idNext < r.idEnd {
		id := r.idNext
		r.idNext++
		r.mu.Unlock()
		return id, nil
	}
	r.mu.Unlock()
	blk, err := r.takeBlock(ctx)
	if err != nil {
		return 0, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.idNext >= r.idEnd {
		r.idNext, r.idEnd = blk.start, blk.end
	}
	id := r.idNext
	r.idNext++
	return id, nil
}

// takeBlock takes a block of ids: from the counter in the master, from
// the parent elsewhere.
func (r *Router) takeBlock(ctx context.Context) (idRange, error) {
	if r.IsMaster() {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.idCounter > maxContextID-idBlockSize {
			return idRange{}, errors.New("allocating context ids: all 4 billion ids of this tree are taken")
		}
		b := idRange{r.idCounter, r.idCounter + idBlockSize}
		r.idCounter += idBlockSize
		return b, nil
	}
	parent, _ := r.ParentID()
	m, err := r.ContextByID(parent).SendAwait(ctx, &Message{Handle: handleAllocateID})
	if err != nil {
		return idRange{}, fmt.Errorf("allocating context ids: %w", err)
	}
	var blk idBlock
	if err := m.Decode(&blk); err != nil {
		return idRange{}, fmt.Errorf("allocating context ids: %w", err)
	}
	if blk.Count == 0 || blk.Start == 0 || uint64(blk.Start)+uint64(blk.Count) > maxContextID+1 {
		return idRange{}, fmt.Errorf("allocating context ids: the parent answered with a bad block %+v", blk)
	}
	return idRange{blk.Start, blk.Start + blk.Count}, nil
}

// onAllocateID serves a direct child's ALLOCATE_ID: a block for it,
// recorded as granted through its stream. It runs on the stream's
// reader, so a block that must come from the parent is fetched on a
// goroutine of its own.
func (r *Router) onAllocateID(m *Message) {
	if m.IsDead() || m.ReplyTo == 0 {
		return
	}
	in := m.from
	r.mu.Lock()
	// Requests still being served count: a relay fetches blocks from its
	// parent on goroutines, and a flood must not pass the check at once.
	taken := len(r.granted[in]) + r.allocating[in]
	if taken < maxBlocksPerStream {
		r.allocating[in]++
	}
	r.mu.Unlock()
	if taken >= maxBlocksPerStream {
		reason := fmt.Sprintf("allocating context ids: %s has taken %d blocks of %d ids, the most one child may take", r.nameOf(m.SrcID), taken, idBlockSize)
		r.warnf("refused ALLOCATE_ID: %s", reason)
		r.sendDead(m, reason)
		return
	}
	serve := func() {
		ctx, cancel := context.WithTimeout(r.ctx, time.Minute)
		defer cancel()
		blk, err := r.takeBlock(ctx)
		r.mu.Lock()
		if r.allocating[in]--; r.allocating[in] <= 0 {
			delete(r.allocating, in)
		}
		if err == nil && r.children[in.remoteID] == in {
			r.granted[in] = append(r.granted[in], blk)
		}
		r.mu.Unlock()
		if err != nil {
			r.sendDead(m, err.Error())
			return
		}
		data, _ := Marshal(idBlock{Start: blk.start, Count: blk.end - blk.start})
		r.routeNoWait(&Message{DstID: m.SrcID, Handle: m.ReplyTo, Data: data}, controlReserve)
	}
	if r.IsMaster() {
		serve()
	} else {
		r.Go(serve)
	}
}
