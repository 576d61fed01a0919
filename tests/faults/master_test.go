package faults

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	_ "github.com/mitostar/mitostar/connect" // the connection methods under test
	"github.com/mitostar/mitostar/core"
)

// The master of a fault test runs inside the client's network
// namespace, so that every socket a transport opens is subject to the
// faults the test injects there: it is this test binary re-executed in
// the role masterRole under ip netns exec. It builds the tree its plan
// describes (a local child; the far context, on the host the faults
// hit; a child of the far context; the other context, on a host whose
// link stays up), then obeys the test's commands, one line each on its
// stdin, answering each with one line "COMMAND JSON" on its stdout:
//
//	tree          build the tree, start the pending calls: treePids
//	fault         the test has broken the far link: wait for every call
//	              through it to end, calling the rest meanwhile: faultReport
//	connect SECS  a new connection to the far host, connect_timeout=SECS: callReport
//	call          a call into the far context: callReport
//	reconnect     call the old far context, then connect anew: callReport
//	bulk BYTES    a call into the far context carrying BYTES: callReport
//	timed SECS    a call into the far context with a deadline SECS away: callReport
//	quit          close the tree and exit

const (
	masterRole = "faults-master"
	planEnv    = "MITOSTAR_FAULTS_PLAN"
)

func init() {
	core.RegisterRole(masterRole, runMaster)
	core.RegisterFunc("faults.pid", func(ctx context.Context, c *core.Call) (any, error) {
		return os.Getpid(), nil
	})
	core.RegisterFunc("faults.sleep", func(ctx context.Context, c *core.Call) (any, error) {
		var args []float64
		if err := c.Args(&args); err != nil || len(args) != 1 {
			return nil, fmt.Errorf("faults.sleep: want one number of seconds: %v", err)
		}
		select {
		case <-time.After(time.Duration(args[0] * float64(time.Second))):
			return "slept", nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	})
	core.RegisterFunc("faults.len", func(ctx context.Context, c *core.Call) (any, error) {
		var args [][]byte
		if err := c.Args(&args); err != nil || len(args) != 1 {
			return nil, fmt.Errorf("faults.len: want one bytes argument: %v", err)
		}
		return len(args[0]), nil
	})
}

// A plan is the tree the master builds.
type plan struct {
	Method  string         // the connection method under test
	Far     map[string]any // its keywords for the host the faults hit
	Other   map[string]any // its keywords for a host whose link stays up
	Pending int            // calls left waiting in the far context and in its child
	Bound   float64        // seconds: during a fault the rest of the tree is called for at least this long
}

// treePids are the processes of the tree, by role.
type treePids struct {
	Local  int // a local child of the master
	Far    int // the context on the host the faults hit
	FarKid int // a local child of Far
	Other  int // the context on the host whose link stays up
}

// A callEnd is how one call through the far link ended.
type callEnd struct {
	Context string // "far" or "far-kid"
	Sent    string // "before" or "after" the fault
	At      int64  // when it ended, Unix nanoseconds
	Kind    string // error kind ("" when it succeeded)
	Error   string
}

// liveness is how the rest of the tree answered meanwhile.
type liveness struct {
	Answered  int      // calls to the local child and the other host that succeeded
	Failed    []string // their failures
	SlowestMs float64  // the slowest of them
}

// faultReport is what happened to the calls through the far link.
type faultReport struct {
	Calls      []callEnd
	Disconnect string // why the far context was declared gone ("" if it was not)
	liveness
}

// callReport is one call or connection.
type callReport struct {
	Seconds  float64
	Pid      int    // for a connection: the new context's pid
	Kind     string // error kind; "" on success
	Error    string
	OldError string // reconnect: how a call to the old far context failed
	liveness
}

// decodePlan reads a plan from JSON, turning integral numbers into
// int64 as connection keywords want them.
func decodePlan(s string) (*plan, error) {
	d := json.NewDecoder(strings.NewReader(s))
	d.UseNumber()
	var p plan
	if err := d.Decode(&p); err != nil {
		return nil, err
	}
	for _, kw := range []map[string]any{p.Far, p.Other} {
		for k, v := range kw {
			kw[k] = fromJSON(v)
		}
	}
	return &p, nil
}

func fromJSON(v any) any {
	switch v := v.(type) {
	case json.Number:
		if i, err := v.Int64(); err == nil {
			return i
		}
		f, _ := v.Float64()
		return f
	case []any:
		for i := range v {
			v[i] = fromJSON(v[i])
		}
	}
	return v
}

// runMaster is the master role.
func runMaster() int {
	if err := serveTests(); err != nil {
		fmt.Fprintf(os.Stderr, "faults master: %v\n", err)
		return 1
	}
	return 0
}

// A session is the master's tree and the calls waiting in it.
type session struct {
	p   *plan
	ctx context.Context
	r   *core.Router

	local, far, farKid, other *core.Context

	mu    sync.Mutex
	ends  []callEnd
	calls sync.WaitGroup
}

func serveTests() error {
	p, err := decodePlan(os.Getenv(planEnv))
	if err != nil {
		return fmt.Errorf("reading the plan: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	s := &session{p: p, ctx: ctx, r: core.NewMaster(core.Options{})}
	defer s.r.CloseTimeout(5 * time.Second)
	commands := map[string]func(arg string) (any, error){
		"tree":      s.tree,
		"fault":     s.fault,
		"connect":   s.connectFar,
		"call":      s.callFar,
		"reconnect": s.reconnect,
		"bulk":      s.bulk,
		"timed":     s.timed,
	}
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		word, arg, _ := strings.Cut(in.Text(), " ")
		if word == "quit" {
			return nil
		}
		cmd := commands[word]
		if cmd == nil {
			return fmt.Errorf("unknown command %q", in.Text())
		}
		v, err := cmd(arg)
		if err != nil {
			return fmt.Errorf("%s: %v", in.Text(), err)
		}
		data, err := json.Marshal(v)
		if err != nil {
			return err
		}
		fmt.Printf("%s %s\n", word, data)
	}
	return fmt.Errorf("input ended without quit (%v)", in.Err())
}

func (s *session) connect(kw map[string]any, via *core.Context, timeout time.Duration) (*core.Context, error) {
	method := s.p.Method
	if via != nil {
		method = "local"
	}
	return s.r.Connect(s.ctx, method, &core.ConnectOptions{Kwargs: kw, Via: via, ConnectTimeout: timeout})
}

func (s *session) pidOf(c *core.Context) (int, error) {
	ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
	defer cancel()
	var pid int
	err := c.Call(ctx, &pid, "faults.pid")
	return pid, err
}

func (s *session) tree(string) (any, error) {
	var err error
	if s.local, err = s.r.Connect(s.ctx, "local", &core.ConnectOptions{}); err != nil {
		return nil, err
	}
	if s.far, err = s.connect(s.p.Far, nil, 0); err != nil {
		return nil, err
	}
	if s.farKid, err = s.connect(map[string]any{}, s.far, 0); err != nil {
		return nil, err
	}
	if s.other, err = s.connect(s.p.Other, nil, 0); err != nil {
		return nil, err
	}
	var pids treePids
	for _, x := range []struct {
		c   *core.Context
		pid *int
	}{{s.local, &pids.Local}, {s.far, &pids.Far}, {s.farKid, &pids.FarKid}, {s.other, &pids.Other}} {
		if *x.pid, err = s.pidOf(x.c); err != nil {
			return nil, fmt.Errorf("calling %s: %v", x.c.Name(), err)
		}
	}
	if s.p.Pending > 0 {
		for range s.p.Pending {
			if err := s.pending("before"); err != nil {
				return nil, err
			}
		}
		// Let the calls reach the far contexts (the first runs, the
		// others wait behind it in the context's queue).
		time.Sleep(500 * time.Millisecond)
	}
	return pids, nil
}

// pending starts a call into the far context and one into its child
// that end only when their link does: they have no timeout of their
// own. After a fault, a call the router refuses at once (its context is
// known to be gone) ends there.
func (s *session) pending(sent string) error {
	sleep, _ := core.Marshal([]any{3600.0})
	for _, x := range []struct {
		c    *core.Context
		name string
	}{{s.far, "far"}, {s.farKid, "far-kid"}} {
		rv, err := x.c.CallAsync(s.ctx, &core.CallRequest{Func: "faults.sleep", Args: sleep})
		if err != nil && sent == "before" {
			return fmt.Errorf("calling %s: %v", x.c.Name(), err)
		}
		if err != nil { // refused at once: the context is already known gone
			s.mu.Lock()
			s.ends = append(s.ends, callEnd{Context: x.name, Sent: sent, At: time.Now().UnixNano(), Kind: core.KindOf(err), Error: err.Error()})
			s.mu.Unlock()
			continue
		}
		s.calls.Add(1)
		go func() {
			defer s.calls.Done()
			m, err := rv.Get(s.ctx, true)
			if err == nil {
				_, err = core.DecodeCallReply(m)
			}
			e := callEnd{Context: x.name, Sent: sent, At: time.Now().UnixNano()}
			if err != nil {
				e.Kind, e.Error = core.KindOf(err), err.Error()
			}
			s.mu.Lock()
			s.ends = append(s.ends, e)
			s.mu.Unlock()
		}()
	}
	return nil
}

// callRest calls the local child and the other host every 100 ms until
// done is closed, and for at least min.
func (s *session) callRest(done <-chan struct{}, min time.Duration) (l liveness, err error) {
	until := time.Now().Add(min)
	for ended := false; !ended || time.Now().Before(until); {
		for _, c := range []*core.Context{s.local, s.other} {
			start := time.Now()
			if _, err := s.pidOf(c); err != nil {
				l.Failed = append(l.Failed, fmt.Sprintf("%s: %v", c.Name(), err))
			} else {
				l.Answered++
			}
			l.SlowestMs = max(l.SlowestMs, float64(time.Since(start).Microseconds())/1000)
		}
		select {
		case <-done:
			ended, done = true, nil
		case <-time.After(100 * time.Millisecond):
		case <-s.ctx.Done():
			return l, s.ctx.Err()
		}
	}
	return l, nil
}

func (s *session) fault(string) (any, error) {
	if err := s.pending("after"); err != nil {
		return nil, err
	}
	ended := make(chan struct{})
	go func() { s.calls.Wait(); close(ended) }()
	var rep faultReport
	var err error
	if rep.liveness, err = s.callRest(ended, time.Duration(s.p.Bound*float64(time.Second))); err != nil {
		return nil, fmt.Errorf("the calls through the far link never ended: %v", err)
	}
	select {
	case <-s.far.Disconnected():
		rep.Disconnect = s.far.DisconnectReason()
	default:
	}
	s.mu.Lock()
	rep.Calls, s.ends = s.ends, nil
	s.mu.Unlock()
	return rep, nil
}

// run runs fn, calling the rest of the tree meanwhile, and reports how
// long fn took and how it failed.
func (s *session) run(fn func(*callReport) error) (any, error) {
	var rep callReport
	done := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(done)
		if err := fn(&rep); err != nil {
			rep.Kind, rep.Error = core.KindOf(err), err.Error()
		}
		rep.Seconds = time.Since(start).Seconds()
	}()
	var err error
	rep.liveness, err = s.callRest(done, 0)
	return rep, err
}

func (s *session) connectFar(arg string) (any, error) {
	secs, err := strconv.ParseFloat(arg, 64)
	if err != nil {
		return nil, err
	}
	return s.run(func(rep *callReport) error {
		c, err := s.connect(s.p.Far, nil, time.Duration(secs*float64(time.Second)))
		if err == nil {
			rep.Pid, err = s.pidOf(c)
			s.r.Disconnect(c)
		}
		return err
	})
}

func (s *session) callFar(string) (any, error) {
	return s.run(func(rep *callReport) (err error) {
		rep.Pid, err = s.pidOf(s.far)
		return err
	})
}

func (s *session) reconnect(string) (any, error) {
	return s.run(func(rep *callReport) error {
		if _, err := s.pidOf(s.far); err != nil {
			rep.OldError = err.Error()
		}
		c, err := s.connect(s.p.Far, nil, 0)
		if err != nil {
			return err
		}
		s.far = c
		rep.Pid, err = s.pidOf(c)
		return err
	})
}

func (s *session) bulk(arg string) (any, error) {
	n, err := strconv.Atoi(arg)
	if err != nil {
		return nil, err
	}
	data := make([]byte, n)
	rand.Read(data) // incompressible: ssh compresses the stream
	return s.run(func(rep *callReport) error {
		var got int
		if err := s.far.Call(s.ctx, &got, "faults.len", data); err != nil {
			return err
		}
		if got != n {
			return fmt.Errorf("the far context received %d bytes of %d", got, n)
		}
		return nil
	})
}

func (s *session) timed(arg string) (any, error) {
	secs, err := strconv.ParseFloat(arg, 64)
	if err != nil {
		return nil, err
	}
	args, _ := core.Marshal([]any{3600.0})
	return s.run(func(*callReport) error {
		ctx, cancel := context.WithTimeout(s.ctx, time.Duration(secs*float64(time.Second)))
		defer cancel()
		_, err := s.far.CallRaw(ctx, &core.CallRequest{Func: "faults.sleep", Args: args, Timeout: secs})
		return err
	})
}
