package fanout

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.starlark.net/starlark"

	"github.com/mitostar/mitostar/builtins"
	"github.com/mitostar/mitostar/core"
	"github.com/mitostar/mitostar/inventory"
)

// defaultConnectTimeout is connect_timeout's default (core's too).
const defaultConnectTimeout = 30 * time.Second

// connectBuiltin is connect(pattern="all", forks=None).
func (s *Session) connectBuiltin(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	pattern := "all"
	var forksV starlark.Value = starlark.None
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "pattern?", &pattern, "forks?", &forksV); err != nil {
		return nil, err
	}
	forks, err := forksOf(b.Name(), "forks", forksV, s.opts.Forks)
	if err != nil {
		return nil, err
	}
	hosts, err := s.opts.Inventory.Match(pattern)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	conns := s.Connect(builtins.ThreadContext(thread), pattern, hosts, forks)
	out := &Hosts{unreachable: starlark.NewDict(0)}
	for i, h := range hosts {
		c := conns[i]
		if c.err != nil {
			out.unreachable.SetKey(starlark.String(h.Name), builtins.ErrorOf(c.err, h.Name))
			continue
		}
		out.names = append(out.names, h.Name)
		out.contexts = append(out.contexts, builtins.NewContext(c.ctx))
	}
	return out, nil
}

// forksOf reads a forks keyword: None means def.
func forksOf(fname, kw string, v starlark.Value, def int) (int, error) {
	if v == starlark.None {
		return def, nil
	}
	var n int
	if err := starlark.AsInt(v, &n); err != nil || n <= 0 {
		return 0, fmt.Errorf("%s: %s must be a positive int, got %s", fname, kw, v)
	}
	return n, nil
}

// A Target is a connected host: its inventory name and context.
type Target struct {
	Name    string
	Context *core.Context
}

// Connect connects hosts in parallel, at most forks at a time, each host
// once per session (a later call reuses the context, or the failure),
// relays first. It returns each host's connection in the order of hosts;
// failures are recorded (and reported) as unreachable, never returned.
func (s *Session) Connect(ctx context.Context, title string, hosts []*inventory.Host, forks int) []*conn {
	s.mu.Lock()
	s.used = true
	s.mu.Unlock()
	var fresh []string
	for _, h := range hosts {
		s.record(h.Name, func(*hostStat) {}) // the recap lists hosts in this order
		s.mu.Lock()
		_, known := s.conns[h.Name]
		s.mu.Unlock()
		if !known {
			fresh = append(fresh, h.Name)
		}
	}
	p := s.progress()
	p.Begin("connect "+title, fresh)
	sem := make(chan struct{}, forks)
	out := make([]*conn, len(hosts))
	var wg sync.WaitGroup
	for i, h := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = s.ensure(ctx, h, sem)
		}()
	}
	wg.Wait()
	p.End()
	return out
}

// An Unreachable is a host that could not be connected, and why.
type Unreachable struct {
	Name string
	Err  error
}

// ConnectPattern is Connect for the hosts a pattern selects (at most
// the session's forks at a time): the connected targets and the
// unreachable hosts, each in inventory order.
func (s *Session) ConnectPattern(ctx context.Context, pattern string) ([]Target, []Unreachable, error) {
	hosts, err := s.opts.Inventory.Match(pattern)
	if err != nil {
		return nil, nil, err
	}
	conns := s.Connect(ctx, pattern, hosts, s.opts.Forks)
	var targets []Target
	var failed []Unreachable
	for i, h := range hosts {
		if conns[i].err != nil {
			failed = append(failed, Unreachable{h.Name, conns[i].err})
			continue
		}
		targets = append(targets, Target{Name: h.Name, Context: conns[i].ctx})
	}
	return targets, failed, nil
}

// ensure returns h's connection, making it (in this goroutine) when no
// other goroutine has started it, and waiting for it otherwise.
func (s *Session) ensure(ctx context.Context, h *inventory.Host, sem chan struct{}) *conn {
	s.mu.Lock()
	c, ok := s.conns[h.Name]
	if !ok {
		c = &conn{done: make(chan struct{}), loginDone: make(chan struct{})}
		s.conns[h.Name] = c
	}
	s.mu.Unlock()
	if ok {
		select {
		case <-c.done:
			return c
		case <-ctx.Done():
			return &conn{err: context.Cause(ctx)}
		}
	}
	s.dial(ctx, h, c, sem)
	return c
}

