package builtins

import (
	"errors"
	"fmt"
	"sync"

	"go.starlark.net/starlark"
	"go.starlark.net/syntax"

	"github.com/mitostar/mitostar/core"
)

// Store is the predeclared store (type "store"): a context's mutable
// state between calls, as Mitogen users keep module globals, which are
// frozen here. One per context, shared by every thread of it (calls,
// handlers, services), so values are frozen when stored: to change one,
// store a new value. setdefault and incr change a key atomically.
type Store struct {
	mu sync.Mutex
	d  *starlark.Dict
}

var (
	_ starlark.HasAttrs  = (*Store)(nil)
	_ starlark.HasSetKey = (*Store)(nil)
	_ starlark.Sequence  = (*Store)(nil)
)

// StoreOf returns the store of r's context.
func StoreOf(r *core.Router) *Store {
	rs := routerStateOf(r)
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.store == nil {
		rs.store = &Store{d: starlark.NewDict(0)}
	}
	return rs.store
}

func (s *Store) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return fmt.Sprintf("store(%d keys)", s.d.Len())
}
func (s *Store) Type() string          { return "store" }
func (s *Store) Freeze()               {} // it stays mutable: that is its point
func (s *Store) Truth() starlark.Bool  { return s.Len() > 0 }
func (s *Store) Hash() (uint32, error) { return 0, errors.New("unhashable type: store") }

// Len returns the number of keys.
func (s *Store) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.d.Len()
}

// Iterate yields the keys as they were when the iteration began.
func (s *Store) Iterate() starlark.Iterator {
	s.mu.Lock()
	defer s.mu.Unlock()
	return starlark.NewList(s.d.Keys()).Iterate()
}

// Get implements store[key] and `key in store`.
func (s *Store) Get(k starlark.Value) (starlark.Value, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.d.Get(k)
}

// SetKey implements store[key] = value.
func (s *Store) SetKey(k, v starlark.Value) error {
	if err := storable(k, v); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.d.SetKey(k, v)
}

// storable freezes what is about to be stored, which other threads of
// the context may read at the same time.
func storable(k, v starlark.Value) error {
	if _, err := k.Hash(); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	k.Freeze()
	v.Freeze()
	return nil
}

var storeMethods = methodTable{
	"get": func(t *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		var k starlark.Value
		var dflt starlark.Value = starlark.None
		if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 1, &k, &dflt); err != nil {
			return nil, err
		}
		v, found, err := b.Receiver().(*Store).Get(k)
		if err != nil || !found {
			return dflt, err
		}
		return v, nil
	},
	"setdefault": func(t *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		var k starlark.Value
		var dflt starlark.Value = starlark.None
		if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 1, &k, &dflt); err != nil {
			return nil, err
		}
		if err := storable(k, dflt); err != nil {
			return nil, err
		}
		s := b.Receiver().(*Store)
		s.mu.Lock()
		defer s.mu.Unlock()
		if v, found, err := s.d.Get(k); err != nil || found {
			return v, err
		}
		return dflt, s.d.SetKey(k, dflt)
	},
	"pop": func(t *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		var k, dflt starlark.Value
		if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 1, &k, &dflt); err != nil {
			return nil, err
		}
		s := b.Receiver().(*Store)
		s.mu.Lock()
		defer s.mu.Unlock()
		v, found, err := s.d.Delete(k)
		switch {
		case err != nil:
			return nil, err
		case found:
			return v, nil
		case dflt != nil:
			return dflt, nil
		}
		return nil, fmt.Errorf("pop: missing key %s", k)
	},
	"incr": func(t *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		var k starlark.Value
		var by starlark.Value = starlark.MakeInt(1)
		if err := starlark.UnpackArgs(b.Name(), args, kwargs, "key", &k, "by?", &by); err != nil {
			return nil, err
		}
		if err := storable(k, by); err != nil {
			return nil, err
		}
		s := b.Receiver().(*Store)
		s.mu.Lock()
		defer s.mu.Unlock()
		old, found, err := s.d.Get(k)
		if err != nil {
			return nil, err
		}
		if !found {
			old = starlark.MakeInt(0)
		}
		sum, err := starlark.Binary(syntax.PLUS, old, by)
		if err != nil {
			return nil, fmt.Errorf("incr: %w", err)
		}
		return sum, s.d.SetKey(k, sum)
	},
	"keys": func(t *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		return storeList(b, args, kwargs, func(d *starlark.Dict) []starlark.Value { return d.Keys() })
	},
	"values": func(t *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		return storeList(b, args, kwargs, func(d *starlark.Dict) []starlark.Value {
			var out []starlark.Value
			for _, kv := range d.Items() {
				out = append(out, kv[1])
			}
			return out
		})
	},
	"items": func(t *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		return storeList(b, args, kwargs, func(d *starlark.Dict) []starlark.Value {
			var out []starlark.Value
			for _, kv := range d.Items() {
				out = append(out, kv)
			}
			return out
		})
	},
	"update": func(t *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		var pairs []starlark.Tuple
		if len(args) > 1 {
			return nil, fmt.Errorf("update: got %d positional arguments, want at most 1", len(args))
		}
		if len(args) == 1 {
			d, ok := args[0].(*starlark.Dict)
			if !ok {
				return nil, fmt.Errorf("update: want a dict, got %s", args[0].Type())
			}
			pairs = d.Items()
		}
		pairs = append(pairs, kwargs...)
		for _, kv := range pairs {
			if err := storable(kv[0], kv[1]); err != nil {
				return nil, err
			}
		}
		s := b.Receiver().(*Store)
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, kv := range pairs {
			if err := s.d.SetKey(kv[0], kv[1]); err != nil {
				return nil, err
			}
		}
		return starlark.None, nil
	},
	"clear": func(t *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 0); err != nil {
			return nil, err
		}
		s := b.Receiver().(*Store)
		s.mu.Lock()
		defer s.mu.Unlock()
		return starlark.None, s.d.Clear()
	},
}

// storeList returns a list made of the store's dict under its lock.
func storeList(b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple, f func(*starlark.Dict) []starlark.Value) (starlark.Value, error) {
	if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 0); err != nil {
		return nil, err
	}
	s := b.Receiver().(*Store)
	s.mu.Lock()
	defer s.mu.Unlock()
	return starlark.NewList(f(s.d)), nil
}

// Attr returns the store's methods.
func (s *Store) Attr(name string) (starlark.Value, error) { return storeMethods.attr(s, name) }

// AttrNames lists the store's methods.
func (s *Store) AttrNames() []string { return storeMethods.names() }
