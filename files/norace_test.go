//go:build !race

package files

// bigChainRSSLimit is TestBigViaChain's bound on each process's peak RSS:
// a fraction of the 256 MiB transferred, so a hop that buffered it fails.
const bigChainRSSLimit = 64 << 20
