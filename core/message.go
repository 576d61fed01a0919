package core

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/fxamacker/cbor/v2"
)

// A Message is one frame: routing header plus CBOR payload.
type Message struct {
	DstID   uint32
	SrcID   uint32
	AuthID  uint32
	Handle  uint32
	ReplyTo uint32
	Data    []byte
	// Tail continues the payload after Data: pieces written to the
	// stream as they are, so that a large value is sent from its own
	// memory instead of being copied into one buffer. Only messages sent
	// from this process have a tail; a message read from a stream, or
	// delivered within its own context, has its whole payload in Data.
	//
	// The memory of a sent payload, Data and Tail, must never change
	// again: on Linux a piece of 1 MiB or more is lent to the stream's
	// pipe (vmsplice), and the peer reads it from that memory, possibly
	// after Send has returned (core/lend.go).
	Tail Pieces

	// Receiver is set by Select.Get to the receiver the message came from.
	Receiver *Receiver

	// from is the stream the message arrived on; nil for local messages.
	from *Stream
	// batch says more messages follow at once: the frame is left to the
	// stream's writer goroutine, which writes them together, instead of
	// being written inline.
	batch bool
	// router is the router that delivered the message, for Reply.
	router *Router
	// frame is the pooled buffer Data was read into (framebuf.go says
	// who may give it back); nil when Data is the message's own memory.
	frame *[]byte
	// delivered is set when the message is handed to a handler in this
	// context: its stream's writer may then never recycle its buffer.
	delivered bool
}

// Pieces is an encoded payload in pieces that, written one after
// another, make up the whole.
type Pieces [][]byte

// Len returns the total length of the pieces.
func (p Pieces) Len() int {
	n := 0
	for _, b := range p {
		n += len(b)
	}
	return n
}

// Join returns the pieces as one slice, copying only when there is more
// than one.
func (p Pieces) Join() []byte {
	switch len(p) {
	case 0:
		return nil
	case 1:
		return p[0]
	}
	out := make([]byte, 0, p.Len())
	for _, b := range p {
		out = append(out, b...)
	}
	return out
}

// Len returns the length of the message's payload, tail included.
func (m *Message) Len() int { return len(m.Data) + m.Tail.Len() }

