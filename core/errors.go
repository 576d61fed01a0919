package core

import (
	"errors"
	"fmt"
	"strings"
)

// Messages shared with Mitogen, so users of both recognise them.
const (
	msgRespondentDisconnect = "the respondent Context has disconnected"
	msgRefused              = "refused by policy"
	msgInvalidHandle        = "invalid handle"
	msgTooLarge             = "message too large (max %d bytes)"
	msgNoRoute              = "no route to %d, my ID is %d"
	msgUnidirectional       = "routing mode prevents forward of message from context %d to context %d via context %d"
	msgReceiverClosed       = "the Receiver has been closed"
	msgRouterClosed         = "the Router has shut down"
	msgSenderClosed         = "Sender was explicitly closed"
	msgDuplicateHandle      = "cannot register a handle that already exists"
)

// Refusals of mitostar's bounded queues (Mitogen's queues are unbounded).
const (
	// msgCongested: a relay refused to forward a frame because the queue
	// towards its next hop is full (name, id, queued bytes, relay name).
	msgCongested = "%s (context %d) is not reading its messages: %d bytes already wait for it in %s"
	// msgCallQueueFull: a context refused a call because too many wait.
	msgCallQueueFull = "%s has %d bytes of calls waiting to run: refused"
	// msgReceiverFull: a receiver refused a message because it holds too
	// many that its owner has not read.
	msgReceiverFull = "receiver %d in %s holds %d bytes not yet read: refused"
)

// ChannelError reports a dead channel: the peer disconnected, no route
// exists, a policy refused the message, or the receiver was closed.
type ChannelError struct {
	Reason string
}

func (e *ChannelError) Error() string { return e.Reason }

// StreamError reports a stream that broke or a connection that could not
// be established.
type StreamError struct {
	Op    string // what was being done ("connect ssh.host:22", "read", ...)
	Err   error  // the cause
	Noise string // the last lines the target printed, if any
}

func (e *StreamError) Error() string {
	var b strings.Builder
	if e.Op != "" {
		b.WriteString(e.Op)
		b.WriteString(": ")
	}
	if e.Err != nil {
		b.WriteString(e.Err.Error())
	}
	if e.Noise != "" {
		b.WriteString("; last output:\n")
		b.WriteString(e.Noise)
	}
	return b.String()
}

func (e *StreamError) Unwrap() error { return e.Err }

// TimeoutError reports a deadline that passed, or an empty non-blocking get.
type TimeoutError struct {
	Op string
}

func (e *TimeoutError) Error() string {
	if e.Op == "" {
		return "timed out"
	}
	return e.Op + ": timed out"
}

// LatchError reports use of a closed Latch.
type LatchError struct{}

func (e *LatchError) Error() string { return "latch has been marked closed" }

// ErrLatchClosed is the LatchError returned by closed latches.
var ErrLatchClosed error = &LatchError{}

// A Frame is one line of a remote backtrace.
type Frame struct {
	Context  string `cbor:"1,keyasint"` // context name
	Function string `cbor:"2,keyasint"`
	Pos      string `cbor:"3,keyasint"` // file:line:col
}

// RemoteError is an error that arose in another context and crossed the
// tree. Kind is one of the kinds of docs/reference.md, "Errors" ("CallError",
// "OSError", ...); Frames is the remote backtrace, innermost last.
type RemoteError struct {
	Kind    string  `cbor:"1,keyasint"`
	Message string  `cbor:"2,keyasint"`
	Context string  `cbor:"3,keyasint"` // where it arose
	Frames  []Frame `cbor:"4,keyasint,omitempty"`
}

func (e *RemoteError) Error() string { return e.Kind + ": " + e.Message }

// Traceback renders the remote frames, one per line, labelled with their
// context; "" when there are none.
func (e *RemoteError) Traceback() string {
	if len(e.Frames) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("Traceback (most recent call last):\n")
	for _, f := range e.Frames {
		fmt.Fprintf(&b, "  [%s] %s: in %s\n", f.Context, f.Pos, f.Function)
	}
	return b.String()
}

// CallError is the kind name of an error raised by a called function.
const CallError = "CallError"

// AsRemote converts err into a RemoteError to send across the tree,
// keeping the kind of mitostar's typed errors.
func AsRemote(err error, contextName string) *RemoteError {
	var re *RemoteError
	if errors.As(err, &re) {
		return re
	}
	kind := KindOf(err)
	return &RemoteError{Kind: kind, Message: err.Error(), Context: contextName}
}

// KindOf names the error kind of err (docs/reference.md, "Errors").
func KindOf(err error) string {
	var (
		re *RemoteError
		ce *ChannelError
		se *StreamError
		te *TimeoutError
		le *LatchError
	)
	switch {
	case errors.As(err, &re):
		return re.Kind
	case errors.As(err, &te):
		return "TimeoutError"
	case errors.As(err, &ce):
		return "ChannelError"
	case errors.As(err, &se):
		var pe *PasswordError
		var he *HostKeyError
		if errors.As(err, &pe) {
			return "PasswordError"
		}
		if errors.As(err, &he) {
			return "HostKeyError"
		}
		return "StreamError"
	case errors.As(err, &le):
		return "LatchError"
	}
	var pe *PasswordError
	var he *HostKeyError
	if errors.As(err, &pe) {
		return "PasswordError"
	}
	if errors.As(err, &he) {
		return "HostKeyError"
	}
	return "Error"
}

// PasswordError reports a missing or wrong password during connection.
type PasswordError struct{ Msg string }

func (e *PasswordError) Error() string { return e.Msg }

// HostKeyError reports an unknown or changed host key under enforcement.
type HostKeyError struct{ Msg string }

func (e *HostKeyError) Error() string { return e.Msg }
