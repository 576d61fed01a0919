// Package core implements mitostar's message tree: processes (contexts)
// that exchange framed, routed messages, as Mitogen's mitogen.core and
// mitogen.parent do.
//
// The master is context 0. It starts children with [Router.Connect]; a
// child is this same executable re-executed in the "child" role (so
// main, and TestMain in packages whose tests start children, must call
// [RunRole] first). A child can start children of its own, and
// ConnectOptions.Via makes a connection through any context of the tree,
// to any depth. Every context has a [Router] that owns its streams, routes
// frames by destination id, checks each inbound frame's auth_id and
// src_id against the stream it arrived on, and delivers frames for its
// own id to the handler registered for their handle.
//
// On top of the router:
//
//   - [Context] is a handle on one context: Send, SendAsync, SendAwait,
//     Call of a function registered with [RegisterFunc], Shutdown.
//   - [Receiver], [Sender], [Latch] and [Select] are Mitogen's channels.
//   - Failures are typed: [ChannelError] (a dead message: disconnect, no
//     route, refused by policy, ...), [StreamError], [TimeoutError],
//     [LatchError] and [RemoteError] for errors raised in another context.
//
// Every blocking call takes a context.Context first. The wire protocol —
// frames, the handshake, reserved handles, dead messages and security
// checks — is in protocol.go and docs/protocol.md.
package core
