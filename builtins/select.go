package builtins

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"go.starlark.net/starlark"

	"github.com/mitostar/mitostar/core"
)

func sortStrings(s []string) { sort.Strings(s) }

// article is "an" before a type name that starts with a vowel, else "a".
func article(typeName string) string {
	if typeName != "" && strings.ContainsRune("aeiouAEIOU", rune(typeName[0])) {
		return "an"
	}
	return "a"
}

// ---- Select ----

// Select is the Starlark face of a core.Select (type "select").
type Select struct {
	S     *core.Select
	items map[core.Selectable]starlark.Value // core item → its Starlark value

	owner  owner // the thread whose context bounds an iteration
	closed bool  // close() was called: get fails with LatchError
}

func (s *Select) String() string        { return fmt.Sprintf("Select(items=%d)", s.S.Len()) }
func (s *Select) Type() string          { return "select" }
func (s *Select) Freeze()               {}
func (s *Select) Truth() starlark.Bool  { return s.S.Len() > 0 }
func (s *Select) Hash() (uint32, error) { return 0, errors.New("unhashable type: select") }

func selectableOf(v starlark.Value) (core.Selectable, error) {
	switch x := v.(type) {
	case *Receiver:
		return x.R, nil
	case *Channel:
		return x.R.R, nil
	case *Latch:
		return x.L, nil
	case *Select:
		return x.S, nil
	}
	return nil, fmt.Errorf("Select: cannot wait on %s %s (want receiver, channel, latch or select)", article(v.Type()), v.Type())
}

func (s *Select) add(v starlark.Value) error {
	it, err := selectableOf(v)
	if err != nil {
		return err
	}
	if err := s.S.Add(it); err != nil {
		return fmt.Errorf("Select.add: %w", err)
	}
	s.items[it] = v
	return nil
}

// valueOf returns the Starlark value that was added for item, here or
// in a nested Select: a message's receiver is the one the script added.
func (s *Select) valueOf(item core.Selectable) starlark.Value {
	if v, ok := s.items[item]; ok {
		return v
	}
	for _, v := range s.items {
		if inner, ok := v.(*Select); ok {
			if found := inner.valueOf(item); found != nil {
				return found
			}
		}
	}
	return nil
}

// errSelectEmpty is Mitogen's error for get() on a Select with nothing
// left to wait on: a plain Error, not a ChannelError.
var errSelectEmpty = errors.New("Cannot get(), Select instance is empty")

func (s *Select) get(thread *starlark.Thread, ctx context.Context, block bool) (starlark.Value, error) {
	s.owner.use(thread)
	if s.S.Len() == 0 && !s.closed {
		return nil, errSelectEmpty
	}
	v, err := s.S.Get(ctx, block)
	if m, ok := v.(*core.Message); ok {
		msg := &Message{M: m}
		if m.Receiver != nil {
			msg.receiver = s.valueOf(m.Receiver)
			if msg.receiver == nil {
				msg.receiver = &Receiver{R: m.Receiver}
			}
			if ch, ok := msg.receiver.(*Channel); ok {
				msg.receiver = ch.R
			}
			if rv, ok := msg.receiver.(*Receiver); ok {
				msg.call = rv.Call
			}
		}
		if err != nil {
			return nil, err
		}
		return msg, nil
	}
	if err != nil {
		return nil, err
	}
	if v == nil {
		return starlark.None, nil
	}
	return v.(starlark.Value), nil
}

// Iterate yields results until no item is left, or the call that made
// or last used the select ends (its _timeout passed).
func (s *Select) Iterate() starlark.Iterator {
	return &selectIter{s: s, ctx: s.owner.context(context.Background())}
}

type selectIter struct {
	s   *Select
	ctx context.Context
	err error
}

func (it *selectIter) Next(p *starlark.Value) bool {
	if it.s.S.Len() == 0 {
		return false
	}
	v, err := it.s.get(nil, it.ctx, true)
	if err != nil {
		it.err = err
		return false
	}
	*p = v
	return true
}
func (it *selectIter) Done()      {}
func (it *selectIter) Err() error { return it.err }

var selectMethods = methodTable{
	"add": func(t *starlark.Thread, b *starlark.Builtin, a starlark.Tuple, kw []starlark.Tuple) (starlark.Value, error) {
		var v starlark.Value
		if err := starlark.UnpackPositionalArgs(b.Name(), a, kw, 1, &v); err != nil {
			return nil, err
		}
		s := b.Receiver().(*Select)
		s.owner.use(t)
		return starlark.None, s.add(v)
	},
	"remove": func(t *starlark.Thread, b *starlark.Builtin, a starlark.Tuple, kw []starlark.Tuple) (starlark.Value, error) {
		var v starlark.Value
		if err := starlark.UnpackPositionalArgs(b.Name(), a, kw, 1, &v); err != nil {
			return nil, err
		}
		s := b.Receiver().(*Select)
		s.owner.use(t)
		it, err := selectableOf(v)
		if err != nil {
			return nil, err
		}
		if !s.S.Remove(it) {
			return nil, fmt.Errorf("Select.remove: %s is not in this Select", v.Type())
		}
		delete(s.items, it)
		return starlark.None, nil
	},
	"get": func(t *starlark.Thread, b *starlark.Builtin, a starlark.Tuple, kw []starlark.Tuple) (starlark.Value, error) {
		return chanGet(t, b, a, kw, b.Receiver().(*Select).get, false)
	},
	"empty": func(t *starlark.Thread, b *starlark.Builtin, a starlark.Tuple, kw []starlark.Tuple) (starlark.Value, error) {
		return starlark.Bool(b.Receiver().(*Select).S.Empty()), starlark.UnpackPositionalArgs(b.Name(), a, kw, 0)
	},
	"size": func(t *starlark.Thread, b *starlark.Builtin, a starlark.Tuple, kw []starlark.Tuple) (starlark.Value, error) {
		return starlark.MakeInt(b.Receiver().(*Select).S.Size()), starlark.UnpackPositionalArgs(b.Name(), a, kw, 0)
	},
	"close": func(t *starlark.Thread, b *starlark.Builtin, a starlark.Tuple, kw []starlark.Tuple) (starlark.Value, error) {
		s := b.Receiver().(*Select)
		s.closed = true
		s.S.Close()
		return starlark.None, starlark.UnpackPositionalArgs(b.Name(), a, kw, 0)
	},
}

