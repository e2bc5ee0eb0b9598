// Package growstack grows a goroutine's stack once, where it is still
// shallow, ahead of a call path known to need more than the stack a new
// goroutine starts with.
//
// The runtime starts a goroutine with a small stack (the average of the
// stacks it scanned at the last collections: 8 KiB in the proxy under
// load, going by the depth at which a profile saw it grow) and, when a
// call needs more, allocates one twice the size and copies the old one
// over, adjusting every frame on it (copystack, adjustframe: a table
// lookup per frame). The proxy's request path reaches
// about 8 KiB deep (net/http's connection loop, goproxy, the upstream
// client, crypto/tls reading the answer), so every new client connection
// paid that copy deep in the path, with some 25 frames to adjust: about 6 %
// of the proxy's CPU in the bench's `close` scenario (issue 28). Grown at
// the handler's entry, the copy has three frames to move.
package growstack

// Size is the frame Grow puts on the stack: with what is below it, more
// than a starting stack of 8 KiB holds, so that the runtime moves the
// goroutine to 16 KiB, which the request path fits in.
const Size = 8 << 10

// Grow makes sure the calling goroutine's stack has room for a Size-byte
// frame on top of what it holds now, growing it (one copy) if it has not.
// A goroutine whose stack is large enough already pays for clearing the
// frame only: some tens of nanoseconds.
func Grow() { _ = grow() }

// grow holds the frame. The read at an index the compiler cannot know
// keeps the array, and the call cannot be inlined away.
//
//go:noinline
func grow() byte {
	var frame [Size]byte
	return frame[index]
}

// index is never anything but zero; only read, so that any number of
// goroutines may grow at once.
var index int
