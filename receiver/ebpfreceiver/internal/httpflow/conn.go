package httpflow

import (
	"bytes"
	"slices"
)

type state uint8

const (
	stStart       state = iota // at a message boundary
	stHead                     // start line and header fields
	stBody                     // remain bytes of a Content-Length body
	stChunkSize                // hex digits of a chunk-size line
	stChunkExt                 // rest of a chunk-size line
	stChunkSizeLF              // LF ending a chunk-size line
	stChunkData                // remain bytes of chunk data
	stChunkDataCR              // CR after chunk data
	stChunkDataLF              // LF after chunk data
	stTrailer                  // trailer lines after the last chunk
	stUntilClose               // response body delimited by close
	stLost                     // boundaries unknown: look for a start line
)

// ref says which Exchange the current message of a half belongs to.
type ref uint8

const (
	refNone  ref = iota // none: unmatched response, interim response
	refEntry            // a pending entry (request: by seq; response: the front)
)

// half is the parser state of one direction.
type half struct {
	st     state
	buf    []byte // start line and header bytes buffered across syscalls
	scan   int    // bytes of buf already searched for CRLF CRLF
	lineOK bool   // the start line was parsed and recorded
	open   bool   // a message is in progress
	cand   bool   // stLost: buf holds a start line candidate
	candTS uint64 // timestamp of the candidate's first byte
	first  uint64 // timestamp of the current message's first byte
	remain int64  // body or chunk bytes left
	n      int    // chunk-size digits, or bytes in the current trailer line
	tn     int    // chunk extension or trailer bytes so far
	cur    ref
	seq    uint64 // request half: seq of the current request's entry
	// request half
	expectWait bool // Expect: 100-continue, no body byte seen yet
	// response half
	status  int
	interim bool
	method  string // method of the paired request
}

// entry is a request awaiting its response.
type entry struct {
	ex   Exchange
	drop bool // produce no Exchange
}

// Conn is the parser state of one TCP connection. It is not safe for
// concurrent use.
type Conn struct {
	role      Role
	maxPend   int
	maxHeader int
	req, resp half
	q         []entry // pending requests, q[qhead:] in order
	qhead     int
	qseq      uint64 // seq of q[qhead]
	dropTail  int    // requests dropped after the last entry
	requests  uint64 // requests started: the last Exchange.Seq
	httpSeen  bool
	misses    int
	dead      bool
	closed    bool
	stats     Stats
}

// nonHTTPMisses is how many request-direction syscalls without a start line
// make a connection that never showed one non-HTTP.
const nonHTTPMisses = 4

// NewConn returns the parser for one connection.
func NewConn(role Role, opts Options) *Conn {
	c := &Conn{role: role, maxPend: opts.MaxPending, maxHeader: opts.MaxHeaderBytes}
	if c.maxPend <= 0 {
		c.maxPend = DefaultMaxPending
	}
	if c.maxHeader <= 0 {
		c.maxHeader = DefaultMaxHeaderBytes
	}
	return c
}

// Stats returns the connection's counters.
func (c *Conn) Stats() Stats { return c.stats }

// Feed parses one syscall's data: prefix holds its first captured bytes and
// size is how many bytes it moved (len(prefix) <= size). Completed exchanges
// are passed to emit in request order.
func (c *Conn) Feed(dir Dir, ts uint64, prefix []byte, size int, emit func(Exchange)) {
	if c.dead || c.closed || size <= 0 {
		return
	}
	if len(prefix) > size {
		prefix = prefix[:size]
	}
	if emit == nil {
		emit = func(Exchange) {}
	}
	req := (dir == Ingress) == (c.role == Server)
	h := &c.resp
	if req {
		h = &c.req
	}
	off := 0
	for off < size && !c.dead {
		switch h.st {
		case stStart:
			if off < len(prefix) && (prefix[off] == '\r' || prefix[off] == '\n') {
				off++ // empty lines between messages
				continue
			}
			if off >= len(prefix) {
				c.stats.Lost++
				h.st = stLost
				continue
			}
			h.st, h.first, h.lineOK, h.scan = stHead, ts, false, 0
			h.buf = h.buf[:0]
		case stHead:
			off += c.head(h, req, ts, prefix, off, size, emit)
		case stBody, stChunkData:
			n := min(int64(size-off), h.remain)
			off += int(n)
			h.remain -= n
			h.expectWait = false
			c.touch(h, req, ts)
			if h.remain == 0 {
				if h.st == stChunkData {
					h.st = stChunkDataCR
				} else {
					c.end(h, req, emit)
				}
			}
		case stChunkDataCR, stChunkDataLF, stChunkSize, stChunkExt, stChunkSizeLF, stTrailer:
			if off < len(prefix) {
				off += c.chunk(h, req, ts, prefix[off:], emit)
				continue
			}
			c.touch(h, req, ts)
			// Not captured: trust the CRLF after chunk data, but a
			// chunk-size line or trailer cannot be read.
			switch h.st {
			case stChunkDataCR:
				off++
				h.st = stChunkDataLF
			case stChunkDataLF:
				off++
				h.st, h.n, h.remain = stChunkSize, 0, 0
			default:
				c.lose(h)
				c.stats.Lost++
			}
		case stUntilClose:
			c.touch(h, req, ts)
			off = size
		case stLost:
			off = c.lost(h, req, ts, prefix, off, size, emit)
		}
	}
}

