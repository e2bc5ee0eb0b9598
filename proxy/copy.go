package proxy

import (
	"io"
	"sync"
)

// Copying response bodies to the client. A TLS connection yields at most
// one record (16 KiB) per Read, so a plain io.Copy writes a large body to
// the client in 16 KiB pieces: 64 write system calls per MiB, which is
// most of the proxy's CPU on big downloads (profile of bench/compare's big
// scenario). When the upstream declared a large Content-Length, the
// rest of the body is known to be coming, so the proxy fills a 64 KiB
// buffer before each write. Bodies of unknown length (chunked, streamed
// events) are written as they arrive: waiting for more could hold an event
// back.

const (
	copyBufSize     = 64 << 10
	coalesceMinSize = copyBufSize // smaller bodies fit one write anyway
)

var copyBufPool = sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}

// bodyCopier is a response body that copies itself to the client.
type bodyCopier struct {
	io.Reader      // reads the upstream body (aborting on failure, see abortingBody)
	coalesce  bool // fill the buffer before each write: a large body of known length
}

// WriteTo implements io.WriterTo, which io.Copy (and so goproxy) prefers.
func (c bodyCopier) WriteTo(w io.Writer) (int64, error) {
	bp := copyBufPool.Get().(*[]byte)
	defer copyBufPool.Put(bp)
	buf := *bp
	var total int64
	for {
		n, rerr := c.Read(buf)
		if c.coalesce {
			for rerr == nil && n < len(buf) {
				var m int
				m, rerr = c.Read(buf[n:])
				n += m
			}
		}
		if n > 0 {
			m, werr := w.Write(buf[:n])
			total += int64(m)
			if werr != nil {
				return total, werr
			}
		}
		if rerr == io.EOF {
			return total, nil
		}
		if rerr != nil {
			return total, rerr
		}
	}
}
