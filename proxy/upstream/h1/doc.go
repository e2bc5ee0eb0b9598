// Package h1 is the upstream client's HTTP/1.1 fast path.
//
// net/http's Transport drives every HTTP/1.1 connection with two goroutines
// of its own, a writer and a reader, and hands each request and response
// between them and the caller over channels. For a sidecar forwarding small
// API calls those hand-offs (each one a goroutine wake-up, often on another
// core) cost more than the proxy's own work: profiles of bench/compare's c1
// and c64 scenarios put most of the proxy's CPU in the scheduler and futex
// calls around them. A request without a body, or with a small one of
// known length (a payment's JSON), needs no concurrent writer: the fast
// path writes it and then reads the answer in the caller's goroutine, on a
// connection of its own pool. The upstream client decides which requests
// take it (Takes); net/http's Transport has the rest. The fast path reports
// its connection and the first byte of each answer through the request's
// httptrace.ClientTrace, as the Transport does.
package h1
