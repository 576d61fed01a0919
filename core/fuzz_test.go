package core

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"

	"github.com/mitostar/mitostar/internal/wire"
)

// fuzzMaxSize is the message size limit FuzzReadMessage reads with: small,
// so that the fuzzer reaches the size check quickly.
const fuzzMaxSize = 64 << 10

// FuzzReadMessage feeds arbitrary bytes to the frame reader, then decodes
// every frame's payload the way the router would for its handle, and
// into every reserved payload type. Nothing may panic, no frame over the
// limit may be returned, and nothing larger than the limit is allocated
// for a payload.
func FuzzReadMessage(f *testing.F) {
	for _, seed := range fuzzSeeds() {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		for {
			before := r.Len()
			m, err := readMessage(r, fuzzMaxSize)
			if err != nil {
				checkReadError(t, data[len(data)-before:], err)
				return
			}
			if len(m.Data) > fuzzMaxSize {
				t.Fatalf("frame of %d bytes returned past a %d-byte limit", len(m.Data), fuzzMaxSize)
			}
			if consumed := before - r.Len(); consumed != HeaderSize+len(m.Data) {
				t.Fatalf("consumed %d bytes for a %d-byte frame", consumed, HeaderSize+len(m.Data))
			}
			decodePayload(m)
		}
	})
}

// checkReadError verifies that readMessage failed for a reason the bytes
// explain.
func checkReadError(t *testing.T, rest []byte, err error) {
	switch {
	case len(rest) == 0:
		if err != io.EOF {
			t.Fatalf("empty input: %v", err)
		}
	case len(rest) < HeaderSize:
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("short header: %v", err)
		}
	case binary.BigEndian.Uint16(rest) != wire.Magic:
		if err.Error()[:14] != "corrupt stream" {
			t.Fatalf("bad magic: %v", err)
		}
	case binary.BigEndian.Uint32(rest[22:]) > fuzzMaxSize:
		if !errors.Is(err, ErrTooLarge) {
			t.Fatalf("oversized frame: %v", err)
		}
	default:
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("truncated payload: %v", err)
		}
	}
}

// decodePayload decodes m's payload as each reserved handle's type and
// as a generic value; errors are expected, panics are not.
func decodePayload(m *Message) {
	var (
		hello helloRequest
		hrep  helloReply
		route routeUpdate
		blk   idBlock
		rec   LogRecord
		svc   serviceRequest
		mod   GetModuleRequest
		req   CallRequest
		v     any
	)
	for _, dst := range []any{&hello, &hrep, &route, &blk, &rec, &svc, &mod, &v} {
		m.Decode(dst)
	}
	if decodeCallRequest(m.Data, &req) == nil {
		var args []any
		Unmarshal(req.Args, &args)
	}
	if val, err := DecodeCallReply(m); err == nil {
		Unmarshal(val, &v)
	}
	m.DeadReason()
	_ = m.String()
}

// fuzzSeeds are well-formed frames of every reserved payload plus the
// classic broken inputs; testdata/fuzz/FuzzReadMessage holds the same
// kind of inputs as files.
func fuzzSeeds() [][]byte {
	enc := func(v any) []byte {
		b, err := Marshal(v)
		if err != nil {
			panic(err)
		}
		return b
	}
	fr := func(m *Message) []byte {
		var b bytes.Buffer
		writeMessage(&b, m)
		return b.Bytes()
	}
	args := enc([]any{"a", uint64(2), []byte{1, 2}, map[string]any{"k": 1.5}})
	call, _, _ := encodeCallRequest(&CallRequest{Func: "test.echo", Args: args, Timeout: 1})
	seeds := [][]byte{
		fr(&Message{DstID: 1, Handle: handleHello, Data: enc(&helloRequest{
			Protocol: ProtocolVersion, Version: "dev", ID: 1, ParentIDs: []uint32{0}, Name: "local.1",
			MaxMessageSize: DefaultMaxMessageSize, LogLevel: 0, Ext: []byte{0xa0},
		})}),
		fr(&Message{SrcID: 1, AuthID: 1, Handle: handleHello, Data: enc(&helloReply{Protocol: 1, Version: "dev", PID: 42})}),
		fr(&Message{DstID: 1, Handle: handleCallFunction, ReplyTo: 1000, Data: call}),
		fr(&Message{SrcID: 1, AuthID: 1, Handle: 1000, Data: encodeCallReply(enc("ok"), nil)}),
		fr(&Message{SrcID: 1, AuthID: 1, Handle: 1000, Data: encodeCallReply(nil, &RemoteError{Kind: CallError, Message: "boom", Frames: []Frame{{Context: "c", Function: "f", Pos: "x:1:2"}}})}),
		fr(&Message{SrcID: 1, AuthID: 1, Handle: handleAddRoute, Data: enc(routeUpdate{ID: 2, Name: "local.2"})}),
		fr(&Message{SrcID: 1, AuthID: 1, Handle: handleDelRoute, Data: enc(routeUpdate{ID: 2, Reason: msgRespondentDisconnect})}),
		fr(&Message{SrcID: 1, AuthID: 1, Handle: 1001, Data: enc(idBlock{Start: 1000, Count: idBlockSize})}),
		fr(&Message{SrcID: 1, AuthID: 1, Handle: handleForwardLog, Data: enc(LogRecord{Context: "local.1", Level: 4, Text: "hi"})}),
		fr(&Message{DstID: 1, Handle: handleCallService, ReplyTo: 1002, Data: enc(serviceRequest{Service: "s", Method: "m", Kwargs: enc(map[string]any{"a": 1})})}),
		fr(&Message{SrcID: 1, AuthID: 1, Handle: HandleGetModule, ReplyTo: 1003, Data: enc(GetModuleRequest{Path: "lib/x.star", SHA256: "00"})}),
		fr(deadMessage(&Message{SrcID: 1, ReplyTo: 1004}, 0, msgRespondentDisconnect)),
		append(fr(&Message{DstID: 1, Handle: handleShutdown}), fr(&Message{DstID: 0, SrcID: 1, AuthID: 1, Handle: handleDetaching})...),
		oversizedHeader(),
		[]byte("MITOSTAR-READY 1\n"),
		fr(&Message{Handle: 1000, Data: bytes.Repeat([]byte{0x81}, 400)}),
	}
	trunc := fr(&Message{Handle: 1000, Data: enc("truncated payload")})
	seeds = append(seeds, trunc[:len(trunc)-3])
	return seeds
}