// head parses the start line and header section from prefix[off:]. It
// returns how many bytes it consumed.
func (c *Conn) head(h *half, req bool, ts uint64, prefix []byte, off, size int, emit func(Exchange)) int {
	d := prefix[off:]
	more := len(prefix) < size // uncaptured bytes follow d
	old := len(h.buf)
	v := d
	if old > 0 {
		take := min(len(d), c.maxHeader-old)
		h.buf = append(c.grow(h.buf, take), d[:take]...)
		v = h.buf
	}
	v = v[:min(len(v), c.maxHeader)]
	if !h.lineOK {
		n, ok := startLine(v, req)
		if !ok {
			c.stats.ParseErrors++
			h.buf = h.buf[:0]
			h.st = stLost
			return 0
		}
		if n == 0 && !req && more && len(v) >= statusCodeEnd {
			// A status line cut by the capture after its code: enough
			// to tell an interim response and to pair a final one.
			n = len(v)
		}
		if n > 0 {
			c.begin(h, req, v[:n], ts, emit)
			if c.dead {
				return len(d)
			}
		}
	}
	from := max(h.scan-3, 0)
	if i := bytes.Index(v[from:], crlfcrlf); i >= 0 && h.lineOK {
		end := from + i + 4
		c.headerDone(h, req, v, end, ts, emit)
		return end - old
	}
	// The header section goes on past v.
	c.touch(h, req, ts)
	switch {
	case len(v) >= c.maxHeader:
		c.stats.HeaderTooLong++
		c.dropCurrent(h, req, v)
		c.lose(h)
		return len(v) - old
	case more:
		if h.lineOK {
			c.partialFields(h, req, v)
		} else {
			// Start line not captured; its first bytes still show HTTP.
			c.dropCurrent(h, req, v)
			c.httpSeen = c.httpSeen || len(v) >= minCut
		}
		c.stats.Lost++
		c.lose(h)
		return len(d)
	}
	if old == 0 {
		h.buf = c.grow(h.buf, len(v))
		h.buf = append(h.buf, v...)
	}
	h.scan = len(h.buf)
	return len(d)
}

// grow makes room for n more bytes in b without exceeding maxHeader.
func (c *Conn) grow(b []byte, n int) []byte {
	need := len(b) + n
	if need <= cap(b) {
		return b
	}
	nb := make([]byte, len(b), min(max(need, 2*cap(b), 256), c.maxHeader))
	copy(nb, b)
	return nb
}

// begin records a message whose start line was just parsed.
func (c *Conn) begin(h *half, req bool, line []byte, ts uint64, emit func(Exchange)) {
	c.httpSeen = true
	h.lineOK, h.open = true, true
	if req {
		c.beginRequest(h, line, ts, emit)
	} else {
		c.beginResponse(h, parseStatusLine(line), ts, emit)
	}
}

func (c *Conn) beginRequest(h *half, line []byte, ts uint64, emit func(Exchange)) {
	// A new request ends a response whose length was unknown.
	c.endInferred(emit)
	h.cur = refNone
	c.requests++
	if c.dropTail > 0 || c.pending() >= c.maxPend {
		c.dropTail++
		c.stats.Dropped++
		return
	}
	method, target, ver := parseRequestLine(line)
	c.push(h, entry{ex: Exchange{
		Method: method, Target: string(target), Version: ver, Seq: c.requests,
		RequestStart: h.first, RequestEnd: ts,
	}})
}

