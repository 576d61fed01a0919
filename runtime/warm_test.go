package runtime

import (
	"bytes"
	"context"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/mitostar/mitostar/builtins"
	"github.com/mitostar/mitostar/core"
)

// The warm-up call a child runs before its first call resolves and runs:
// a broken one would be dropped silently and warm nothing.
func TestWarmCallRuns(t *testing.T) {
	r := core.NewMaster(core.Options{})
	defer r.Close()
	rt := New(r, Options{})
	head, tail, err := rt.handleCall(context.Background(), &core.Call{Router: r, Request: warmCall, Msg: &core.Message{}})
	if err != nil {
		t.Fatalf("warm call: %v", err)
	}
	if len(tail) != 0 || len(head) == 0 || head[0] != core.ReplyOK[0] {
		t.Fatalf("warm call reply %x + %d pieces, want ReplyOK and a value", head, len(tail))
	}
	v, err := new(builtins.Decoder).Decode(head[1:])
	if err != nil {
		t.Fatal(err)
	}
	if v.String() != strconv.Itoa(os.Getpid()) {
		t.Fatalf("warm call returned %s, want this process's pid %d", v, os.Getpid())
	}
}

// The handshake extension's common layout is read by hand, the same as
// the general decoder reads it; other layouts are left to that decoder.
func TestReadHelloExt(t *testing.T) {
	for _, ext := range []helloExt{
		{},
		{Argv: []string{}},
		{Argv: []string{"first", "second arg", "", strings.Repeat("é", 300)}},
		{Argv: []string{"a"}, Modules: []moduleBlob{{Path: "m.star", SHA256: "ab", Source: []byte("x = 1\n")}}},
		{Argv: []string{"a"}, CheckMode: true, DiffHandle: 1001},
	} {
		data, err := core.Marshal(&ext)
		if err != nil {
			t.Fatal(err)
		}
		var want helloExt
		if err := core.Unmarshal(data, &want); err != nil {
			t.Fatal(err)
		}
		var got helloExt
		ok := readHelloExt(data, &got)
		if fast := len(ext.Modules) == 0 && !ext.CheckMode && ext.DiffHandle == 0; ok != fast {
			t.Fatalf("readHelloExt(%x) = %v, want %v", data, ok, fast)
		}
		if ok && !reflect.DeepEqual(got.Argv, want.Argv) && !(len(got.Argv) == 0 && len(want.Argv) == 0) {
			t.Fatalf("argv %q, the general decoder reads %q", got.Argv, want.Argv)
		}
		for cut := range len(data) {
			var h helloExt
			if readHelloExt(data[:cut], &h) {
				t.Fatalf("a cut extension (%d of %d bytes) read as %+v", cut, len(data), h)
			}
		}
	}
}

// Modules riding with a call are written and read by hand, byte for byte
// as Marshal and the general decoder do.
func TestModuleBlobsCodec(t *testing.T) {
	for _, blobs := range [][]moduleBlob{
		nil,
		{},
		{{Path: "a.star", SHA256: strings.Repeat("ab", 32), Source: []byte("def f():\n    return 1\n")}},
		{{Path: "lib/x.star", SHA256: "00", Source: []byte{}}, {Path: "y.star", SHA256: "ff", Source: nil},
			{Path: strings.Repeat("p", 300), SHA256: "1", Source: make([]byte, 70000)}},
	} {
		want, err := core.Marshal(blobs)
		if err != nil {
			t.Fatal(err)
		}
		if blobs == nil {
			want, _ = core.Marshal([]moduleBlob{}) // the encoder never sees nil: it writes []
		}
		got := encodeModuleBlobs(blobs)
		if !bytes.Equal(got, want) {
			t.Fatalf("encodeModuleBlobs\n got %x\nwant %x", got, want)
		}
		var ref []moduleBlob
		if err := core.Unmarshal(want, &ref); err != nil {
			t.Fatal(err)
		}
		back, ok := readModuleBlobs(got)
		if !ok {
			t.Fatalf("readModuleBlobs refused %x", got)
		}
		if len(back) != len(ref) {
			t.Fatalf("read %d blobs, want %d", len(back), len(ref))
		}
		for i := range back {
			if back[i].Path != ref[i].Path || back[i].SHA256 != ref[i].SHA256 || !bytes.Equal(back[i].Source, ref[i].Source) {
				t.Fatalf("blob %d: %+v, want %+v", i, back[i], ref[i])
			}
		}
		for cut := range len(got) {
			if _, err := decodeModuleBlobs(got[:cut]); err == nil && cut > 0 {
				t.Fatalf("blobs cut to %d of %d bytes decoded", cut, len(got))
			}
		}
	}
}