// join prepares m for delivery within this context: the router calls it
// before handing m to a local handler. It moves the tail into Data and
// marks m delivered, so that no stream writer recycles its receive
// buffer (a handler may keep the payload; only a byte stream hands it
// back, see framebuf.go).
func (m *Message) join() {
	m.delivered = true
	if len(m.Tail) > 0 {
		m.Data = append(Pieces{m.Data}, m.Tail...).Join()
		m.Tail = nil
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
	if m.IsDead() {
		return &ChannelError{Reason: m.DeadReason()}
	}
	if err := unmarshal(m.Data, v); err != nil {
		return fmt.Errorf("decoding message on handle %d: %w", m.Handle, err)
	}
	return nil
}

// Reply sends value back to the message's reply_to handle.
func (m *Message) Reply(value any) error {
	data, err := Marshal(value)
	if err != nil {
		return err
	}
	return m.ReplyRaw(data)
}

// ReplyRaw sends already-encoded CBOR back to the reply_to handle: data
// followed by the pieces of tail.
func (m *Message) ReplyRaw(data []byte, tail ...[]byte) error {
	return m.replyRaw(data, tail, false)
}

func (m *Message) replyRaw(data []byte, tail Pieces, batch bool) error {
	if m.router == nil {
		return errors.New("reply: message was not received by a router")
	}
	if m.ReplyTo == 0 || m.IsDead() {
		return nil
	}
	return m.router.Route(&Message{DstID: m.SrcID, Handle: m.ReplyTo, Data: data, Tail: tail, batch: batch})
}

// NewMessage returns a message carrying the CBOR encoding of value.
func NewMessage(value any) (*Message, error) {
	data, err := Marshal(value)
	if err != nil {
		return nil, err
	}
	return &Message{Data: data}, nil
}

// deadMessage builds the dead reply to m with the given reason.
func deadMessage(m *Message, srcID uint32, reason string) *Message {
	data, _ := Marshal(reason)
	return &Message{DstID: m.SrcID, SrcID: srcID, AuthID: srcID, Handle: m.ReplyTo, ReplyTo: IsDead, Data: data}
}

func putHeader(b []byte, m *Message) {
	binary.BigEndian.PutUint16(b[0:], frameMagic)
	binary.BigEndian.PutUint32(b[2:], m.DstID)
	binary.BigEndian.PutUint32(b[6:], m.SrcID)
	binary.BigEndian.PutUint32(b[10:], m.AuthID)
	binary.BigEndian.PutUint32(b[14:], m.Handle)
	binary.BigEndian.PutUint32(b[18:], m.ReplyTo)
	binary.BigEndian.PutUint32(b[22:], uint32(m.Len()))
}

// appendFrame appends m's whole frame to buf.
func appendFrame(buf []byte, m *Message) []byte {
	n := len(buf)
	buf = append(buf, make([]byte, HeaderSize)...)
	putHeader(buf[n:], m)
	buf = append(buf, m.Data...)
	for _, p := range m.Tail {
		buf = append(buf, p...)
	}
	return buf
}

// WriteMessage writes one frame to w. Through a bufio.Writer, large
// payload pieces go to the underlying writer without a copy.
func WriteMessage(w io.Writer, m *Message) error {
	bw, ok := w.(*bufio.Writer)
	if !ok {
		_, err := w.Write(appendFrame(make([]byte, 0, HeaderSize+m.Len()), m))
		return err
	}
	// The header goes straight into the writer's buffer: a local array
	// would escape through bufio's io.Writer and cost an allocation.
	if bw.Available() < HeaderSize {
		if err := bw.Flush(); err != nil {
			return err
		}
	}
	hdr := bw.AvailableBuffer()[:HeaderSize]
	putHeader(hdr, m)
	bw.Write(hdr)
	_, err := bw.Write(m.Data)
	for _, p := range m.Tail {
		if err != nil {
			break
		}
		_, err = bw.Write(p)
	}
	return err
}

// ErrTooLarge is wrapped by errors about frames over the size limit.
var ErrTooLarge = errors.New("message too large")

// ReadMessage reads one frame from r. A frame whose payload is longer than
// maxSize is an error wrapping ErrTooLarge and nothing of its payload is
// allocated. io.EOF is returned only for a clean end before a header.
func ReadMessage(r io.Reader, maxSize int) (*Message, error) {
	hdr, err := readHeader(r)
	if err != nil {
		if err == io.ErrUnexpectedEOF {
			return nil, fmt.Errorf("reading frame header: %w", err)
		}
		return nil, err
	}
	if magic := binary.BigEndian.Uint16(hdr[0:]); magic != frameMagic {
		return nil, fmt.Errorf("corrupt stream: bad frame magic %#04x (want %#04x)", magic, frameMagic)
	}
	m := &Message{
		DstID:   binary.BigEndian.Uint32(hdr[2:]),
		SrcID:   binary.BigEndian.Uint32(hdr[6:]),
		AuthID:  binary.BigEndian.Uint32(hdr[10:]),
		Handle:  binary.BigEndian.Uint32(hdr[14:]),
		ReplyTo: binary.BigEndian.Uint32(hdr[18:]),
	}
	n := binary.BigEndian.Uint32(hdr[22:])
	if uint64(n) > uint64(maxSize) {
		return nil, fmt.Errorf("%w: frame of %d bytes (max %d bytes) from context %d", ErrTooLarge, n, maxSize, m.SrcID)
	}
	if m.frame = getFrame(int(n)); m.frame != nil {
		m.Data = (*m.frame)[:n:n]
	} else {
		m.Data = payloadBuffer(int(n))
	}
	if _, err := io.ReadFull(r, m.Data); err != nil {
		recycleFrame(m)
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("reading %d-byte frame payload: %w", n, err)
	}
	return m, nil
}

// readHeader reads a frame header. From a bufio.Reader (every stream's)
// it is copied out of the buffer, with no allocation.
func readHeader(r io.Reader) (hdr [HeaderSize]byte, err error) {
	br, ok := r.(*bufio.Reader)
	if !ok || br.Size() < HeaderSize {
		buf := make([]byte, HeaderSize)
		_, err = io.ReadFull(r, buf)
		copy(hdr[:], buf)
		return hdr, err
	}
	b, err := br.Peek(HeaderSize)
	if err != nil {
		if err == io.EOF && len(b) > 0 {
			err = io.ErrUnexpectedEOF
		}
		return hdr, err
	}
	copy(hdr[:], b)
	br.Discard(HeaderSize)
	return hdr, nil
}

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

// MarshalToBuffer appends the CBOR encoding of v to buf, with no copy in
// between: for large values, grow buf to the expected size first.
func MarshalToBuffer(v any, buf *bytes.Buffer) error { return encMode.MarshalToBuffer(v, buf) }

// Unmarshal decodes CBOR into v with mitostar's decode limits.
func Unmarshal(data []byte, v any) error { return unmarshal(data, v) }

func unmarshal(data []byte, v any) error { return decMode.Unmarshal(data, v) }
