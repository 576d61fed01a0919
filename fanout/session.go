// Package fanout runs a mitostar script against many hosts: it gives the
// master's Starlark the inventory (inventory.hosts, inventory.groups),
// connect(pattern) — parallel connections bounded by forks, through
// mitostar_via relays and become as each host's variables say — and
// each(targets, fn) — a call on every target in parallel with per-host
// results, serial batches and max_fail_percentage. It reports progress
// while hosts work (a live display on a terminal, one line per host
// event otherwise), the recap table per host when the run ends, JSON
// lines with --json, and the exit status 3 (a host failed) or 4 (hosts
// unreachable).
//
// In every context the package registers what targets need: the host
// record a context started by connect predeclares as host, the wrapper
// fanout.call that reports whether operations changed the host, and a
// service that makes connections through a relay in parallel.
package fanout

import (
	"fmt"
	"io"
	"sync"
	"time"

	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"

	"github.com/mitostar/mitostar/core"
	"github.com/mitostar/mitostar/inventory"
	"github.com/mitostar/mitostar/runtime"
)

// DefaultForks is how many hosts connect and each work on at once unless
// --forks says otherwise.
const DefaultForks = 50

// Options configure a Session.
type Options struct {
	Inventory *inventory.Inventory // nil: an empty inventory (localhost only)
	Forks     int                  // 0: DefaultForks
	// Passwords from -k, -K or --become-password-file; a host variable
	// (ansible_password, ansible_become_password) wins over them.
	SSHPassword    *string
	BecomePassword *string
	// Become forces become on every host (mitostar exec -b).
	Become bool
	// Progress receives host events (nil: none).
	Progress Progress
	// JSON receives one JSON object per host result and the recap (nil:
	// none).
	JSON io.Writer
}

// A Session is one run's fan-out state in the master: the inventory, the
// contexts connected so far (each host at most once), and what the
// recap reports.
type Session struct {
	opts   Options
	router *core.Router

	mu        sync.Mutex
	conns     map[string]*conn // inventory name → connection (or its failure)
	stats     map[string]*hostStat
	order     []string // hosts in the order the run first met them
	used      bool
	jsonMu    sync.Mutex
	jsonError error
	share     sharing
}

// A conn is one host's connection, made once; done closes when it is
// settled.
type conn struct {
	done      chan struct{}
	loginDone chan struct{} // closed once login is settled
	login     *core.Context // the login connection, what relays connect from
	ctx       *core.Context // the context calls go to (after become)
	err       error
	elapsed   time.Duration
}

// NewSession returns the fan-out of the master r. Its names (Predeclared)
// go to the master's runtime, which calls use once it exists.
func NewSession(r *core.Router, opts Options) *Session {
	if opts.Inventory == nil {
		opts.Inventory, _ = inventory.Load() // no sources: localhost only
	}
	if opts.Forks <= 0 {
		opts.Forks = DefaultForks
	}
	s := &Session{opts: opts, router: r, conns: map[string]*conn{}, stats: map[string]*hostStat{}}
	if err := registerService(s.router); err != nil {
		s.router.Logger().Debug("fanout service", "err", err)
	}
	return s
}

// Predeclared returns the names the master's scripts see: inventory,
// connect and each.
func Predeclared(s *Session) starlark.StringDict {
	return starlark.StringDict{
		"inventory": &starlarkstruct.Module{Name: "inventory", Members: starlark.StringDict{
			"hosts":  starlark.NewBuiltin("inventory.hosts", s.inventoryHosts),
			"groups": starlark.NewBuiltin("inventory.groups", s.inventoryGroups),
		}},
		"connect": starlark.NewBuiltin("connect", s.connectBuiltin),
		"each":    starlark.NewBuiltin("each", s.eachBuiltin),
	}
}

func init() {
	runtime.RegisterPredeclared(func(r *core.Router) starlark.StringDict {
		// In the master the command line's session replaces these.
		masterOnly := func(name string) *starlark.Builtin {
			return starlark.NewBuiltin(name, func(*starlark.Thread, *starlark.Builtin, starlark.Tuple, []starlark.Tuple) (starlark.Value, error) {
				where := "the master"
				if r.IsMaster() {
					where = "a master run by the mitostar command"
				}
				return nil, fmt.Errorf("%s is only available in %s (this is %s)", name, where, r.Name())
			})
		}
		return starlark.StringDict{
			"inventory": &starlarkstruct.Module{Name: "inventory", Members: starlark.StringDict{
				"hosts":  masterOnly("inventory.hosts"),
				"groups": masterOnly("inventory.groups"),
			}},
			"connect": masterOnly("connect"),
			"each":    masterOnly("each"),
		}
	})
}

// Used reports whether the run connected or called hosts (then it has a
// recap).
func (s *Session) Used() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.used
}

// Inventory is the session's inventory.
func (s *Session) Inventory() *inventory.Inventory { return s.opts.Inventory }

func (s *Session) progress() Progress {
	if s.opts.Progress == nil {
		return nopProgress{}
	}
	return s.opts.Progress
}

// runtime returns the master's runtime.
func (s *Session) runtime() (*runtime.Runtime, error) {
	rt := runtime.Of(s.router)
	if rt == nil {
		return nil, fmt.Errorf("fanout: the master has no runtime")
	}
	return rt, nil
}

// inventoryHosts is inventory.hosts(pattern="all"): the host values the
// pattern selects (narrowed by --limit), in inventory order.
func (s *Session) inventoryHosts(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	pattern := "all"
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "pattern?", &pattern); err != nil {
		return nil, err
	}
	hosts, err := s.opts.Inventory.Match(pattern)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", b.Name(), err)
	}
	out := make([]starlark.Value, len(hosts))
	for i, h := range hosts {
		v, err := hostValue(recordOf(h))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", b.Name(), err)
		}
		out[i] = v
	}
	return starlark.NewList(out), nil
}

// inventoryGroups is inventory.groups(): dict group → the names of its
// hosts (its children's included), every group, all and ungrouped too.
func (s *Session) inventoryGroups(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	if err := starlark.UnpackArgs(b.Name(), args, kwargs); err != nil {
		return nil, err
	}
	groups := s.opts.Inventory.Groups()
	d := starlark.NewDict(len(groups))
	for _, g := range groups {
		hosts := g.Hosts()
		names := make([]starlark.Value, len(hosts))
		for i, h := range hosts {
			names[i] = starlark.String(h.Name)
		}
		d.SetKey(starlark.String(g.Name), starlark.NewList(names))
	}
	return d, nil
}
