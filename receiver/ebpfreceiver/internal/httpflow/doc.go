// Package httpflow rebuilds HTTP/1.0 and HTTP/1.1 request/response exchanges
// from what eBPF captures on a TCP connection: for each read- or write-like
// syscall, a bounded prefix of its bytes, its full byte count, a kernel
// timestamp and a direction.
//
// The parser is hand-written and incremental. net/http.ReadRequest and
// ReadResponse need the whole byte stream, while here a syscall delivers only
// a prefix of its bytes, a message may be split at any byte across syscalls,
// and bodies must be skipped by length, never kept. Memory per connection is
// bounded by Options; only Target and TraceParent are copied out.
//
// Rules for ambiguous input:
//
//   - Start lines are strict: a known method, SP, a request-target of visible
//     ASCII, SP, HTTP/1.0 or HTTP/1.1, CRLF; or HTTP/1.x, SP, a status code
//     100-599, optional SP and reason, CRLF. Header sections end at CRLF CRLF.
//     Anything else where a message must start is a parse error.
//   - A header section cut by the end of the captured bytes still yields an
//     Exchange if its start line was captured: Partial is set,
//     TraceParent comes from the complete header lines captured, and the
//     direction resynchronises because the message length is unknown. A
//     status line cut after its code counts as complete; any other start
//     line cut by the capture yields no Exchange (Stats.Dropped), and a
//     placeholder keeps the responses paired. Captures shorter than 12 bytes
//     cannot tell interim responses from final ones.
//   - Resynchronisation: when a direction loses track of message boundaries
//     (a parse error, or a header end or chunk-size line in uncaptured bytes;
//     the CRLF after chunk data is trusted), the next message is looked for
//     only at the start of a syscall's data or just after an LF, and only a
//     complete strict start line is accepted (one that reaches the end of a
//     fully captured syscall may complete in the next; at the start of a
//     syscall, 8 captured bytes of one cut by the capture do). Bytes before it
//     belong to the message that lost sync and extend its end timestamp.
//     Such a response also ends when the next request starts on the other
//     direction, which is right unless the client pipelines, at Flush, or at
//     Close.
//   - A header section longer than MaxHeaderBytes yields no Exchange: it is
//     counted in Stats.HeaderTooLong and Stats.Dropped, a placeholder keeps
//     the responses paired in order, and the direction resynchronises.
//   - A response with neither Content-Length nor Transfer-Encoding: chunked
//     (the HTTP/1.0 style) ends at Close, or earlier at the next request or
//     at Flush, with no Err. HEAD requests and 1xx, 204 and 304 responses
//     have no body, whatever Content-Length says.
//   - 1xx responses other than 101 are skipped; ResponseStart is the first
//     byte of the final response. After a 101, or a 2xx answer to CONNECT,
//     the exchange is emitted and the connection is no longer parsed.
//   - A final response to a request with Expect: 100-continue that arrives
//     before any body byte makes the request direction resynchronise: the
//     client may send the body or go on with its next request.
//   - Responses pair with requests in order. A response that started before
//     the oldest pending request did, or with none pending, is counted in
//     Stats.Unmatched. A pipelined message hidden entirely in uncaptured
//     bytes cannot be counted, so pairing may be off until the pending
//     requests drain; without pipelining every message starts a syscall and
//     is seen.
//   - Close gives every unanswered request an Exchange with Err ErrClosed
//     and ResponseEnd set to the close timestamp.
//   - A connection on which no start line (or 8-byte start of one) has been
//     seen is judged non-HTTP after four request-direction syscalls without
//     one, and is no longer parsed.
//
// Feed must be called in the order the syscalls happened, across both
// directions. A Conn is not safe for concurrent use.
package httpflow
