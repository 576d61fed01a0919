//go:build !race

package files

// bigChainRSSLimit is TestBigViaChain's bound on each process's peak RSS
// (12–15 MiB measured without the race detector).
const bigChainRSSLimit = 64 << 20
