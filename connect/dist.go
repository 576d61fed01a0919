package connect

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/mitostar/mitostar/core"
)

// A context that must bootstrap a target of another platform and has no
// mitostar-<os>-<arch> of its own (a child runs from its cache, with no
// dist directory beside it) asks its parent, which asks its own, up to
// the master: the service below, which each context serves to its
// immediate children only.
const distService = "mitostar.dist"

// serveDist registers the dist service on r (once; later calls are
// no-ops). The master registers it when it first starts a connection.
func serveDist(r *core.Router) {
	policy := r.IsImmediateChild
	r.RegisterService(&core.Service{
		Name:    distService,
		Workers: 2,
		Methods: map[string]core.ServiceMethod{
			"info": {Policy: policy, Fn: func(ctx context.Context, c *core.ServiceCall) (any, error) {
				var kw distRequest
				if err := c.Kwargs(&kw); err != nil {
					return nil, err
				}
				b, err := binaryFor(ctx, c.Router, kw.GOOS, kw.GOARCH)
				if err != nil {
					return nil, err
				}
				info, err := b.info()
				if err != nil {
					return nil, err
				}
				return distInfo{Hash: info.hash, Size: info.size}, nil
			}},
			"read": {Policy: policy, Fn: func(ctx context.Context, c *core.ServiceCall) (any, error) {
				var kw distRequest
				if err := c.Kwargs(&kw); err != nil {
					return nil, err
				}
				b, err := binaryFor(ctx, c.Router, kw.GOOS, kw.GOARCH)
				if err != nil {
					return nil, err
				}
				if kw.Length <= 0 || kw.Length > int64(c.Router.MaxMessageSize()) || kw.Offset < 0 {
					return nil, fmt.Errorf("%s.read: bad range offset=%d length=%d", distService, kw.Offset, kw.Length)
				}
				f, err := b.open()
				if err != nil {
					return nil, err
				}
				defer f.Close()
				buf := make([]byte, kw.Length)
				n, err := f.ReadAt(buf, kw.Offset)
				if err != nil && !errors.Is(err, io.EOF) {
					return nil, err
				}
				return buf[:n], nil
			}},
		},
	})
}

type distRequest struct {
	GOOS   string `cbor:"goos"`
	GOARCH string `cbor:"goarch"`
	Offset int64  `cbor:"offset"`
	Length int64  `cbor:"length"`
}

type distInfo struct {
	Hash string `cbor:"1,keyasint"`
	Size int64  `cbor:"2,keyasint"`
}

// fetchDist gets the goos/goarch binary from the parent of r, in chunks
// that fit the message size limit, and checks its sha256.
func fetchDist(ctx context.Context, r *core.Router, goos, goarch string) (*binary, error) {
	pid, ok := r.ParentID()
	if !ok {
		return nil, errors.New("no parent to ask")
	}
	parent := r.ContextByID(pid)
	kw := map[string]any{"goos": goos, "goarch": goarch}
	var info distInfo
	if err := parent.CallService(ctx, &info, distService, "info", kw); err != nil {
		return nil, err
	}
	chunk := int64(r.MaxMessageSize() - 1024)
	if chunk > 4<<20 {
		chunk = 4 << 20
	}
	if chunk < 1024 {
		chunk = 1024
	}
	data := make([]byte, 0, info.Size)
	for int64(len(data)) < info.Size {
		n := min(chunk, info.Size-int64(len(data)))
		var part []byte
		err := parent.CallService(ctx, &part, distService, "read", map[string]any{
			"goos": goos, "goarch": goarch, "offset": int64(len(data)), "length": n,
		})
		if err != nil {
			return nil, err
		}
		if len(part) == 0 {
			return nil, fmt.Errorf("the parent's binary ended at %d of %d bytes", len(data), info.Size)
		}
		data = append(data, part...)
	}
	sum := sha256.Sum256(data)
	if got := hex.EncodeToString(sum[:]); got != info.Hash {
		return nil, fmt.Errorf("the binary received from the parent has sha256 %s, want %s", got, info.Hash)
	}
	b := &binary{path: "(from the parent) mitostar-" + goos + "-" + goarch, mem: data}
	b.once.Do(func() { b.meta = binaryInfo{hash: info.Hash, size: info.Size} })
	return b, nil
}

// memFile reads an in-memory binary like a file.
type memFile struct{ *bytes.Reader }

func (memFile) Close() error { return nil }

// binaryReader is what open returns: a file, or an in-memory binary.
type binaryReader interface {
	io.Reader
	io.ReaderAt
	io.Closer
}

var _ binaryReader = (*os.File)(nil)

var (
	fetchedMu sync.Mutex // held while fetching: one fetch per platform at a time
	fetched   = map[string]*binary{}
)

// fetchDistOnce is fetchDist with the result kept for later connections.
func fetchDistOnce(ctx context.Context, r *core.Router, goos, goarch string) (*binary, error) {
	fetchedMu.Lock()
	defer fetchedMu.Unlock()
	key := goos + "/" + goarch
	if b := fetched[key]; b != nil {
		return b, nil
	}
	b, err := fetchDist(ctx, r, goos, goarch)
	if err != nil {
		return nil, err
	}
	fetched[key] = b
	return b, nil
}
