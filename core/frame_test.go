package core

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/mitostar/mitostar/internal/wire"
)

// frame returns the wire bytes of m.
func frame(t testing.TB, m *Message) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := writeMessage(&b, m); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestFrameRoundTrip(t *testing.T) {
	payload, err := Marshal(routeUpdate{ID: 7, Name: "local.7"})
	if err != nil {
		t.Fatal(err)
	}
	cases := []*Message{
		{DstID: 1, SrcID: 2, AuthID: 3, Handle: 4, ReplyTo: 5, Data: payload},
		{DstID: 0xffffffff, SrcID: 0, AuthID: 0xfffffffe, Handle: handleCallFunction, ReplyTo: IsDead},
		{Handle: FirstUserHandle, Data: bytes.Repeat([]byte{0xa5}, 100000)},
	}
	for _, want := range cases {
		// Through a bufio.Writer (the stream's path) and a plain writer.
		var plain, buffered bytes.Buffer
		if err := writeMessage(&plain, want); err != nil {
			t.Fatal(err)
		}
		bw := bufio.NewWriter(&buffered)
		if err := writeMessage(bw, want); err != nil {
			t.Fatal(err)
		}
		bw.Flush()
		if !bytes.Equal(plain.Bytes(), buffered.Bytes()) {
			t.Fatalf("bufio and plain encodings differ for %v", want)
		}
		if got := plain.Len(); got != HeaderSize+len(want.Data) {
			t.Fatalf("frame is %d bytes, want %d", got, HeaderSize+len(want.Data))
		}
		got, err := readMessage(&plain, DefaultMaxMessageSize)
		if err != nil {
			t.Fatal(err)
		}
		if got.DstID != want.DstID || got.SrcID != want.SrcID || got.AuthID != want.AuthID ||
			got.Handle != want.Handle || got.ReplyTo != want.ReplyTo || !bytes.Equal(got.Data, want.Data) {
			t.Fatalf("round trip: got %v, want %v", got, want)
		}
		if _, err := readMessage(&plain, DefaultMaxMessageSize); err != io.EOF {
			t.Fatalf("after the last frame: err = %v, want io.EOF", err)
		}
	}
}

func TestFrameHeaderLayout(t *testing.T) {
	b := frame(t, &Message{DstID: 0x01020304, SrcID: 5, AuthID: 6, Handle: 7, ReplyTo: 8, Data: []byte{0xf6}})
	want := []byte{
		0x6d, 0x73, // "ms"
		1, 2, 3, 4,
		0, 0, 0, 5,
		0, 0, 0, 6,
		0, 0, 0, 7,
		0, 0, 0, 8,
		0, 0, 0, 1,
		0xf6,
	}
	if !bytes.Equal(b, want) {
		t.Fatalf("frame = % x\nwant    % x", b, want)
	}
}

func TestReadMessageBadMagic(t *testing.T) {
	b := frame(t, &Message{Handle: 1000, Data: []byte{0xf6}})
	b[0], b[1] = 'H', 'T' // an HTTP response where frames were expected
	_, err := readMessage(bytes.NewReader(b), DefaultMaxMessageSize)
	if err == nil || err.Error() != "corrupt stream: bad frame magic 0x4854 (want 0x6d73)" {
		t.Fatalf("err = %v", err)
	}
}

func TestReadMessageTruncated(t *testing.T) {
	b := frame(t, &Message{Handle: 1000, Data: []byte("0123456789")})
	for n := 1; n < len(b); n++ {
		_, err := readMessage(bytes.NewReader(b[:n]), DefaultMaxMessageSize)
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("frame cut at %d bytes: err = %v, want unexpected EOF", n, err)
		}
		want := "reading frame header: unexpected EOF"
		if n >= HeaderSize {
			want = "reading 10-byte frame payload: unexpected EOF"
		}
		if err.Error() != want {
			t.Fatalf("frame cut at %d bytes: err = %q, want %q", n, err, want)
		}
	}
	if _, err := readMessage(bytes.NewReader(nil), DefaultMaxMessageSize); err != io.EOF {
		t.Fatalf("empty input: err = %v, want io.EOF", err)
	}
}