// Attr returns the select's methods.
func (s *Select) Attr(name string) (starlark.Value, error) { return selectMethods.attr(s, name) }

// AttrNames lists the select's methods.
func (s *Select) AttrNames() []string { return selectMethods.names() }

func makeSelect(thread *starlark.Thread, items starlark.Value, oneshot bool) (*Select, error) {
	// The items are gathered first, so that both maps are made at
	// their size (Select.all over a list of many calls).
	var vals []starlark.Value
	var its []core.Selectable
	if items != nil && items != starlark.None {
		it, ok := items.(starlark.Iterable)
		if !ok {
			return nil, fmt.Errorf("Select: receivers must be iterable, got %s", items.Type())
		}
		if seq, ok := items.(starlark.Sequence); ok {
			vals = make([]starlark.Value, 0, seq.Len())
			its = make([]core.Selectable, 0, seq.Len())
		}
		iter := it.Iterate()
		defer iter.Done()
		var x starlark.Value
		for iter.Next(&x) {
			sel, err := selectableOf(x)
			if err != nil {
				return nil, err
			}
			vals = append(vals, x)
			its = append(its, sel)
		}
	}
	cs, err := core.NewSelect(oneshot, its...)
	if err != nil {
		return nil, fmt.Errorf("Select.add: %w", err)
	}
	s := &Select{S: cs, items: make(map[core.Selectable]starlark.Value, len(its))}
	for i, it := range its {
		s.items[it] = vals[i]
	}
	s.owner.use(thread)
	return s, nil
}

func newSelect(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var items starlark.Value = starlark.None
	oneshot := true
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "receivers?", &items, "oneshot?", &oneshot); err != nil {
		return nil, err
	}
	return makeSelect(thread, items, oneshot)
}

// selectAll implements Select.all(receivers): the decoded values in
// arrival order; the first failure stops it.
func selectAll(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var items starlark.Value
	var timeout starlark.Value = starlark.None
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "receivers", &items, "timeout?", &timeout); err != nil {
		return nil, err
	}
	s, err := makeSelect(thread, items, true)
	if err != nil {
		return nil, err
	}
	defer s.S.Close()
	ctx, cancel, err := withTimeout(thread, b.Name(), timeout)
	if err != nil {
		return nil, err
	}
	defer cancel()
	out := make([]starlark.Value, 0, s.S.Len())
	for s.S.Len() > 0 {
		v, err := s.get(thread, ctx, true)
		if err != nil {
			return nil, err
		}
		if m, ok := v.(*Message); ok {
			v, err = m.decode(thread, true)
			if err != nil {
				return nil, err
			}
		}
		out = append(out, v)
	}
	return starlark.NewList(out), nil
}

// ---- Channel ----

// Channel is a Sender and a Receiver in one (type "channel").
type Channel struct {
	S *Sender
	R *Receiver
}

func (c *Channel) String() string        { return fmt.Sprintf("Channel(%s, %s)", c.S, c.R) }
func (c *Channel) Type() string          { return "channel" }
func (c *Channel) Freeze()               {}
func (c *Channel) Truth() starlark.Bool  { return true }
func (c *Channel) Hash() (uint32, error) { return 0, errors.New("unhashable type: channel") }

// Iterate yields the messages received on the channel.
func (c *Channel) Iterate() starlark.Iterator { return c.R.Iterate() }

// Attr returns the sender's and receiver's methods; close closes both.
func (c *Channel) Attr(name string) (starlark.Value, error) {
	switch name {
	case "send":
		return c.S.Attr(name)
	case "close":
		return starlark.NewBuiltin("close", func(t *starlark.Thread, b *starlark.Builtin, a starlark.Tuple, kw []starlark.Tuple) (starlark.Value, error) {
			if err := starlark.UnpackPositionalArgs(b.Name(), a, kw, 0); err != nil {
				return nil, err
			}
			c.R.R.Close()
			return starlark.None, c.S.S.Close()
		}), nil
	case "sender":
		return c.S, nil
	case "receiver":
		return c.R, nil
	}
	return c.R.Attr(name)
}

// AttrNames lists the channel's attributes.
func (c *Channel) AttrNames() []string {
	return []string{"close", "empty", "get", "get_data", "handle", "receiver", "send", "sender", "size", "to_sender"}
}

func newChannel(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var router *Router
	var ctx *Context
	var dst, handle uint32
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "router", &router, "context", &ctx, "dst_handle", &dst, "handle?", &handle); err != nil {
		return nil, err
	}
	rv, err := router.R.NewReceiver(core.ReceiverOptions{Handle: handle, Respondent: ctx.C})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", b.Name(), err)
	}
	return &Channel{S: &Sender{S: core.NewSender(ctx.C, dst)}, R: newReceiverValue(thread, rv, false)}, nil
}
