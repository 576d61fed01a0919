// Package tests holds mitostar's end-to-end tests: the Starlark suite in
// star/*.star (run by TestStar with an assert module registered as Go
// builtins, so it works in child contexts too) and the runnable examples
// of scripts/examples (TestExamples).
package tests
