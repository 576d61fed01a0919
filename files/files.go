// Package files moves files and directory trees between contexts over
// windowed byte streams (core.ByteStream): Put and Get, which back the
// Starlark fs.put and fs.get, and FileService, a service that serves
// registered paths and prefixes to children, as Mitogen's does.
//
// Files of any size are streamed (never held whole in memory), keep
// their mode and mtime, are verified by a CRC-32C and are written
// atomically: a temp file beside the destination renamed over it, a new
// tree built in a temp directory renamed into place. A failed transfer
// leaves no partial file. Failing system calls are errors of kind
// OSError that name the path ("fs.put /srv/x: permission denied").
//
// The remote half runs in the other context as the registered functions
// "files.receive" and "files.send"; they start the transfer on a
// goroutine of that context's router and return at once, so a long
// transfer never holds up other calls into the context.
package files

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/mitostar/mitostar/core"
)

func init() {
	core.RegisterFunc("files.receive", serveReceive)
	core.RegisterFunc("files.send", serveSend)
}

// receiveWindow is the byte-stream window of the end a file travels to:
// four times core's default, because over ssh the credit the receiver
// sends back crosses ssh and sshd twice, and with core's default in
// flight the sender waits for it (the fs_put_ssh rows of make bench). A
// hop forwards frames and keeps no window of its own, so a transfer
// still holds at most this much in any context.
var receiveWindow = &core.ByteStreamOptions{Window: 4 << 20}

// Options tune a transfer.
type Options struct {
	// Mode, when not nil, replaces the mode of the files Put copies.
	Mode *os.FileMode
	// Recursive copies a directory as a tree.
	Recursive bool
	// KeepSetuid keeps the setuid and setgid bits of the files copied;
	// they are cleared otherwise (a Mode given to Put with either bit
	// asks for it too).
	KeepSetuid bool
}

// Put copies localPath in this context to remotePath in target. mode,
// when not nil, replaces the mode of the files copied; with recursive a
// directory is copied as a tree (remotePath becomes that directory; into
// an existing directory the entries are merged).
func Put(ctx context.Context, r *core.Router, target *core.Context, localPath, remotePath string, mode *os.FileMode, recursive bool) error {
	return PutWith(ctx, r, target, localPath, remotePath, Options{Mode: mode, Recursive: recursive})
}

// PutWith is Put with all its options.
func PutWith(ctx context.Context, r *core.Router, target *core.Context, localPath, remotePath string, opts Options) error {
	const op = "fs.put"
	mode, recursive := opts.Mode, opts.Recursive
	ro := ReceiveOptions{KeepSetuid: opts.KeepSetuid || (mode != nil && *mode&(os.ModeSetuid|os.ModeSetgid) != 0)}
	if _, err := os.Stat(localPath); err != nil {
		return osError(op, localPath, err)
	}
	s, err := r.NewByteStream(target, nil)
	if err != nil {
		return err
	}
	defer s.Close()
	stop := context.AfterFunc(ctx, func() { s.Abort(fmt.Errorf("%s %s: %w", op, localPath, context.Cause(ctx))) })
	defer stop()
	if err := target.Call(ctx, nil, "files.receive", s.Addr(), remotePath, ro); err != nil {
		return err
	}
	if err := sendTree(ctx, op, s, localPath, recursive, mode); err != nil {
		return abort(s, err)
	}
	if err := s.CloseWriteContext(ctx); err != nil {
		return preferRemote(s, err)
	}
	var st status
	if err := readRecord(s, &st); err != nil {
		return preferRemote(s, fmt.Errorf("%s %s: no status from %s: %w", op, remotePath, target.Name(), err))
	}
	if st.Kind != "" {
		return &core.RemoteError{Kind: st.Kind, Message: st.Message, Context: target.Name()}
	}
	return nil
}

// Get copies remotePath in target to localPath in this context; see Put.
func Get(ctx context.Context, r *core.Router, target *core.Context, remotePath, localPath string, recursive bool) error {
	return GetWith(ctx, r, target, remotePath, localPath, Options{Recursive: recursive})
}

