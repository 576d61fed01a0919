package files

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// TestNoWaitFileIO: chunks written with writeChunk and read back through
// hashReader (both try RWF_NOWAIT first, then the ordinary call) keep
// every byte and the file offset, also when the two kinds of call mix.
func TestNoWaitFileIO(t *testing.T) {
	data := make([]byte, 3<<20+12345)
	rand.Read(data)
	p := filepath.Join(t.TempDir(), "f")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	for i, rest := 0, data; len(rest) > 0; i++ {
		n := min(len(rest), 200<<10+i)
		if i%3 == 2 {
			_, err = f.Write(rest[:n]) // the ordinary call in between
		} else {
			err = writeChunk(f, rest[:n])
		}
		if err != nil {
			t.Fatal(err)
		}
		rest = rest[n:]
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	f, err = os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	r := &hashReader{ctx: context.Background(), op: "test", path: p, f: f, h: h, size: int64(len(data)), left: int64(len(data))}
	var got bytes.Buffer
	buf := make([]byte, 256<<10)
	for i := 0; ; i++ {
		var n int
		var err error
		if i%4 == 3 {
			n, err = f.Read(buf[:1000]) // the file's offset is shared
			h.Write(buf[:n])
			r.left -= int64(n)
		} else {
			n, err = r.Read(buf)
		}
		got.Write(buf[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(got.Bytes(), data) {
		t.Fatalf("read back %d bytes, differing from the %d written", got.Len(), len(data))
	}
	want := sha256.Sum256(data)
	if !bytes.Equal(h.Sum(nil), want[:]) {
		t.Fatal("sha256 differs")
	}
	if err := writeChunk(f, []byte("x")); err == nil {
		t.Fatal("writeChunk to a read-only file succeeded")
	}
}
