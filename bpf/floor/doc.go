// Package floor loads the floor programs of make bench-system: empty
// tp_btf programs on exactly the receiver's hooks (level 1), and the same
// hooks where each data-carrying send and recv submits one 64-byte ring
// buffer record with batched wakeups (level 2). They measure what the hooks
// cost before the receiver does any work of its own.
package floor
