// Package soak holds mitostar's soak test: a tree that takes a long
// run of calls, pipelined calls, connects and shutdowns, and file
// transfers, with its processes' descriptors, goroutines, threads and
// memory sampled as the work goes on (make soak runs the full version).
package soak
