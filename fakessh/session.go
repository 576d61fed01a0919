package fakessh

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"github.com/mitostar/mitostar/core"
)

// session bridges one ssh process to one remote command.
type session struct {
	srv      *server
	ctrl     *net.UnixConn
	id       string
	stdin    chan *net.UnixConn // connection 2, handed over by serve
	finished chan struct{}

	wmu sync.Mutex // serializes frames on ctrl
}

func (ss *session) frame(typ byte, data []byte) error {
	ss.wmu.Lock()
	defer ss.wmu.Unlock()
	return writeFrame(ss.ctrl, typ, data)
}

// run serves the session until the remote command has exited and its
// output has been delivered, or either side went away.
func (ss *session) run(h *hello) {
	defer close(ss.finished)
	r, target := ss.srv.r, ss.srv.target
	ctx, cancel := context.WithCancel(r.Lifetime())
	defer cancel()
	go func() {
		select {
		case <-ss.srv.done:
			cancel()
		case <-ctx.Done():
		}
	}()

	refuse := func(err error) { writeRecord(ss.ctrl, &accept{Error: err.Error()}) }
	stdio, err := r.NewByteStream(target, nil)
	if err != nil {
		refuse(err)
		return
	}
	defer stdio.Close()
	errs, err := r.NewByteStream(target, &core.ByteStreamOptions{Window: 256 << 10})
	if err != nil {
		refuse(err)
		return
	}
	defer errs.Close()
	exitRv, err := r.NewReceiver(core.ReceiverOptions{Once: true, Respondent: target, Policy: func(m *core.Message) bool { return m.SrcID == target.ID }})
	if err != nil {
		refuse(err)
		return
	}
	defer exitRv.Close()
	var rep execReply
	callCtx, callCancel := context.WithTimeout(ctx, 30*time.Second)
	err = target.Call(callCtx, &rep, "fakessh.exec", execArgs{
		Command: h.Command, Subsystem: h.Subsystem,
		Stdio: stdio.Addr(), Stderr: errs.Addr(), Exit: exitRv.Handle(),
	})
	callCancel()
	if err != nil {
		refuse(err)
		return
	}
	if err := writeRecord(ss.ctrl, &accept{Session: ss.id}); err != nil {
		cancel()
	}
	signals := core.NewSender(target, rep.Signals)
	abort := context.AfterFunc(ctx, func() {
		cause := errors.New("the ssh process went away")
		stdio.Abort(cause)
		errs.Abort(cause)
	})
	defer abort()

	var wg sync.WaitGroup
	// Control: signals from the ssh process; its end means it is gone.
	ss.srv.wg.Add(1)
	go func() {
		defer ss.srv.wg.Done()
		for {
			typ, n, err := readFrameHeader(ss.ctrl)
			if err != nil {
				cancel()
				return
			}
			data := make([]byte, n)
			if _, err := io.ReadFull(ss.ctrl, data); err != nil {
				cancel()
				return
			}
			if typ == 's' && n == 1 {
				signals.Send(ctx, int(data[0]))
			}
		}
	}()
	// Stdin: connection 2 to the remote command's stdin.
	var inMu sync.Mutex
	var inConn *net.UnixConn
	wg.Add(1)
	go func() {
		defer wg.Done()
		var c *net.UnixConn
		select {
		case c = <-ss.stdin:
		case <-ctx.Done():
			return
		case <-time.After(30 * time.Second):
			cancel()
			return
		}
		inMu.Lock()
		if ctx.Err() != nil {
			inMu.Unlock()
			return
		}
		inConn = c
		inMu.Unlock()
		buf := make([]byte, frameMax)
		if _, err := io.CopyBuffer(stdio, c, buf); err == nil {
			stdio.CloseWriteContext(ctx)
		}
	}()
	// Stdout and stderr: byte streams to frames.
	pump := func(s *core.ByteStream, typ byte) error {
		buf := make([]byte, frameMax)
		for {
			n, err := s.ReadContext(ctx, buf)
			if n > 0 {
				if werr := ss.frame(typ, buf[:n]); werr != nil {
					return werr
				}
			}
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
		}
	}
	outErr := make(chan error, 2)
	go func() { outErr <- pump(stdio, 'o') }()
	go func() { outErr <- pump(errs, 'e') }()
	e1, e2 := <-outErr, <-outErr
	status := 255
	if e1 == nil && e2 == nil {
		var ex execExit
		if err := exitRv.GetData(ctx, &ex); err == nil {
			status = ex.Code
			if ex.Signal != 0 {
				status = 255
			}
		}
	}
	var st [4]byte
	binary.BigEndian.PutUint32(st[:], uint32(status))
	ss.frame('x', st[:])
	cancel()
	inMu.Lock()
	if inConn != nil {
		inConn.Close()
	}
	inMu.Unlock()
	wg.Wait()
}

// execArgs are the arguments of fakessh.exec.
type execArgs struct {
	_         struct{} `cbor:",toarray"`
	Command   string
	Subsystem bool
	Stdio     core.StreamAddr // stdin from the caller, stdout to it
	Stderr    core.StreamAddr // stderr to the caller
	Exit      uint32          // the caller's handle for execExit
}

// execReply is fakessh.exec's result.
type execReply struct {
	Signals uint32 `cbor:"1,keyasint"` // handle taking signal numbers
}

// execExit reports how the remote command ended.
type execExit struct {
	Code   int `cbor:"1,keyasint"`
	Signal int `cbor:"2,keyasint,omitempty"`
}
