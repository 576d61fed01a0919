//go:build race

package files

// bigChainRSSLimit is TestBigViaChain's bound on each process's peak RSS.
// The race detector's shadow memory and slower collections need more
// room than a normal build; buffering the 256 MiB transfer would still
// exceed this bound.
const bigChainRSSLimit = 128 << 20
