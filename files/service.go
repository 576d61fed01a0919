package files

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/mitostar/mitostar/core"
)

// ServiceName is the name FileService is registered under.
const ServiceName = "files"

// FileService serves files to other contexts, usually children: only
// paths registered with Register, and files under prefixes registered
// with RegisterPrefix. Contexts with parent authority (this context and
// its ancestors) may fetch any path. Methods (ctx.call_service("files", …)):
//
//	register(path)           parent authority: serve this file
//	register_prefix(path)    parent authority: serve files under this directory
//	fetch(path, stream)      anyone: stream the file to the caller's stream
//	                         address; answers {size, mode, mtime}
//
// Under a prefix, ".." and symlinks that lead out of the prefix are
// refused (the file is opened through an os.Root). Only regular files
// are served.
type FileService struct {
	r        *core.Router
	mu       sync.Mutex
	paths    map[string]bool
	prefixes map[string]bool
}

// installed holds each router's FileService, until the router closes.
var installed sync.Map // *core.Router → *FileService

// Install registers the FileService of r (once; later calls return the
// same service). Every child installs one at start; a master embedding
// mitostar calls Install itself.
func Install(r *core.Router) (*FileService, error) {
	if v, ok := installed.Load(r); ok {
		return v.(*FileService), nil
	}
	fs := &FileService{r: r, paths: map[string]bool{}, prefixes: map[string]bool{}}
	err := r.RegisterService(&core.Service{
		Name:    ServiceName,
		Workers: 4,
		Methods: map[string]core.ServiceMethod{
			"register":        {Fn: fs.callRegister},
			"register_prefix": {Fn: fs.callRegisterPrefix},
			"fetch":           {Fn: fs.callFetch, Policy: core.AllowAny},
		},
	})
	if err != nil {
		if v, ok := installed.Load(r); ok {
			return v.(*FileService), nil
		}
		return nil, err
	}
	installed.Store(r, fs)
	context.AfterFunc(r.Lifetime(), func() { installed.Delete(r) })
	return fs, nil
}

func init() {
	core.RegisterChildHook(func(r *core.Router, _ []byte) error {
		_, err := Install(r)
		return err
	})
}

func checkPath(path string) error {
	if !filepath.IsAbs(path) || filepath.Clean(path) != path {
		return fmt.Errorf("files: %q is not an absolute, clean path", path)
	}
	return nil
}

// Register allows path (an absolute file path) to be fetched.
func (s *FileService) Register(path string) error {
	if err := checkPath(path); err != nil {
		return err
	}
	s.mu.Lock()
	s.paths[path] = true
	s.mu.Unlock()
	return nil
}

// RegisterPrefix allows every file under the directory path to be fetched.
func (s *FileService) RegisterPrefix(path string) error {
	if err := checkPath(path); err != nil {
		return err
	}
	s.mu.Lock()
	s.prefixes[path] = true
	s.mu.Unlock()
	return nil
}

type pathArg struct {
	Path string `cbor:"path"`
}

func (s *FileService) callRegister(ctx context.Context, c *core.ServiceCall) (any, error) {
	var a pathArg
	if err := c.Kwargs(&a); err != nil {
		return nil, fmt.Errorf("files.register: %w", err)
	}
	return nil, s.Register(a.Path)
}

func (s *FileService) callRegisterPrefix(ctx context.Context, c *core.ServiceCall) (any, error) {
	var a pathArg
	if err := c.Kwargs(&a); err != nil {
		return nil, fmt.Errorf("files.register_prefix: %w", err)
	}
	return nil, s.RegisterPrefix(a.Path)
}

