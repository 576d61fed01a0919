package core

import "github.com/mitostar/mitostar/internal/wire"

// The mitostar wire protocol. docs/protocol.md mirrors this file; change
// both together and bump ProtocolVersion on any incompatible change.
//
// Every stream between two mitostar processes carries frames:
//
//	+-------+--------+--------+---------+--------+----------+--------+---------------+
//	| magic | dst_id | src_id | auth_id | handle | reply_to | length | payload       |
//	| u16   | u32    | u32    | u32     | u32    | u32      | u32    | length bytes  |
//	+-------+--------+--------+---------+--------+----------+--------+---------------+
//
// All integers are big-endian. The payload is CBOR (RFC 8949), decoded
// with the limits of DecodeOptions. A frame whose length exceeds the
// receiving router's maximum message size closes the stream.
//
// Protocol flow when a parent starts a child:
//
//	parent                                   child (mitostar in the child role)
//	  | -- starts the process (local exec, ssh, sudo, ...) -->|
//	  |<----------- "MITOSTAR-READY <ProtocolVersion>\n" -----|  (anything before is noise)
//	  | -- frame handleHello: helloRequest ------------------>|
//	  |<----------- frame handleHello: helloReply ------------|
//	  |<=========== frames in both directions ===============>|
//
// After the handshake the child's router sends ADD_ROUTE for nothing: the
// parent already routes the child's id to the new stream and announces it
// upward with ADD_ROUTE itself.

// ProtocolVersion is the version of the frame layout, payloads and
// reserved handles. History:
//
//	1  first version (2026-11).
//	2  handshake and call headers as CBOR arrays (2026-12).
//	3  a file in a tree ends with its CRC-32C, not its sha256 (2026-12).
//	4  module blobs carry their compiled program (2026-12).
const ProtocolVersion = 4

// HeaderSize is the size in bytes of a frame header.
const HeaderSize = wire.HeaderSize

// readyMarker is printed by a child on its stdout, as a line of its own,
// right before its first frame. Everything before it is noise from the
// target's shell (motd, .profile output) and is only kept for errors.
const readyMarker = "MITOSTAR-READY"

// DefaultMaxMessageSize is the default limit on a frame's payload (128 MiB).
const DefaultMaxMessageSize = 128 << 20

// MinMaxMessageSize is the smallest accepted message size limit; internal
// bulk transfers are chunked to fit it.
const MinMaxMessageSize = 4096

// idBlockSize is how many context ids ALLOCATE_ID hands out at once.
const idBlockSize = 1000

// Reserved handles. Handles below FirstUserHandle are reserved for the
// protocol; each comment gives the payload the handle receives and the
// reply, if any, sent to the message's reply_to.
const (
	// handleHello is only valid as the first frame in each direction.
	// Parent→child: helloRequest. Child→parent: helloReply.
	handleHello uint32 = 1

	// HandleGetModule asks the parent for a module. Payload: GetModuleRequest.
	// Reply: the runtime's module bundle (LoadModule payload), or a dead message.
	HandleGetModule uint32 = 100
	// handleCallFunction runs a function. Payload: CallRequest.
	// Reply: CallReply. Requires parent authority.
	handleCallFunction uint32 = 101
	// handleForwardLog carries a log record towards the master. Payload: LogRecord. No reply.
	handleForwardLog uint32 = 102
	// handleAddRoute announces a new context below the sender. Payload: routeUpdate. No reply.
	handleAddRoute uint32 = 103
	// handleDelRoute announces that a context is gone. Payload: routeUpdate. No reply.
	handleDelRoute uint32 = 104
	// handleAllocateID asks the parent for a block of ids. Payload: nil.
	// Reply: idBlock, taken from the master's counter (each router asks
	// its own parent in turn). Accepted from a direct child only.
	handleAllocateID uint32 = 105
	// handleShutdown asks a context to exit. Payload: nil. No reply; the
	// context shuts its own children down and its stream closes.
	// Requires parent authority.
	handleShutdown uint32 = 106
	// HandleLoadModule pushes modules into a child. Payload: runtime module
	// bundle. No reply. Requires parent authority.
	HandleLoadModule uint32 = 107
	// handleDetaching tells the parent that the sender is about to exit on
	// its own. Payload: nil. No reply. Accepted and logged; core's child
	// does not send it (the EOF on its stream says the same).
	handleDetaching uint32 = 109
	// handleCallService calls a method of a registered service.
	// Payload: serviceRequest. Reply: CallReply. Policy is per service method.
	handleCallService uint32 = 110
	// IsDead in a frame's reply_to marks a dead message: the payload is a
	// CBOR text string giving the reason, and the frame is addressed to the
	// handle that would have received the reply.
	IsDead uint32 = 999

	// FirstUserHandle is the first handle AddHandler allocates.
	FirstUserHandle uint32 = 1000
)

