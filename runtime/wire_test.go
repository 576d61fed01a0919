package runtime

import (
	"bytes"
	"reflect"
	"strings"
	"testing"

	"github.com/mitostar/mitostar/core"
)

// The handshake extension and the modules riding with a call survive the
// trip, and a cut encoding is refused rather than read as something else.
func TestHelloExtAndModuleBlobsRoundTrip(t *testing.T) {
	for _, ext := range []helloExt{
		{},
		{Argv: []string{}},
		{Argv: []string{"first", "second arg", "", strings.Repeat("é", 300)}},
		{Argv: []string{"a"}, Modules: []moduleBlob{{Path: "m.star", SHA256: "ab", Source: []byte("x = 1\n")}}},
	} {
		data, err := core.Marshal(&ext)
		if err != nil {
			t.Fatal(err)
		}
		var got helloExt
		if err := core.Unmarshal(data, &got); err != nil {
			t.Fatal(err)
		}
		if len(got.Argv) != len(ext.Argv) || (len(ext.Argv) > 0 && !reflect.DeepEqual(got.Argv, ext.Argv)) || len(got.Modules) != len(ext.Modules) {
			t.Fatalf("extension %+v read back as %+v", ext, got)
		}
		for cut := range len(data) {
			var h helloExt
			if err := core.Unmarshal(data[:cut], &h); err == nil {
				t.Fatalf("a cut extension (%d of %d bytes) read as %+v", cut, len(data), h)
			}
		}
	}
	for _, blobs := range [][]moduleBlob{
		{},
		{{Path: "a.star", SHA256: strings.Repeat("ab", 32), Source: []byte("def f():\n    return 1\n")}},
		{{Path: "lib/x.star", SHA256: "00", Source: []byte{}}, {Path: "y.star", SHA256: "ff", Source: nil},
			{Path: strings.Repeat("p", 300), SHA256: "1", Source: make([]byte, 70000)}},
	} {
		data := encodeModuleBlobs(blobs)
		back, err := decodeModuleBlobs(data)
		if err != nil {
			t.Fatal(err)
		}
		if len(back) != len(blobs) {
			t.Fatalf("read %d blobs, want %d", len(back), len(blobs))
		}
		for i := range back {
			if back[i].Path != blobs[i].Path || back[i].SHA256 != blobs[i].SHA256 || !bytes.Equal(back[i].Source, blobs[i].Source) {
				t.Fatalf("blob %d: %+v, want %+v", i, back[i], blobs[i])
			}
		}
		for cut := 1; cut < len(data); cut++ {
			if _, err := decodeModuleBlobs(data[:cut]); err == nil {
				t.Fatalf("blobs cut to %d of %d bytes decoded", cut, len(data))
			}
		}
	}
}
