package connect

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/mitostar/mitostar/core"
)

// The native transport keeps one SSH connection per host, user and
// authentication settings in each router: every context started to the
// same place (ssh twice as one user, the jump host of many targets)
// opens a session on it, and it closes with its last session.

// sshPool is a router's open native connections.
type sshPool struct {
	r     *core.Router
	mu    sync.Mutex
	conns map[string]*sshConn
}

// pools holds each router's pool, until it closes.
var pools sync.Map // *core.Router → *sshPool

func poolOf(r *core.Router) *sshPool {
	if p, ok := pools.Load(r); ok {
		return p.(*sshPool)
	}
	p, had := pools.LoadOrStore(r, &sshPool{r: r, conns: map[string]*sshConn{}})
	if !had {
		context.AfterFunc(r.Lifetime(), func() { pools.Delete(r) })
	}
	return p.(*sshPool)
}

// An sshConn is one SSH connection of the pool.
type sshConn struct {
	pool  *sshPool
	key   string
	label string // user@host:port, for messages

	ready chan struct{} // closed once the dial has ended
	err   error         // the dial's failure
	// expired: the dial failed once its own context had ended (the
	// deadline of the caller that started it): a caller that joined it
	// with time left dials again.
	expired bool
	client  *ssh.Client
	via     *sshConn // the jump host's connection, held while this one is open
	refs    int      // sessions and waiters (pool.mu)

	phase     atomic.Pointer[string] // what the dial is doing
	closed    chan struct{}          // closed once the connection is closed
	closeOnce sync.Once
	causeMu   sync.Mutex
	cause     error // why the connection was closed under its sessions
}

// A dialResult is what dialing a connection produced.
type dialResult struct {
	client *ssh.Client
	via    *sshConn // held by the connection
	err    error
}

// acquire returns the open connection for key, or dials it with dial
// (once, however many callers ask at the same time). The caller holds a
// reference until it calls release. The dial runs until ctx's deadline
// (or the router's end), even if the caller that started it gives up,
// so that other callers waiting for it are not failed by that.
//
// dial reports what it is doing with phase ("connecting to HOST:PORT"):
// a caller whose deadline passes says it timed out doing that.
func (p *sshPool) acquire(ctx context.Context, key, label string, keepalive time.Duration, keepaliveCount int, dial func(ctx context.Context, phase func(string)) dialResult) (*sshConn, bool, error) {
	for attempt := 0; ; attempt++ {
		c, reused, joined, err := p.acquireOnce(ctx, key, label, keepalive, keepaliveCount, dial)
		if err == nil {
			return c, reused, nil
		}
		// (ctx first: while ctx is live the dial has ended, and expired is set.)
		if ctx.Err() == nil && joined && c.expired && attempt == 0 {
			continue // the dial we waited for ran out of its starter's time
		}
		return nil, false, err
	}
}

// acquireOnce is one attempt of acquire; joined reports that it waited
// for a dial another caller started.
func (p *sshPool) acquireOnce(ctx context.Context, key, label string, keepalive time.Duration, keepaliveCount int, dial func(ctx context.Context, phase func(string)) dialResult) (c *sshConn, reused, joined bool, err error) {
	p.mu.Lock()
	c = p.conns[key]
	reused = c != nil && !c.unusable()
	if reused {
		select {
		case <-c.ready:
		default:
			joined = true // its dial is still under way
		}
	} else {
		c = &sshConn{pool: p, key: key, label: label, ready: make(chan struct{}), closed: make(chan struct{})}
		p.conns[key] = c
		dctx, cancel := context.WithCancel(p.r.Lifetime())
		if d, ok := ctx.Deadline(); ok {
			// A moment after the caller's: when the deadline is what
			// ends the dial, the caller sees its own context expire
			// (a timeout) rather than the dial's error about it.
			dctx, cancel = context.WithDeadline(p.r.Lifetime(), d.Add(time.Second))
		}
		p.r.Go(func() {
			defer cancel()
			res := dial(dctx, func(s string) { c.phase.Store(&s) })
			p.mu.Lock()
			c.client, c.via, c.err = res.client, res.via, res.err
			// The dialer's own deadline may fire a moment before dctx
			// reports it: a timeout error counts as the context's end.
			c.expired = res.err != nil && (dctx.Err() != nil ||
				errors.Is(res.err, os.ErrDeadlineExceeded) || errors.Is(res.err, context.DeadlineExceeded))
			close(c.ready)
			unused := c.refs == 0
			if c.err != nil && p.conns[key] == c {
				delete(p.conns, key)
			}
			p.mu.Unlock()
			if c.err != nil {
				return
			}
			if unused {
				c.close(nil)
			}
			c.watch(keepalive, keepaliveCount)
		})
	}
	c.refs++
	p.mu.Unlock()
	select {
	case <-c.ready:
	case <-ctx.Done():
		p.release(c)
		if ctx.Err() == context.DeadlineExceeded {
			what := "waiting for the ssh connection to " + label
			if ph := c.phase.Load(); ph != nil {
				what = *ph
			}
			return c, false, joined, errors.New("timed out " + what)
		}
		return c, false, joined, context.Cause(ctx)
	}
	if c.err != nil {
		p.release(c)
		return c, false, joined, c.err
	}
	return c, reused, joined, nil
}