// open opens path for a caller, enforcing the registrations.
func (s *FileService) open(path string, privileged bool) (*os.File, error) {
	if err := checkPath(path); err != nil {
		return nil, err
	}
	s.mu.Lock()
	exact := s.paths[path]
	var prefix string
	for p := range s.prefixes {
		if (path == p || strings.HasPrefix(path, p+"/") || p == "/") && len(p) > len(prefix) {
			prefix = p
		}
	}
	s.mu.Unlock()
	switch {
	case exact || (privileged && prefix == ""):
		f, err := os.Open(path)
		if err != nil {
			return nil, osError("files.fetch", path, err)
		}
		return f, nil
	case prefix != "":
		root, err := os.OpenRoot(prefix)
		if err != nil {
			return nil, osError("files.fetch", prefix, err)
		}
		defer root.Close()
		rel, _ := filepath.Rel(prefix, path)
		f, err := root.Open(rel)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) || errors.Is(err, os.ErrPermission) {
				return nil, osError("files.fetch", path, err)
			}
			return nil, fmt.Errorf("files: refusing %s: it leads out of the registered prefix %s (%v)", path, prefix, errnoText(err))
		}
		return f, nil
	}
	return nil, fmt.Errorf("files: path %s is not registered with FileService", path)
}

// FileInfo describes a fetched file.
type FileInfo struct {
	Size  int64  `cbor:"size"`
	Mode  uint32 `cbor:"mode"`  // permission bits
	MTime int64  `cbor:"mtime"` // unix nanoseconds
}

type fetchArgs struct {
	Path   string          `cbor:"path"`
	Stream core.StreamAddr `cbor:"stream"`
}

func (s *FileService) callFetch(ctx context.Context, c *core.ServiceCall) (any, error) {
	var a fetchArgs
	if err := c.Kwargs(&a); err != nil {
		return nil, fmt.Errorf("files.fetch: %w", err)
	}
	if a.Stream.Context != c.Msg.SrcID {
		return nil, fmt.Errorf("files.fetch: the stream must belong to the caller (context %d), not context %d", c.Msg.SrcID, a.Stream.Context)
	}
	f, err := s.open(a.Path, s.r.HasParentAuthority(c.Msg))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, osError("files.fetch", a.Path, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("files: %s is not a regular file", a.Path)
	}
	bs, err := s.r.DialByteStream(ctx, a.Stream, nil)
	if err != nil {
		return nil, err
	}
	defer bs.Close()
	snd := &sender{op: "files.fetch", w: bufio.NewWriterSize(bs, ioBuffer)}
	err = snd.openFile(ctx, f, a.Path, "")
	if err == nil {
		err = snd.header(header{Kind: kindEnd})
	}
	if err == nil {
		err = snd.w.Flush()
	}
	if err == nil {
		err = bs.CloseWriteContext(ctx)
	}
	if err != nil {
		err = preferRemote(bs, err)
		bs.Abort(err)
		return nil, err
	}
	// Wait until the receiver has read everything and closed.
	var b [1]byte
	bs.ReadContext(ctx, b[:])
	return FileInfo{Size: st.Size(), Mode: perm(st.Mode()), MTime: st.ModTime().UnixNano()}, nil
}

// Fetch asks the FileService of from for path and writes it atomically
// to localPath, with the served file's mode and mtime.
func Fetch(ctx context.Context, r *core.Router, from *core.Context, path, localPath string) (*FileInfo, error) {
	bs, err := r.NewByteStream(from, receiveWindow)
	if err != nil {
		return nil, err
	}
	defer bs.Close()
	done := make(chan error, 1)
	go func() {
		_, err := receiveTree(ctx, "files.fetch", bs, localPath, ReceiveOptions{})
		if err != nil {
			bs.Abort(err)
		}
		bs.Close()
		done <- err
	}()
	var info FileInfo
	callErr := from.CallService(ctx, &info, ServiceName, "fetch", map[string]any{"path": path, "stream": bs.Addr()})
	if callErr != nil {
		bs.Abort(callErr)
	}
	recvErr := <-done
	if callErr != nil {
		return nil, callErr
	}
	if recvErr != nil {
		return nil, recvErr
	}
	return &info, nil
}
