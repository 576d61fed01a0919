package builtins

import (
	"errors"
	"fmt"
	"strings"

	"go.starlark.net/starlark"

	"github.com/mitostar/mitostar/core"
)

// Error is the Starlark value of a failure (type "error"): what catch()
// returns and msg.decode(throw=False) yields for a dead message.
type Error struct {
	Kind      string // "CallError", "ChannelError", ..., "Error"
	Message   string
	Traceback string // remote frames; "" when there are none
	Context   string // name of the context where it arose
}

var (
	_ starlark.Value    = (*Error)(nil)
	_ starlark.HasAttrs = (*Error)(nil)
)

func (e *Error) String() string        { return e.Kind + ": " + e.Message }
func (e *Error) Type() string          { return "error" }
func (e *Error) Freeze()               {}
func (e *Error) Truth() starlark.Bool  { return true }
func (e *Error) Hash() (uint32, error) { return starlark.String(e.String()).Hash() }

// Error makes *Error a Go error too, so a builtin can fail with it.
func (e *Error) Error() string { return e.String() }

// Attr returns kind, message, traceback or context.
func (e *Error) Attr(name string) (starlark.Value, error) {
	switch name {
	case "kind":
		return starlark.String(e.Kind), nil
	case "message":
		return starlark.String(e.Message), nil
	case "traceback":
		return starlark.String(e.Traceback), nil
	case "context":
		return starlark.String(e.Context), nil
	}
	return nil, nil
}

// AttrNames lists the attributes of an Error.
func (e *Error) AttrNames() []string { return []string{"context", "kind", "message", "traceback"} }

// ErrorOf converts a Go error (from a builtin, a remote call or the
// interpreter) into an Error value for Starlark.
func ErrorOf(err error, contextName string) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	var re *core.RemoteError
	if errors.As(err, &re) {
		ctx := re.Context
		if ctx == "" {
			ctx = contextName
		}
		return &Error{Kind: re.Kind, Message: re.Message, Traceback: re.Traceback(), Context: ctx}
	}
	msg := err.Error()
	var ee *starlark.EvalError
	if errors.As(err, &ee) {
		msg = ee.Msg
		if c := ee.Unwrap(); c != nil {
			msg = c.Error()
		}
	}
	return &Error{Kind: core.KindOf(err), Message: msg, Context: contextName}
}

// RemoteOf converts an error raised while running a call into the
// RemoteError sent back to the caller: failures of the function body are
// CallErrors (keeping the original kind in the message, as Mitogen does),
// with the Starlark frames of this context put before those of any
// deeper hop.
func RemoteOf(err error, contextName string) *core.RemoteError {
	var frames []core.Frame
	for _, ee := range evalChain(err) {
		for _, fr := range ee.CallStack {
			if fr.Pos.Filename() == "<builtin>" {
				continue
			}
			frames = append(frames, core.Frame{Context: contextName, Function: fr.Name, Pos: fr.Pos.String()})
		}
	}
	var re *core.RemoteError
	if errors.As(err, &re) {
		out := *re
		if out.Context == "" {
			out.Context = contextName // a builtin's error (OSError) arose here
		}
		if out.Kind != core.CallError {
			out.Message = out.Kind + ": " + out.Message
			out.Kind = core.CallError
		}
		out.Frames = append(frames, re.Frames...)
		return &out
	}
	e := ErrorOf(err, contextName)
	msg := e.Message
	if e.Kind != "Error" && e.Kind != core.CallError {
		msg = e.Kind + ": " + msg
	}
	return &core.RemoteError{Kind: core.CallError, Message: msg, Context: contextName, Frames: frames}
}

// evalChain returns the Starlark errors err wraps, outermost first: one
// per thread the failure crossed. A load() whose module fails at its top
// level is one (the module runs on a thread of its own), so the chain
// shows every load statement down to the failing line.
func evalChain(err error) []*starlark.EvalError {
	var chain []*starlark.EvalError
	for err != nil {
		var ee *starlark.EvalError
		if !errors.As(err, &ee) {
			break
		}
		chain = append(chain, ee)
		err = ee.Unwrap()
	}
	return chain
}

// Backtrace renders err for a user: the local Starlark backtrace (every
// thread it crossed, loads included), the remote frames of every hop,
// each labelled with its context, and a last line "KIND: message" that
// names the error's kind once, as str() of an Error value does.
func Backtrace(err error) string {
	var b strings.Builder
	chain := evalChain(err)
	for i, ee := range chain {
		if i == 0 && len(ee.CallStack) > 0 {
			b.WriteString("Traceback (most recent call last):\n")
		}
		for _, fr := range ee.CallStack {
			fmt.Fprintf(&b, "  %s: in %s\n", fr.Pos, fr.Name)
		}
	}
	var re *core.RemoteError
	if errors.As(err, &re) {
		if tb := re.Traceback(); tb != "" {
			b.WriteString("Remote ")
			b.WriteString(tb)
		}
		fmt.Fprintf(&b, "%s: %s (in %s)\n", re.Kind, re.Message, re.Context)
		return b.String()
	}
	e := ErrorOf(err, "")
	msg := e.Message
	if len(chain) > 1 {
		msg = chain[0].Msg // a failed load: "cannot load a.star: cannot load b.star: ..."
	}
	fmt.Fprintf(&b, "%s: %s\n", e.Kind, msg)
	return b.String()
}
