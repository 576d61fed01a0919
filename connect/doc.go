// Package connect implements mitostar's connection methods: ssh, sudo,
// su and doas through the system's own programs, and the shell stub
// that bootstraps a child on a target that has nothing but a POSIX sh.
//
// Every method runs a command whose stdin and stdout reach `sh -c STUB`
// at the far end (see Stub). The stub looks for the master's binary in
// a per-user cache under its sha256 and execs it at once when it is
// there; otherwise it asks the master for it, verifies it and writes it
// atomically so that the next connection ships nothing. Bootstrap runs
// the master's side of that exchange; StartCommand starts a command and
// runs it, answering password and host key prompts on the way.
//
// The methods register themselves with core.RegisterMethod, so importing
// this package makes them available to core.Router.Connect in every
// context of the binary, which is what via= chains need.
package connect