// oversizedHeader is a frame header announcing a 4 GiB - 1 payload.
func oversizedHeader() []byte {
	var hdr [HeaderSize]byte
	wire.PutHeader(hdr[:], wire.Header{Src: 9, Handle: 1000}, 0)
	binary.BigEndian.PutUint32(hdr[22:], 0xffffffff)
	return hdr[:]
}

func TestReadMessageOversizedNoAllocation(t *testing.T) {
	hdr := oversizedHeader()
	_, err := readMessage(bytes.NewReader(hdr), 1<<20)
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("err = %v, want ErrTooLarge", err)
	}
	if want := "message too large: frame of 4294967295 bytes (max 1048576 bytes) from context 9"; err.Error() != want {
		t.Fatalf("err = %q, want %q", err, want)
	}
	// Exactly at the limit is accepted.
	ok := frame(t, &Message{Data: make([]byte, 4096)})
	if _, err := readMessage(bytes.NewReader(ok), 4096); err != nil {
		t.Fatalf("frame at the limit: %v", err)
	}
	if _, err := readMessage(bytes.NewReader(ok), 4095); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("frame one byte over the limit: err = %v", err)
	}

	// Refusing must not allocate the announced payload (nor anything
	// near it): measure the bytes allocated over many refusals.
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	const rounds = 100
	for range rounds {
		readMessage(bytes.NewReader(hdr), 1<<20)
	}
	runtime.ReadMemStats(&after)
	if per := (after.TotalAlloc - before.TotalAlloc) / rounds; per > 4096 {
		t.Fatalf("refusing an oversized frame allocated %d bytes per frame", per)
	}
}

// A truncated payload must not allocate more than what the header
// announced and the limit allows, however long the header claims it is.
func TestReadMessageHugeClaimTruncated(t *testing.T) {
	hdr := oversizedHeader()
	binary.BigEndian.PutUint32(hdr[22:], 1<<20)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := readMessage(bytes.NewReader(hdr), 1<<20)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("err = %v", err)
	}
	if got := after.TotalAlloc - before.TotalAlloc; got > 1<<20+64<<10 {
		t.Fatalf("allocated %d bytes for a 1 MiB claim", got)
	}
}