func (c *Conn) beginResponse(h *half, status int, ts uint64, emit func(Exchange)) {
	h.status, h.method, h.cur = status, "", refNone
	h.interim = status < 200 && status != 101
	if h.interim {
		return
	}
	switch {
	case c.pending() > 0 && c.q[c.qhead].ex.RequestStart <= h.first:
		e := &c.q[c.qhead]
		e.ex.Status, e.ex.ResponseStart, e.ex.ResponseEnd = status, h.first, ts
		h.method, h.cur = e.ex.Method, refEntry
	case c.pending() == 0 && c.dropTail > 0:
		c.dropTail--
	default:
		// No request, or it started after this response did.
		c.stats.Unmatched++
	}
	if status == 101 || (h.method == "CONNECT" && status/100 == 2) {
		// The connection now carries another protocol.
		c.endResponse(nil, emit)
		c.stop()
	}
}

// headerDone handles a complete header section v[:end].
func (c *Conn) headerDone(h *half, req bool, v []byte, end int, ts uint64, emit func(Exchange)) {
	f := parseFields(v[bytes.Index(v, crlf)+2 : end])
	if req {
		c.setFields(h, f)
	}
	h.buf, h.scan = h.buf[:0], 0
	c.touch(h, req, ts)
	if req {
		switch {
		case f.te && !f.chunked, f.badLength:
			c.stats.ParseErrors++
			c.lose(h)
		case f.te:
			h.st, h.n, h.remain = stChunkSize, 0, 0
			h.expectWait = f.expect
		case f.length > 0:
			h.st, h.remain = stBody, f.length
			h.expectWait = f.expect
		default:
			c.end(h, req, emit)
		}
		return
	}
	switch {
	case h.interim:
		h.st, h.open = stStart, false
	case h.method == "HEAD" || h.status == 204 || h.status == 304:
		c.end(h, req, emit)
	case f.te && f.chunked:
		h.st, h.n, h.remain = stChunkSize, 0, 0
	case f.te:
		h.st = stUntilClose
	case f.badLength:
		c.stats.ParseErrors++
		c.lose(h)
	case f.length == 0:
		c.end(h, req, emit)
	case f.length > 0:
		h.st, h.remain = stBody, f.length
	default:
		h.st = stUntilClose
	}
}

// setFields stores the kept header values in the current request's entry.
func (c *Conn) setFields(h *half, f fields) {
	e := c.entry(h)
	if e == nil {
		return
	}
	if f.traceParents == 1 && e.ex.TraceParent == "" && validTraceParent(f.traceParent) {
		e.ex.TraceParent = string(f.traceParent)
	}
	if f.otlpType && e.ex.Method == "POST" && slices.Contains(otlpPaths, e.ex.Path()) {
		e.ex.OTLPExport = true
	}
}

// partialFields reads the kept headers from the complete lines of a header
// section cut short.
func (c *Conn) partialFields(h *half, req bool, v []byte) {
	if req {
		c.setFields(h, parseFields(v[bytes.Index(v, crlf)+2:]))
	}
}

// chunk parses chunked framing bytes from d. It returns how many it consumed.
func (c *Conn) chunk(h *half, req bool, ts uint64, d []byte, emit func(Exchange)) int {
	c.touch(h, req, ts)
	h.expectWait = false
	for i, b := range d {
		switch h.st {
		case stChunkSize:
			if v := unhex(b); v >= 0 {
				if h.n == 15 {
					return c.chunkError(h, req, i)
				}
				h.remain = h.remain<<4 | v
				h.n++
				continue
			}
			switch {
			case h.n == 0:
				return c.chunkError(h, req, i)
			case b == ';' || b == ' ' || b == '\t':
				h.st, h.tn = stChunkExt, 0
			case b == '\r':
				h.st = stChunkSizeLF
			default:
				return c.chunkError(h, req, i)
			}
		case stChunkExt:
			h.tn++
			switch {
			case b == '\r':
				h.st = stChunkSizeLF
			case h.tn > c.maxHeader || (b < ' ' && b != '\t'):
				return c.chunkError(h, req, i)
			}
		case stChunkSizeLF:
			if b != '\n' {
				return c.chunkError(h, req, i)
			}
			if h.remain == 0 {
				h.st, h.n, h.tn = stTrailer, 0, 0
				continue
			}
			h.st = stChunkData
			return i + 1
		case stChunkDataCR:
			if b != '\r' {
				return c.chunkError(h, req, i)
			}
			h.st = stChunkDataLF
		case stChunkDataLF:
			if b != '\n' {
				return c.chunkError(h, req, i)
			}
			h.st, h.n, h.remain = stChunkSize, 0, 0
		case stTrailer:
			h.tn++
			switch {
			case h.tn > c.maxHeader:
				return c.chunkError(h, req, i)
			case b == '\n' && h.n == 0:
				c.end(h, req, emit)
				return i + 1
			case b == '\n':
				h.n = 0
			case b != '\r':
				h.n++
			}
		default:
			return i
		}
	}
	return len(d)
}

