// Package poll is test support, imported only by _test.go files: it waits
// for a condition by polling it until a deadline, the one way tests here
// synchronise with goroutines, reloads and servers they do not control
// (never a bare sleep, never a loop without a deadline).
package poll