// GetWith is Get with all its options (Mode is Put's only).
func GetWith(ctx context.Context, r *core.Router, target *core.Context, remotePath, localPath string, opts Options) error {
	const op = "fs.get"
	recursive := opts.Recursive
	s, err := r.NewByteStream(target, receiveWindow)
	if err != nil {
		return err
	}
	defer s.Close()
	stop := context.AfterFunc(ctx, func() { s.Abort(fmt.Errorf("%s %s: %w", op, remotePath, context.Cause(ctx))) })
	defer stop()
	if err := target.Call(ctx, nil, "files.send", s.Addr(), remotePath, recursive); err != nil {
		return err
	}
	if _, err := receiveTree(ctx, op, s, localPath, ReceiveOptions{KeepSetuid: opts.KeepSetuid}); err != nil {
		return abort(s, err)
	}
	return nil
}

// abort breaks s with err and returns the error to report: the peer's,
// when it failed first.
func abort(s *core.ByteStream, err error) error {
	err = preferRemote(s, err)
	s.Abort(err)
	return err
}

// preferRemote returns the reason the peer gave for breaking s, if it
// did, instead of err (which is then only a consequence).
func preferRemote(s *core.ByteStream, err error) error {
	var re *core.RemoteError
	if cause := s.Err(); cause != nil && errors.As(cause, &re) && !errors.As(err, new(*core.RemoteError)) {
		return cause
	}
	return err
}

type receiveArgs struct {
	_    struct{} `cbor:",toarray"`
	Addr core.StreamAddr
	Dest string
	Opts ReceiveOptions
}

// serveReceive is files.receive(addr, dest, opts): dial the caller's stream
// and receive a tree at dest, answering with a status record.
func serveReceive(ctx context.Context, c *core.Call) (any, error) {
	var a receiveArgs
	if err := c.Args(&a); err != nil {
		return nil, fmt.Errorf("files.receive: %w", err)
	}
	if a.Dest == "" {
		return nil, errors.New("files.receive: empty destination path")
	}
	r := c.Router
	s, err := r.DialByteStream(ctx, a.Addr, receiveWindow)
	if err != nil {
		return nil, err
	}
	r.Go(func() {
		defer s.Close()
		st, err := receiveTree(r.Lifetime(), "fs.put", s, a.Dest, a.Opts)
		if err != nil {
			re := core.AsRemote(preferRemote(s, err), r.Name())
			if re.Kind == "Error" {
				re.Kind = "OSError"
			}
			s.Abort(re)
			return
		}
		if err := writeRecord(s, &st); err == nil {
			s.CloseWrite()
		}
	})
	return nil, nil
}

type sendArgs struct {
	_         struct{} `cbor:",toarray"`
	Addr      core.StreamAddr
	Path      string
	Recursive bool
}

// serveSend is files.send(addr, path, recursive): check path, dial the
// caller's stream and send the tree.
func serveSend(ctx context.Context, c *core.Call) (any, error) {
	var a sendArgs
	if err := c.Args(&a); err != nil {
		return nil, fmt.Errorf("files.send: %w", err)
	}
	const op = "fs.get"
	st, err := os.Stat(a.Path)
	if err != nil {
		return nil, osError(op, a.Path, err)
	}
	if st.IsDir() && !a.Recursive {
		return nil, &core.RemoteError{Kind: "OSError", Message: op + " " + a.Path + ": is a directory (recursive=True copies a tree)"}
	}
	r := c.Router
	s, err := r.DialByteStream(ctx, a.Addr, nil)
	if err != nil {
		return nil, err
	}
	r.Go(func() {
		defer s.Close()
		if err := sendTree(r.Lifetime(), op, s, a.Path, a.Recursive, nil); err != nil {
			s.Abort(err)
			return
		}
		s.CloseWrite()
		// Wait for the receiver to finish (it closes), so that the
		// stream outlives the data in flight.
		var b [1]byte
		s.ReadContext(r.Lifetime(), b[:])
	})
	return nil, nil
}