// helloRequest is the parent's half of the handshake, a CBOR array of
// its fields in order.
type helloRequest struct {
	_              struct{} `cbor:",toarray"`
	Protocol       int
	Version        string   // BuildVersion of the parent
	ID             uint32   // the child's context id
	ParentIDs      []uint32 // nearest ancestor first
	Name           string   // the child's context name
	MaxMessageSize int
	LogLevel       int // slog level
	Debug          bool
	Unidirectional bool
	Ext            []byte // runtime extension (argv, check mode, for fork the module cache)
}

// helloReply is the child's half of the handshake, a CBOR array of its
// fields in order.
type helloReply struct {
	_        struct{} `cbor:",toarray"`
	Protocol int
	Version  string
	PID      int
	Error    string // non-empty: the child refuses and exits
}

// routeUpdate is the payload of ADD_ROUTE and DEL_ROUTE.
type routeUpdate struct {
	ID     uint32 `cbor:"1,keyasint"`
	Name   string `cbor:"2,keyasint"`
	Reason string `cbor:"3,keyasint,omitempty"` // DEL_ROUTE: why the context is gone
	Parent uint32 `cbor:"4,keyasint,omitempty"` // ADD_ROUTE: the new context's parent
}

// idBlock is the reply to ALLOCATE_ID: ids [Start, Start+Count).
type idBlock struct {
	Start uint32 `cbor:"1,keyasint"`
	Count uint32 `cbor:"2,keyasint"`
}

// LogRecord is the payload of FORWARD_LOG, and what a LogSink receives.
type LogRecord struct {
	Context string `cbor:"1,keyasint"` // name of the context where it arose (the master names it anew)
	Level   int    `cbor:"2,keyasint"` // slog level
	Text    string `cbor:"3,keyasint"`
	ID      uint32 `cbor:"4,keyasint,omitempty"` // the context where it arose: the sender, or a child of it
}

// CallRequest is the payload of CALL_FUNCTION: two CBOR items back to
// back, this header (a CBOR array of Func, Timeout and Ext) and then the
// arguments, so that large arguments are never copied while decoding the
// header.
type CallRequest struct {
	_ struct{} `cbor:",toarray"`
	// Func names what to call: a function registered with RegisterFunc, or
	// a reference the installed CallHandler understands.
	Func string
	// Args is the CBOR encoding of the arguments; its layout belongs to the
	// function's kind (for RegisterFunc: a CBOR array).
	Args []byte `cbor:"-"`
	// ArgsTail continues Args when sending: large strings of the
	// arguments, sent from their own memory (see Message.Tail).
	ArgsTail []string `cbor:"-"`
	// Timeout in seconds; zero means none. The call's context is cancelled
	// when it passes and the call fails with TimeoutError.
	Timeout float64
	// Ext carries extensions of the runtime (modules pushed with the call).
	Ext []byte
}

// The reply to CALL_FUNCTION and CALL_SERVICE is two CBOR items back to
// back: null then the result, or a RemoteError map and nothing after it.
// See encodeCallReply and DecodeCallReply.

// serviceRequest is the payload of CALL_SERVICE.
type serviceRequest struct {
	Service string `cbor:"1,keyasint"`
	Method  string `cbor:"2,keyasint"`
	Kwargs  []byte `cbor:"3,keyasint,omitempty"` // CBOR map of keyword arguments
}

// GetModuleRequest is the payload of GET_MODULE.
type GetModuleRequest struct {
	Path   string `cbor:"1,keyasint"`
	SHA256 string `cbor:"2,keyasint,omitempty"`
}
