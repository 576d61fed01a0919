package core

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
)

// The hand-written handshake codec writes exactly what Marshal writes
// and reads it back to the same values.
func TestHelloCodecMatchesMarshal(t *testing.T) {
	requests := []HelloRequest{
		{},
		{Protocol: ProtocolVersion, Version: "v1.2.3", ID: 7, ParentIDs: []uint32{0}, Name: "local.1234",
			MaxMessageSize: 128 << 20, LogLevel: -4, Debug: true, Ext: []byte{1, 2, 3}},
		{Protocol: 1 << 40, ID: 0xffffffff, ParentIDs: []uint32{0xffffffff, 70000, 300, 20, 0}, Name: strings.Repeat("n", 300),
			MaxMessageSize: -1, LogLevel: 12, Unidirectional: true, Ext: []byte{}},
		{ParentIDs: []uint32{}, Ext: bytes.Repeat([]byte{0xf6}, 70000)},
	}
	for i, h := range requests {
		want, err := Marshal(&h)
		if err != nil {
			t.Fatal(err)
		}
		got := encodeHelloRequest(&h)
		if !bytes.Equal(got, want) {
			t.Fatalf("request %d: encodeHelloRequest\n got %x\nwant %x", i, got, want)
		}
		if !readHelloRequest(got, new(HelloRequest)) {
			t.Fatalf("request %d: the fast reader refused its own encoding", i)
		}
		var back HelloRequest
		if err := decodeHelloRequest(got, &back); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		var ref HelloRequest
		if err := unmarshal(want, &ref); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(back, ref) {
			t.Fatalf("request %d: decoded\n %+v\nwant %+v", i, back, ref)
		}
	}
	replies := []HelloReply{
		{},
		{Protocol: ProtocolVersion, Version: "dev", PID: 4242},
		{Protocol: -3, PID: 1 << 33, Error: "protocol version mismatch: parent speaks 2, child speaks 1"},
	}
	for i, r := range replies {
		want, err := Marshal(&r)
		if err != nil {
			t.Fatal(err)
		}
		got := encodeHelloReply(&r)
		if !bytes.Equal(got, want) {
			t.Fatalf("reply %d: encodeHelloReply\n got %x\nwant %x", i, got, want)
		}
		var back HelloReply
		if err := decodeHelloReply(got, &back); err != nil || back != r {
			t.Fatalf("reply %d: decoded %+v, %v; want %+v", i, back, err, r)
		}
	}
}

// Encodings of another shape (other key order, unknown keys, missing
// fields) still decode, through the reflecting decoder; garbage fails
// with an error and never panics.
func TestHelloDecodeOtherShapes(t *testing.T) {
	// {3: 9, 5: "x", 1: 1, 99: [1, 2]}: keys out of order, one unknown.
	other := []byte{0xa4, 0x03, 0x09, 0x05, 0x61, 'x', 0x01, 0x01, 0x18, 0x63, 0x82, 0x01, 0x02}
	var h HelloRequest
	if readHelloRequest(other, &HelloRequest{}) {
		t.Fatal("fast reader took a map it does not know")
	}
	if err := decodeHelloRequest(other, &h); err != nil {
		t.Fatal(err)
	}
	if h.ID != 9 || h.Name != "x" || h.Protocol != 1 {
		t.Fatalf("decoded %+v", h)
	}
	full := encodeHelloRequest(&HelloRequest{Name: "abc", ParentIDs: []uint32{1, 2}, Ext: []byte("ext")})
	for cut := range len(full) {
		var h HelloRequest
		if err := decodeHelloRequest(full[:cut], &h); err == nil {
			t.Fatalf("a request cut to %d of %d bytes decoded: %+v", cut, len(full), h)
		}
	}
	var r HelloReply
	if err := decodeHelloReply([]byte{0x82, 0x01, 0x02}, &r); err == nil {
		t.Fatal("an array decoded as a HelloReply")
	}
}