func (c *Conn) chunkError(h *half, req bool, i int) int {
	c.stats.ParseErrors++
	c.lose(h)
	return i
}

// lose makes h look for the next start line; an open message stays open and
// is marked Partial.
func (c *Conn) lose(h *half) {
	h.st, h.cand, h.expectWait = stLost, false, false
	h.buf, h.scan = h.buf[:0], 0
	if e := c.entry(h); e != nil {
		e.ex.Partial = true
	}
}

// minCut is how many captured bytes of a start line cut by the capture make
// a message start while a direction is resynchronising.
const minCut = len("HTTP/1.1")

// lost looks for a start line in prefix[off:] at the start of the syscall or
// just after an LF. It returns where a message starts, or size.
func (c *Conn) lost(h *half, req bool, ts uint64, prefix []byte, off, size int, emit func(Exchange)) int {
	if h.cand {
		// A candidate from the end of the last syscall: does it go on here?
		h.cand = false
		old := len(h.buf)
		take := min(len(prefix)-off, c.maxHeader-old)
		h.buf = append(c.grow(h.buf, take), prefix[off:off+take]...)
		n, ok := startLine(h.buf, req)
		h.buf = h.buf[:old]
		switch {
		case ok && (n > 0 || (len(prefix) < size && old+take >= minCut)):
			c.endLost(h, emit)
			h.st, h.first, h.lineOK, h.scan = stHead, h.candTS, false, 0
			return off
		case ok && off+take == size && old+take < c.maxHeader:
			h.buf = h.buf[:old+take]
			h.cand = true
			return size
		}
		h.buf = h.buf[:0]
		c.touch(h, req, h.candTS)
	}
	for q := off; q < len(prefix); {
		if q == 0 || prefix[q-1] == '\n' {
			n, ok := startLine(prefix[q:], req)
			// A start line cut by the capture counts only at the start
			// of the syscall.
			cut := q == 0 && len(prefix) < size && len(prefix) >= minCut
			if ok && (n > 0 || cut) {
				if q > off {
					c.touch(h, req, ts)
				}
				c.endLost(h, emit)
				h.st, h.first, h.lineOK, h.scan = stHead, ts, false, 0
				h.buf = h.buf[:0]
				return q
			}
			if ok && len(prefix) == size && len(prefix)-q < c.maxHeader {
				if q > off {
					c.touch(h, req, ts)
				}
				h.buf = c.grow(h.buf[:0], len(prefix)-q)
				h.buf = append(h.buf, prefix[q:]...)
				h.cand, h.candTS = true, ts
				return size
			}
		}
		i := bytes.IndexByte(prefix[q:], '\n')
		if i < 0 {
			break
		}
		q += i + 1
	}
	c.touch(h, req, ts)
	if req && !c.httpSeen {
		c.misses++
		if c.misses >= nonHTTPMisses {
			c.stats.NonHTTP = 1
			c.stop()
		}
	}
	return size
}

// endLost ends the message that lost sync on h, if any.
func (c *Conn) endLost(h *half, emit func(Exchange)) {
	if !h.open {
		return
	}
	if h == &c.resp {
		c.endResponse(nil, emit)
		return
	}
	h.open, h.cur = false, refNone
}

// end ends the current message of h at a known boundary.
func (c *Conn) end(h *half, req bool, emit func(Exchange)) {
	if !req && h.cur == refEntry {
		c.endResponse(nil, emit)
	}
	c.endMessage(h)
}

func (c *Conn) endMessage(h *half) {
	h.st, h.open, h.cur, h.expectWait = stStart, false, refNone, false
}

// endResponse emits the front entry for the response half's current message.
func (c *Conn) endResponse(err error, emit func(Exchange)) {
	r := &c.resp
	if r.cur == refEntry {
		if q := &c.req; q.expectWait && q.cur == refEntry && q.seq == c.qseq {
			// A final answer to Expect: 100-continue before any body
			// byte: the client may send the body or skip it, so look
			// for its next request.
			q.st, q.open, q.cur, q.expectWait = stLost, false, refNone, false
		}
		e := &c.q[c.qhead]
		if !e.drop {
			if err != nil {
				e.ex.Err = err
			}
			c.stats.Exchanges++
			emit(e.ex)
		}
		c.pop()
	}
	r.open, r.cur = false, refNone
}

