package core

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// AllowAny is a Policy accepting every message, for service methods any
// context may call (Mitogen's AllowAny).
var AllowAny Policy = func(*Message) bool { return true }

// A ServiceMethod is one exposed method of a Service.
type ServiceMethod struct {
	// Fn serves the call; kwargs holds the CBOR map of keyword arguments.
	Fn func(ctx context.Context, call *ServiceCall) (any, error)
	// Policy decides who may call it; nil means parent authority only.
	Policy Policy
}

// A Service is a named set of methods served by a bounded pool of
// workers, like Mitogen's mitogen.service.
type Service struct {
	Name    string
	Methods map[string]ServiceMethod
	// Workers bounds how many calls run at once (default 4).
	Workers int
	// MaxQueue bounds the calls waiting for a worker (default 1000);
	// calls beyond it fail at once with CallError "service ... is busy".
	// Their payloads are bounded too, to serviceQueueBytes.
	MaxQueue int
}

// serviceQueueBytes bounds the payload bytes of the calls waiting for a
// service's workers.
const serviceQueueBytes = 64 << 20

// A ServiceCall is one CALL_SERVICE request being served.
type ServiceCall struct {
	Router  *Router
	Msg     *Message
	Request *serviceRequest
}

// Caller is the context that sent the call.
func (c *ServiceCall) Caller() *Context { return c.Router.ContextByID(c.Msg.SrcID) }

// Kwargs decodes the keyword arguments into v.
func (c *ServiceCall) Kwargs(v any) error {
	if len(c.Request.Kwargs) == 0 {
		return nil
	}
	return Unmarshal(c.Request.Kwargs, v)
}

type serviceState struct {
	svc   *Service
	mu    sync.Mutex
	queue []*serviceJob
	bytes int // payload bytes in queue
	busy  int
}

type serviceJob struct {
	m      *Message
	req    *serviceRequest
	method ServiceMethod
}

type serviceTable struct {
	mu       sync.Mutex
	services map[string]*serviceState
}

func newServiceTable() *serviceTable { return &serviceTable{services: map[string]*serviceState{}} }

// RegisterService makes svc callable with CALL_SERVICE in this context.
// The router keeps its own copy of svc.
func (r *Router) RegisterService(svc *Service) error {
	if svc == nil || svc.Name == "" {
		return errors.New("service needs a name")
	}
	if len(svc.Methods) == 0 {
		return fmt.Errorf("service %q has no methods", svc.Name)
	}
	for name, m := range svc.Methods {
		if m.Fn == nil {
			return fmt.Errorf("service %q: method %q has no function", svc.Name, name)
		}
	}
	cp := *svc
	cp.Methods = make(map[string]ServiceMethod, len(svc.Methods))
	for name, m := range svc.Methods {
		cp.Methods[name] = m
	}
	svc = &cp
	if svc.Workers <= 0 {
		svc.Workers = 4
	}
	if svc.MaxQueue <= 0 {
		svc.MaxQueue = 1000
	}
	r.services.mu.Lock()
	defer r.services.mu.Unlock()
	if _, dup := r.services.services[svc.Name]; dup {
		return fmt.Errorf("service %q is already registered", svc.Name)
	}
	r.services.services[svc.Name] = &serviceState{svc: svc}
	return nil
}

