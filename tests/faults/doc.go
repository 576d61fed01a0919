// Package faults holds mitostar's fault tests: a tree whose links,
// processes and hosts fail while calls are in flight, run for every
// transport in one table, with the fault injection of internal/testbed
// (docs/faults.md).
package faults
