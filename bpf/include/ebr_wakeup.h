/* Batched ring buffer wakeups, shared by the programs that stream records.
 * Our own header, not vendored: see bpf/include/update.sh for those. */
#ifndef __EBR_WAKEUP_H__
#define __EBR_WAKEUP_H__

/* Waking the reader per record costs microseconds per record (README,
 * "Performance"), so records are submitted without a wakeup unless at
 * least watermark bytes wait, or no wakeup was sent for interval_ns. A
 * record after a quiet spell thus wakes the reader at once, a busy ring
 * wakes it at most once per interval_ns or per watermark, and an idle ring
 * never does. What arrives after the last wakeup of a burst waits for the
 * reader's deadline. *last_ns is shared by all CPUs: a race sends an extra
 * wakeup, never loses one. */
static __always_inline __u64 ebr_wakeup_flags(void *ringbuf, __u64 watermark, __u64 interval_ns,
					      __u64 *last_ns)
{
	__u64 now = bpf_ktime_get_ns();
	if (now - *last_ns >= interval_ns || bpf_ringbuf_query(ringbuf, BPF_RB_AVAIL_DATA) >= watermark) {
		*last_ns = now;
		return BPF_RB_FORCE_WAKEUP;
	}
	return BPF_RB_NO_WAKEUP;
}

#endif