func (r *Router) onCallService(m *Message) {
	if m.IsDead() {
		return
	}
	var req serviceRequest
	fail := func(kind, text string) {
		if m.ReplyTo == 0 {
			return
		}
		data := encodeCallReply(nil, &RemoteError{Kind: kind, Message: text, Context: r.name})
		r.routeNoWait(&Message{DstID: m.SrcID, Handle: m.ReplyTo, Data: data}, controlReserve)
	}
	if err := m.Decode(&req); err != nil {
		fail("Error", "bad service request: "+err.Error())
		return
	}
	r.services.mu.Lock()
	st := r.services.services[req.Service]
	r.services.mu.Unlock()
	if st == nil {
		fail(CallError, fmt.Sprintf("no service named %q in %s", req.Service, r.name))
		return
	}
	method, ok := st.svc.Methods[req.Method]
	if !ok {
		fail(CallError, fmt.Sprintf("service %q has no method %q", req.Service, req.Method))
		return
	}
	policy := method.Policy
	if policy == nil {
		policy = r.HasParentAuthority
	}
	if !policy(m) {
		r.warnf("refused a call of service %s.%s from %s: %s", req.Service, req.Method, r.nameOf(m.SrcID), msgRefused)
		r.sendDead(m, msgRefused)
		return
	}
	st.mu.Lock()
	if len(st.queue) >= st.svc.MaxQueue {
		st.mu.Unlock()
		fail(CallError, fmt.Sprintf("service %q is busy: %d calls are waiting", req.Service, st.svc.MaxQueue))
		return
	}
	if st.bytes > 0 && st.bytes+len(m.Data) > serviceQueueBytes {
		n := st.bytes
		st.mu.Unlock()
		fail(CallError, fmt.Sprintf("service %q is busy: %d bytes of calls are waiting", req.Service, n))
		return
	}
	st.bytes += len(m.Data)
	st.queue = append(st.queue, &serviceJob{m: m, req: &req, method: method})
	spawn := st.busy < st.svc.Workers
	if spawn {
		st.busy++
	}
	st.mu.Unlock()
	if spawn {
		r.Go(func() { r.serviceWorker(st) })
	}
}

func (r *Router) serviceWorker(st *serviceState) {
	for {
		st.mu.Lock()
		if len(st.queue) == 0 || r.ctx.Err() != nil {
			pending := st.queue
			st.queue, st.bytes = nil, 0
			st.busy--
			st.mu.Unlock()
			for _, job := range pending {
				r.sendDead(job.m, msgRouterClosed)
			}
			return
		}
		job := st.queue[0]
		st.queue = st.queue[1:]
		st.bytes -= len(job.m.Data)
		st.mu.Unlock()
		var value []byte
		var rerr *RemoteError
		v, err := func() (v any, err error) {
			defer func() {
				if p := recover(); p != nil {
					err = fmt.Errorf("panic in service %s.%s: %v", job.req.Service, job.req.Method, p)
				}
			}()
			return job.method.Fn(r.ctx, &ServiceCall{Router: r, Msg: job.m, Request: job.req})
		}()
		if err == nil {
			value, err = Marshal(v)
		}
		if err != nil {
			rerr = AsRemote(err, r.name)
			if rerr.Kind == "Error" {
				rerr.Kind = CallError
			}
		}
		data := encodeCallReply(value, rerr)
		if max := r.MaxMessageSize(); len(data) > max {
			r.sendDead(job.m, fmt.Sprintf(msgTooLarge, max))
			continue
		}
		if err := job.m.ReplyRaw(r.ctx, data); err != nil {
			r.log.Debug("service reply not sent", "service", job.req.Service, "method", job.req.Method, "err", err)
		}
	}
}

// CallService calls method of service in c with keyword arguments kwargs
// and decodes the result into out (which may be nil).
func (c *Context) CallService(ctx context.Context, out any, service, method string, kwargs map[string]any) error {
	kw, err := Marshal(kwargs)
	if err != nil {
		return err
	}
	val, err := c.CallServiceRaw(ctx, service, method, kw)
	if err != nil || out == nil {
		return err
	}
	return Unmarshal(val, out)
}

// CallServiceRaw calls method of service in c with kwargs, the CBOR of
// its keyword arguments as the service decodes them, and returns the CBOR
// of the result.
func (c *Context) CallServiceRaw(ctx context.Context, service, method string, kwargs []byte) ([]byte, error) {
	data, err := Marshal(&serviceRequest{Service: service, Method: method, Kwargs: kwargs})
	if err != nil {
		return nil, err
	}
	m, err := c.SendAwait(ctx, &Message{Handle: handleCallService, Data: data})
	if err != nil {
		return nil, err
	}
	return DecodeCallReply(m)
}
