package core

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/fxamacker/cbor/v2"

	"github.com/mitostar/mitostar/internal/wire"
)

// A Message is one frame: routing header plus CBOR payload.
type Message struct {
	DstID   uint32
	SrcID   uint32
	AuthID  uint32
	Handle  uint32
	ReplyTo uint32
	Data    []byte
	// Tail continues the payload after Data: large strings written to
	// the stream from their own memory instead of being copied into one
	// buffer. Only messages sent from this process have a tail; a message
	// read from a stream, or delivered within its own context, has its
	// whole payload in Data. Sending a message hands Data to the stream
	// until it is written: the sender must not change it.
	Tail []string

	// Receiver is set by Select.Get to the receiver the message came from.
	Receiver *Receiver

	// from is the stream the message arrived on; nil for local messages.
	from *Stream
	// router is the router that delivered the message, for Reply.
	router *Router
	// err is set on a message a Receiver made itself to fail its reader
	// (Receiver.Expire).
	err error
	// buf, when set, is the pooled memory under Data (wire.Buf): a frame
	// read from a stream, or a byte stream's DATA being sent. The stream
	// that writes the message frees it; delivered in this context, only a
	// byte stream takes it (Router.invoke), and frees it once its bytes
	// are copied out.
	buf *wire.Buf
}

// Len returns the length of the message's payload, tail included.
func (m *Message) Len() int {
	n := len(m.Data)
	for _, p := range m.Tail {
		n += len(p)
	}
	return n
}

// join prepares m for delivery within this context: the router calls
// it before handing m to a local handler, which sees the whole payload in
// Data.
func (m *Message) join() {
	if len(m.Tail) > 0 {
		data := make([]byte, 0, m.Len())
		data = append(data, m.Data...)
		for _, p := range m.Tail {
			data = append(data, p...)
		}
		m.Data, m.Tail = data, nil
	}
}

// frame is m as the wire writes it.
func (m *Message) frame() wire.Frame {
	return wire.Frame{
		Header: wire.Header{Dst: m.DstID, Src: m.SrcID, Auth: m.AuthID, Handle: m.Handle, ReplyTo: m.ReplyTo},
		Data:   m.Data,
		More:   m.Tail,
		Buf:    m.buf,
	}
}

// IsDead reports whether m is a dead message: a notice that the channel
// it was addressed to is closed, with the reason as payload.
func (m *Message) IsDead() bool { return m.ReplyTo == IsDead }

// DeadReason returns the reason carried by a dead message.
func (m *Message) DeadReason() string {
	var s string
	if err := unmarshal(m.Data, &s); err != nil {
		return string(m.Data)
	}
	return s
}

// String describes the message header for logs.
func (m *Message) String() string {
	return fmt.Sprintf("Message(dst=%d src=%d auth=%d handle=%d reply_to=%d len=%d)",
		m.DstID, m.SrcID, m.AuthID, m.Handle, m.ReplyTo, m.Len())
}

// Decode unmarshals the payload into v. A dead message decodes to a
// *ChannelError carrying its reason.
func (m *Message) Decode(v any) error {
	if m.err != nil {
		return m.err
	}
	if m.IsDead() {
		return &ChannelError{Reason: m.DeadReason()}
	}
	if err := unmarshal(m.Data, v); err != nil {
		return fmt.Errorf("decoding message on handle %d: %w", m.Handle, err)
	}
	return nil
}

// Reply sends value back to the message's reply_to handle, waiting for
// room in a full queue until ctx ends.
func (m *Message) Reply(ctx context.Context, value any) error {
	data, err := Marshal(value)
	if err != nil {
		return err
	}
	return m.ReplyRaw(ctx, data)
}

// ReplyRaw sends already-encoded CBOR back to the reply_to handle: data
// followed by the strings of tail.
func (m *Message) ReplyRaw(ctx context.Context, data []byte, tail ...string) error {
	if m.router == nil {
		return errors.New("reply: message was not received by a router")
	}
	if m.ReplyTo == 0 || m.IsDead() {
		return nil
	}
	return m.router.Route(ctx, &Message{DstID: m.SrcID, Handle: m.ReplyTo, Data: data, Tail: tail})
}

// deadMessage builds the dead reply to m with the given reason.
func deadMessage(m *Message, srcID uint32, reason string) *Message {
	data, _ := Marshal(reason)
	return &Message{DstID: m.SrcID, SrcID: srcID, AuthID: srcID, Handle: m.ReplyTo, ReplyTo: IsDead, Data: data}
}

// writeMessage writes one frame to w.
func writeMessage(w io.Writer, m *Message) error {
	f := m.frame()
	_, err := w.Write(wire.AppendFrame(make([]byte, 0, wire.HeaderSize+f.Len()), &f))
	return err
}

// readMessage reads one frame from r. A frame whose payload is longer
// than maxSize is an error wrapping ErrTooLarge and nothing of its
// payload is allocated. io.EOF is returned only for a clean end before a
// header.
func readMessage(r io.Reader, maxSize int) (*Message, error) {
	h, payload, err := wire.ReadFrame(r, maxSize)
	if err != nil {
		return nil, err
	}
	return &Message{DstID: h.Dst, SrcID: h.Src, AuthID: h.Auth, Handle: h.Handle, ReplyTo: h.ReplyTo, Data: payload}, nil
}

// ErrTooLarge is wrapped by errors about frames over the size limit.
var ErrTooLarge = wire.ErrTooLarge

// DecodeOptions are the limits every CBOR decode in mitostar uses: input
// is never trusted, so nesting and element counts are bounded (the
// message size bounds the rest).
var DecodeOptions = cbor.DecOptions{
	MaxNestedLevels:  256,
	MaxArrayElements: 1 << 26,
	MaxMapPairs:      1 << 26,
	IndefLength:      cbor.IndefLengthForbidden,
	DupMapKey:        cbor.DupMapKeyEnforcedAPF,
	UTF8:             cbor.UTF8DecodeInvalid,
}

var (
	encMode cbor.UserBufferEncMode
	decMode cbor.DecMode
)

func init() {
	var err error
	if encMode, err = (cbor.EncOptions{Sort: cbor.SortNone}).UserBufferEncMode(); err != nil {
		panic(err)
	}
	if decMode, err = DecodeOptions.DecMode(); err != nil {
		panic(err)
	}
}

// Marshal encodes v as CBOR with mitostar's options.
func Marshal(v any) ([]byte, error) { return encMode.Marshal(v) }

// Unmarshal decodes CBOR into v with mitostar's decode limits.
func Unmarshal(data []byte, v any) error { return unmarshal(data, v) }

func unmarshal(data []byte, v any) error { return decMode.Unmarshal(data, v) }