func TestReadMessageOverNetPipe(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	want := &Message{DstID: 3, SrcID: 0, AuthID: 0, Handle: 1001, ReplyTo: 1002, Data: bytes.Repeat([]byte("x"), 70000)}
	errc := make(chan error, 1)
	go func() { errc <- writeMessage(a, want) }()
	b.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := readMessage(bufio.NewReader(b), DefaultMaxMessageSize)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if got.String() != want.String() || !bytes.Equal(got.Data, want.Data) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func TestDecodeLimits(t *testing.T) {
	deep := bytes.Repeat([]byte{0x81}, 300) // 300 nested one-element arrays
	deep = append(deep, 0x00)
	var v any
	if err := Unmarshal(deep, &v); err == nil || !strings.Contains(err.Error(), "exceeded max nested level") {
		t.Fatalf("300 levels of nesting: err = %v", err)
	}
	// An indefinite-length array.
	if err := Unmarshal([]byte{0x9f, 0x01, 0xff}, &v); err == nil || !strings.Contains(err.Error(), "indefinite-length") {
		t.Fatalf("indefinite length: err = %v", err)
	}
	// A map with a duplicate key.
	if err := Unmarshal([]byte{0xa2, 0x01, 0x01, 0x01, 0x02}, &v); err == nil || !strings.Contains(err.Error(), "duplicate map key") {
		t.Fatalf("duplicate key: err = %v", err)
	}
	// An array claiming 2^26 elements but carrying none: refused
	// without allocating room for them.
	claim := []byte{0x9a, 0x04, 0x00, 0x00, 0x00}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	err := Unmarshal(claim, &v)
	runtime.ReadMemStats(&after)
	if err == nil {
		t.Fatal("a truncated 2^26-element array decoded")
	}
	if got := after.TotalAlloc - before.TotalAlloc; got > 64<<10 {
		t.Fatalf("decoding a truncated huge array allocated %d bytes", got)
	}
	// Text strings are bytes, as Starlark strings are: invalid UTF-8
	// decodes as it is.
	var s string
	if err := Unmarshal([]byte{0x62, 0xff, 0xfe}, &s); err != nil || s != "\xff\xfe" {
		t.Fatalf("invalid UTF-8: %q, %v", s, err)
	}
}

func TestCallRequestLayout(t *testing.T) {
	args, _ := Marshal([]any{"a", 1})
	data, _, err := encodeCallRequest(&CallRequest{Func: "test.echo", Args: args, Timeout: 2.5})
	if err != nil {
		t.Fatal(err)
	}
	var req CallRequest
	if err := decodeCallRequest(data, &req); err != nil {
		t.Fatal(err)
	}
	if req.Func != "test.echo" || req.Timeout != 2.5 || !bytes.Equal(req.Args, args) {
		t.Fatalf("decoded %+v", req)
	}
	if err := decodeCallRequest([]byte{0xa1}, &req); err == nil {
		t.Fatal("a truncated call header decoded")
	}

	ok := encodeCallReply([]byte{0x63, 'a', 'b', 'c'}, nil)
	val, err := DecodeCallReply(&Message{Data: ok})
	if err != nil || !bytes.Equal(val, []byte{0x63, 'a', 'b', 'c'}) {
		t.Fatalf("reply: %x, %v", val, err)
	}
	bad := encodeCallReply(nil, &RemoteError{Kind: CallError, Message: "boom", Context: "local.1"})
	_, err = DecodeCallReply(&Message{Data: bad})
	var re *RemoteError
	if !errors.As(err, &re) || re.Kind != CallError || re.Message != "boom" || re.Context != "local.1" {
		t.Fatalf("error reply: %v", err)
	}
	dead := deadMessage(&Message{SrcID: 4, ReplyTo: 1001}, 0, msgRefused)
	_, err = DecodeCallReply(dead)
	var ce *ChannelError
	if !errors.As(err, &ce) || ce.Reason != "refused by policy" {
		t.Fatalf("dead reply: %v", err)
	}
	if dead.DstID != 4 || dead.Handle != 1001 || dead.ReplyTo != IsDead || !dead.IsDead() {
		t.Fatalf("dead message header: %v", dead)
	}
}

func TestReadUntilReady(t *testing.T) {
	in := "Last login: yesterday\nwelcome to host\nnoise MITOSTAR-READY 4\n" + "rest"
	br := bufio.NewReader(strings.NewReader(in))
	noise, err := readUntilReady(br)
	if err != nil {
		t.Fatal(err)
	}
	if noise != "Last login: yesterday\nwelcome to host\nnoise " {
		t.Fatalf("noise = %q", noise)
	}
	rest, _ := io.ReadAll(br)
	if string(rest) != "rest" {
		t.Fatalf("after the marker: %q", rest)
	}
	if string(ReadyLine()) != "MITOSTAR-READY 4\n" {
		t.Fatalf("ReadyLine = %q", ReadyLine())
	}

	_, err = readUntilReady(bufio.NewReader(strings.NewReader("MITOSTAR-READY 99\n")))
	want := "protocol version mismatch: the child speaks mitostar protocol 99, this binary speaks 4 (different mitostar builds?)"
	if err == nil || err.Error() != want {
		t.Fatalf("version mismatch: err = %v", err)
	}

	noise, err = readUntilReady(bufio.NewReader(strings.NewReader("sh: mitostar: not found\n")))
	if err == nil || err.Error() != "EOF on stream before the child was ready" || noise != "sh: mitostar: not found" {
		t.Fatalf("EOF: noise %q, err %v", noise, err)
	}

	// Only the last 20 lines of noise are kept.
	var b strings.Builder
	for i := range 50 {
		b.WriteString(strings.Repeat("x", i) + "\n")
	}
	noise, _ = readUntilReady(bufio.NewReader(strings.NewReader(b.String())))
	if n := strings.Count(noise, "\n") + 1; n != 20 {
		t.Fatalf("kept %d lines of noise, want 20", n)
	}
}

// A payload with a tail is written as one frame, through a link's
// buffered writer (large strings bypass its buffer) or as one write, and
// read back whole.
func TestWriteMessageTail(t *testing.T) {
	big := strings.Repeat("x", 200<<10)
	m := &Message{DstID: 1, Handle: 1000, Data: []byte{0x5a, 0, 3, 0x20, 0}, Tail: []string{big, "\xf6"}}
	want := append(append([]byte{0x5a, 0, 3, 0x20, 0}, big...), 0xf6)
	if m.Len() != len(want) {
		t.Fatalf("Len = %d, want %d", m.Len(), len(want))
	}
	var plain, buffered bytes.Buffer
	if err := writeMessage(&plain, m); err != nil {
		t.Fatal(err)
	}
	bw := bufio.NewWriterSize(&buffered, 4096)
	f := m.frame()
	if err := wire.WriteFrame(bw, &f); err != nil {
		t.Fatal(err)
	}
	bw.Flush()
	for name, buf := range map[string]*bytes.Buffer{"plain": &plain, "bufio": &buffered} {
		got, err := readMessage(buf, DefaultMaxMessageSize)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !bytes.Equal(got.Data, want) || got.DstID != 1 || got.Handle != 1000 {
			t.Fatalf("%s: read back %s with %d payload bytes", name, got, len(got.Data))
		}
	}
	local := &Message{Data: []byte{1}, Tail: []string{"\x02\x03", "\x04"}}
	local.join()
	if !bytes.Equal(local.Data, []byte{1, 2, 3, 4}) || local.Tail != nil {
		t.Fatalf("join: Data %v Tail %v", local.Data, local.Tail)
	}
}

// A call request is its header, as Marshal lays it out, then the
// arguments as they are; decoding gives both back.
func TestCallRequestRoundTrip(t *testing.T) {
	for _, req := range []CallRequest{
		{Func: "f"},
		{Func: "star:abc:name:path.star", Timeout: 2.5, Ext: []byte{0x80}},
		{Func: strings.Repeat("x", 300), Ext: bytes.Repeat([]byte{1}, 70000)},
	} {
		head, err := Marshal(&req)
		if err != nil {
			t.Fatal(err)
		}
		req.Args = []byte{0x82, 0x80, 0x80}
		req.ArgsTail = []string{"\x41x"}
		m, err := NewCallMessage(&req)
		if err != nil {
			t.Fatal(err)
		}
		m.join()
		if whole := m.Data; !bytes.Equal(whole, append(append(head, req.Args...), 0x41, 'x')) {
			t.Fatalf("payload of %.40q: %x", req.Func, whole[:min(len(whole), 40)])
		}
		var back CallRequest
		if err := decodeCallRequest(m.Data, &back); err != nil {
			t.Fatal(err)
		}
		if back.Func != req.Func || back.Timeout != req.Timeout || !bytes.Equal(back.Ext, req.Ext) || !bytes.Equal(back.Args, []byte{0x82, 0x80, 0x80, 0x41, 'x'}) {
			t.Fatalf("decoded %.60v, want %.60v", back, req)
		}
	}
	// Anything but the header's array is refused.
	for _, bad := range [][]byte{
		{0xa2, 0x01, 0x61, 'f', 0x01, 0x61, 'g'}, // a map
		{0x83, 0x61, 'f', 0x00},                  // cut short
		{0x83, 0x01, 0x00, 0x40},                 // Func not text
	} {
		if err := decodeCallRequest(bad, &CallRequest{}); err == nil {
			t.Fatalf("call header %x decoded", bad)
		}
	}
}