// dropCurrent makes the current message produce no Exchange, keeping a
// placeholder so that responses stay paired. v holds its first bytes.
func (c *Conn) dropCurrent(h *half, req bool, v []byte) {
	if e := c.entry(h); e != nil {
		if !e.drop {
			c.stats.Dropped++
		}
		e.drop = true
		return
	}
	if req && !h.lineOK {
		// Unparsed start line: a placeholder request.
		if c.dropTail > 0 || c.pending() >= c.maxPend {
			c.dropTail++
		} else {
			// Keep the method if it was captured: a HEAD response has no body.
			var method string
			if sp := bytes.IndexByte(v[:min(len(v), maxMethodLen+1)], ' '); sp > 0 {
				method = methodOf(v[:sp])
			}
			c.push(h, entry{drop: true, ex: Exchange{Method: method, RequestStart: h.first}})
		}
		c.stats.Dropped++
		h.open = true
		return
	}
	if !req && !h.lineOK && c.pending() > 0 && c.q[c.qhead].ex.RequestStart <= h.first {
		// Unparsed status line: the front request gets no Exchange.
		e := &c.q[c.qhead]
		if !e.drop {
			c.stats.Dropped++
		}
		e.drop = true
		h.cur, h.open = refEntry, true
	}
}

// entry returns the pending entry of h's current message, or nil.
func (c *Conn) entry(h *half) *entry {
	if h.cur != refEntry || c.pending() == 0 {
		return nil
	}
	if h == &c.resp {
		return &c.q[c.qhead]
	}
	if h.seq < c.qseq {
		return nil
	}
	i := c.qhead + int(h.seq-c.qseq)
	if i >= len(c.q) {
		return nil
	}
	return &c.q[i]
}

// touch records ts as the latest byte of h's current message.
func (c *Conn) touch(h *half, req bool, ts uint64) {
	if e := c.entry(h); e != nil {
		if req {
			e.ex.RequestEnd = ts
		} else {
			e.ex.ResponseEnd = ts
		}
	}
}

func (c *Conn) pending() int { return len(c.q) - c.qhead }

// AwaitingResponse reports whether response bytes now would be read in
// turn: a request waits for its response, a response is being read, or
// the connection is no longer parsed. When it is false, response bytes
// answer no request seen yet.
func (c *Conn) AwaitingResponse() bool {
	return c.dead || c.closed || c.pending() > 0 || c.dropTail > 0 || c.resp.st != stStart
}

// push queues e as the request half's current message.
func (c *Conn) push(h *half, e entry) {
	if len(c.q) == cap(c.q) && c.qhead > 0 {
		n := copy(c.q, c.q[c.qhead:])
		clear(c.q[n:])
		c.q, c.qhead = c.q[:n], 0
	}
	c.q = append(c.q, e)
	h.cur, h.seq = refEntry, c.qseq+uint64(c.pending()-1)
}

func (c *Conn) pop() {
	c.q[c.qhead] = entry{}
	c.qhead++
	c.qseq++
	if c.qhead == len(c.q) {
		c.q, c.qhead = c.q[:0], 0
	}
}

// stop ends parsing of the connection.
func (c *Conn) stop() {
	c.dead = true
	c.req.buf, c.resp.buf = nil, nil
}

// endInferred ends a response whose end is known only by inference.
func (c *Conn) endInferred(emit func(Exchange)) {
	if r := &c.resp; r.open && (r.st == stLost || r.st == stUntilClose) {
		c.endResponse(nil, emit)
		r.st = stLost
	}
}

// Flush emits a response whose end can only be inferred (its framing was
// not captured, or it is delimited by close) as the next request would.
// Call it when the connection has been idle for a while; bytes of that
// response that still follow are skipped.
func (c *Conn) Flush(emit func(Exchange)) {
	if c.closed || c.dead {
		return
	}
	if emit == nil {
		emit = func(Exchange) {}
	}
	c.endInferred(emit)
}

// Close ends the connection at ts: a response delimited by close or whose
// end was lost completes, and every unanswered request is emitted with Err
// ErrClosed. Later calls do nothing.
func (c *Conn) Close(ts uint64, emit func(Exchange)) {
	if c.closed {
		return
	}
	c.closed = true
	if emit == nil {
		emit = func(Exchange) {}
	}
	if r := &c.resp; r.open && r.cur == refEntry {
		if r.st == stLost || r.st == stUntilClose {
			c.endResponse(nil, emit)
		} else {
			c.q[c.qhead].ex.ResponseEnd = ts
			c.endResponse(ErrClosed, emit)
		}
	}
	for c.pending() > 0 {
		if e := &c.q[c.qhead]; !e.drop {
			e.ex.Err, e.ex.ResponseEnd = ErrClosed, ts
			c.stats.Exchanges++
			emit(e.ex)
		}
		c.pop()
	}
	c.q = nil
	c.req.buf, c.resp.buf = nil, nil
}
