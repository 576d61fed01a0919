//go:build race

package files

// bigChainRSSLimit is TestBigViaChain's bound on each process's peak RSS.
// The race detector's shadow memory and slower collections put a process
// at 46–53 MiB on its own and 75 MiB once under a loaded machine's
// parallel test run; buffering the 256 MiB transfer would still exceed
// this bound.
const bigChainRSSLimit = 128 << 20
