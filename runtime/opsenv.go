package runtime

// What operations (package ops) need from the runtime of their context:
// check mode, the src= files of the module roots, the predeclared host,
// and a place to show their changes (--diff).

import (
	"context"
	"io"
	"strings"

	"go.starlark.net/starlark"

	"github.com/mitostar/mitostar/core"
	"github.com/mitostar/mitostar/ops"
)

var _ ops.Env = (*Runtime)(nil)

// CheckMode implements ops.Env: the tree runs with --check.
func (rt *Runtime) CheckMode() bool { return rt.opts.CheckMode }

// PredeclaredValue implements ops.Env.
func (rt *Runtime) PredeclaredValue(name string) starlark.Value { return rt.predeclaredNames()[name] }

// Source implements ops.Env: a src file from the module roots.
func (rt *Runtime) Source(ctx context.Context, path string) ([]byte, error) {
	f, err := rt.srcSource(ctx, path)
	if err != nil {
		return nil, err
	}
	return f.data, nil
}

// shownChange is the payload of a change sent to the master's diff
// handle. The master shows it under the name it knows for the sender,
// never one the sender writes.
type shownChange struct {
	Text string `cbor:"2,keyasint"`
}

// ShowChange implements ops.Env: with --diff, the master prints the
// change under the name of the context that made it.
func (rt *Runtime) ShowChange(ctx context.Context, op, target, msg, diff string) {
	if rt.diffHandle == 0 {
		return
	}
	text := op + " " + target + ": " + msg + "\n" + diff
	if rt.r.IsMaster() {
		rt.writeChange(rt.r.Name(), text)
		return
	}
	data, err := core.Marshal(shownChange{Text: text})
	if err != nil {
		return
	}
	rt.r.Route(ctx, &core.Message{DstID: 0, Handle: rt.diffHandle, Data: data})
}

// installDiffHandler makes the master print the changes its contexts
// send; children learn its handle in the handshake.
func (rt *Runtime) installDiffHandler() {
	h, err := rt.r.AddHandler(func(msg *core.Message) {
		var c shownChange
		if msg.IsDead() || msg.Decode(&c) != nil {
			return
		}
		rt.writeChange(rt.r.ContextByID(msg.SrcID).Name(), c.Text)
	}, core.HandlerOptions{})
	if err != nil {
		rt.r.Logger().Error("installing the diff handler", "err", err)
		return
	}
	rt.diffHandle = h
}

// writeChange prints a change as "[context] text", ending with a
// newline, on the master's stdout.
func (rt *Runtime) writeChange(context, text string) {
	if !strings.HasSuffix(text, "\n") {
		text += "\n"
	}
	rt.stdout.Lock()
	defer rt.stdout.Unlock()
	io.WriteString(rt.opts.Stdout, "["+context+"] "+text)
}