// unusable reports a connection that failed or closed (pool.mu held).
func (c *sshConn) unusable() bool {
	select {
	case <-c.ready:
		if c.err != nil {
			return true
		}
	default:
		return false
	}
	select {
	case <-c.closed:
		return true
	default:
		return false
	}
}

// release drops a reference; the last one closes the connection.
func (p *sshPool) release(c *sshConn) {
	p.mu.Lock()
	c.refs--
	last := c.refs == 0
	dialed := false
	select {
	case <-c.ready:
		dialed = c.err == nil
	default:
	}
	if last && dialed && p.conns[c.key] == c {
		delete(p.conns, c.key)
	}
	p.mu.Unlock()
	if last && dialed {
		c.close(nil)
	}
}

// close closes the connection (cause, if any, is what its sessions
// report) and releases the jump host's.
func (c *sshConn) close(cause error) {
	c.closeOnce.Do(func() {
		c.causeMu.Lock()
		c.cause = cause
		c.causeMu.Unlock()
		c.pool.mu.Lock()
		if c.pool.conns[c.key] == c {
			delete(c.pool.conns, c.key)
		}
		c.pool.mu.Unlock()
		c.client.Close()
		close(c.closed)
		if c.via != nil {
			c.pool.release(c.via)
		}
	})
}

// lost returns why the connection was closed under its sessions, or nil.
func (c *sshConn) lost() error {
	c.causeMu.Lock()
	defer c.causeMu.Unlock()
	return c.cause
}

// errRouterClosed ends the connections of a router that closed.
var errRouterClosed = errors.New("the router has shut down")

// watch runs for the connection's life: it closes the connection when
// the router closes, when the server closes it, or, with keepalives,
// when the server has not answered for count+1 intervals. That is ssh's
// rule (ServerAliveInterval, ServerAliveCountMax): each interval counts
// one more unanswered keepalive, an answer resets the count, and one
// more than the count ends the connection. Closing the connection ends
// every session on it, and so fails every pending call of their
// contexts.
func (c *sshConn) watch(interval time.Duration, count int) {
	var tick <-chan time.Time
	if interval > 0 {
		t := time.NewTicker(interval)
		defer t.Stop()
		tick = t.C
	}
	ended := make(chan struct{})
	go func() {
		c.client.Wait()
		close(ended)
	}()
	answered := make(chan error, 1)
	inFlight, missed := false, 0
	for {
		select {
		case <-c.closed:
			return
		case <-c.pool.r.Lifetime().Done():
			c.close(errRouterClosed)
			return
		case <-ended:
			c.close(fmt.Errorf("the ssh connection to %s closed", c.label))
			return
		case err := <-answered:
			inFlight = false
			if err == nil {
				missed = 0
			}
		case <-tick:
			missed++
			if missed > count {
				err := fmt.Errorf("the ssh connection to %s is lost: no answer to keepalives for %v", c.label, time.Duration(count+1)*interval)
				c.pool.r.Emit(slog.LevelWarn, err.Error())
				c.close(err)
				return
			}
			if inFlight {
				continue
			}
			inFlight = true
			// The request ends when the server answers or the
			// connection closes; it is the only one in flight.
			go func() {
				_, _, err := c.client.SendRequest("keepalive@openssh.com", true, nil)
				answered <- err
			}()
		}
	}
}