// dial connects h as its plan says and settles c.
func (s *Session) dial(ctx context.Context, h *inventory.Host, c *conn, sem chan struct{}) {
	start := time.Now()
	p := s.progress()
	defer func() {
		c.elapsed = time.Since(start)
		select {
		case <-c.loginDone:
		default:
			close(c.loginDone) // no login was tried: followers make their own
		}
		close(c.done)
		s.record(h.Name, func(st *hostStat) {
			st.elapsed += c.elapsed
			if c.err != nil {
				st.unreachable = true
				st.errors = append(st.errors, builtins.ErrorOf(c.err, h.Name).String())
			}
		})
		ev := Event{Host: h.Name, Phase: "connect", Elapsed: c.elapsed, Status: StatusOK}
		if c.err != nil {
			ev.Status, ev.Err = StatusUnreachable, builtins.ErrorOf(c.err, h.Name)
		}
		p.HostDone(ev)
		s.writeJSON(ev, nil)
	}()
	pl, err := s.planFor(h)
	if err != nil {
		c.err = &core.RemoteError{Kind: "Error", Message: fmt.Sprintf("host %s: %v", h.Name, err), Context: h.Name}
		return
	}
	var via *core.Context
	if pl.via != "" {
		if err := s.checkVia(h); err != nil {
			c.err = err
			return
		}
		rc := s.ensure(ctx, s.opts.Inventory.Host(pl.via), sem)
		if rc.err != nil {
			c.err = fmt.Errorf("via %s: %w", pl.via, rc.err)
			return
		}
		via = rc.login
	}
	login := &pl.login
	leads := false // other hosts may share this login: keep it
	if via == nil && login.method == "ssh" && !pl.noMux {
		l := s.leaderFor(endpointKey(login), c)
		leads = l == nil
		if l != nil {
			leader, err := waitLeader(ctx, l)
			if err != nil {
				c.err = err
				return
			}
			if leader != nil {
				via = leader.login
				login = &hop{method: "fork", opts: core.ConnectOptions{Name: login.opts.Name, ConnectTimeout: login.opts.ConnectTimeout, Kwargs: map[string]any{}}}
			}
		}
	}
	select {
	case sem <- struct{}{}:
	case <-ctx.Done():
		c.err = context.Cause(ctx)
		return
	}
	defer func() { <-sem }()
	p.HostStart(h.Name)
	lc, err := s.connectHop(ctx, login, via)
	c.login, c.ctx = lc, lc
	close(c.loginDone)
	if err != nil {
		c.err = err
		return
	}
	if pl.become != nil {
		final, err := s.connectHop(ctx, pl.become, lc)
		if err != nil {
			if !leads {
				lc.Shutdown()
			}
			c.err = err
			return
		}
		c.ctx = final
	}
	cctx, cancel := context.WithTimeout(ctx, defaultConnectTimeout)
	defer cancel()
	if err := c.ctx.Call(cctx, nil, funcSetHost, recordOf(h)); err != nil {
		c.err = fmt.Errorf("setting the host record: %w", err)
	}
}

// checkVia refuses a chain of mitostar_via that loops or names a host
// the inventory lacks.
func (s *Session) checkVia(h *inventory.Host) error {
	seen := map[string]bool{h.Name: true}
	chain := h.Name
	for cur := h; ; {
		next, _ := cur.Vars()["mitostar_via"].(string)
		if next == "" {
			return nil
		}
		chain += " -> " + next
		if seen[next] {
			return &core.RemoteError{Kind: "Error", Message: "mitostar_via loops: " + chain, Context: h.Name}
		}
		seen[next] = true
		if cur = s.opts.Inventory.Host(next); cur == nil {
			return &core.RemoteError{Kind: "Error", Message: fmt.Sprintf("mitostar_via names %s, which is not an inventory host", next), Context: h.Name}
		}
	}
}

// connectHop makes one connection, from via when it is not nil (through
// via's fanout service, so that one relay makes many connections at
// once).
func (s *Session) connectHop(ctx context.Context, h *hop, via *core.Context) (*core.Context, error) {
	opts := h.opts
	opts.Kwargs = cloneKwargs(h.opts.Kwargs)
	if via == nil {
		return s.router.Connect(ctx, h.method, &opts)
	}
	timeout := opts.ConnectTimeout
	if timeout <= 0 {
		timeout = defaultConnectTimeout
		opts.ConnectTimeout = timeout
	}
	cctx, cancel := context.WithTimeout(ctx, timeout+5*time.Second)
	defer cancel()
	var rep connectReply
	err := via.CallService(cctx, &rep, serviceName, "connect", map[string]any{"method": h.method, "opts": &opts})
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return nil, &core.StreamError{Op: "connect " + opts.Name, Err: fmt.Errorf("connection timed out after %s", timeout)}
		}
		return nil, err
	}
	return s.router.ContextByName(rep.ID, rep.Name), nil
}

func cloneKwargs(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
