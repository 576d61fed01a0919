package trailer

import (
	"bytes"
	"strings"
	"testing"
)

func TestTrailer(t *testing.T) {
	plain := []byte("\x7fELF a plain binary")
	if n, err := Executable(bytes.NewReader(plain), int64(len(plain))); err != nil || n != int64(len(plain)) {
		t.Errorf("a plain binary: %d, %v; want all %d bytes", n, err, len(plain))
	}
	tr := Encode(int64(len(plain)))
	bundle := append(append(append([]byte(nil), plain...), "zip archive"...), tr[:]...)
	off, ok, err := Offset(bytes.NewReader(bundle), int64(len(bundle)))
	if err != nil || !ok || off != int64(len(plain)) {
		t.Errorf("a bundle: offset %d, %v, %v; want %d", off, ok, err, len(plain))
	}
	if n, _ := Executable(bytes.NewReader(bundle), int64(len(bundle))); n != int64(len(plain)) {
		t.Errorf("a bundle's executable: %d bytes, want %d", n, len(plain))
	}
	bad := Encode(1 << 40)
	junk := append([]byte("x"), bad[:]...)
	if _, err := Executable(bytes.NewReader(junk), int64(len(junk))); err == nil || !strings.Contains(err.Error(), "bad archive offset") {
		t.Errorf("a trailer pointing outside the file: %v", err)
	}
	short := []byte("tiny")
	if n, err := Executable(bytes.NewReader(short), int64(len(short))); err != nil || n != 4 {
		t.Errorf("a file shorter than a trailer: %d, %v", n, err)
	}
}
