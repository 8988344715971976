/* Counters, series maps and histograms, shared by the receiver's programs.
 * Our own header, not vendored: see bpf/include/update.sh for those. */
#ifndef __EBR_MAPS_H__
#define __EBR_MAPS_H__

#define EEXIST 17 /* vmlinux.h has no errno values */

/* Latency histograms count microseconds in power-of-two buckets: bucket 0
 * holds [0, 2) µs, bucket i [2^i, 2^(i+1)) µs, and the last one everything
 * from 2^(EBR_BUCKETS-1) µs (8.4 s) up. The Go side reads the count from
 * the length of the generated arrays; its bounds are checked against it
 * (receiver/ebpfreceiver/histogram_test.go). */
#define EBR_BUCKETS 24

static __always_inline __u32 ebr_bucket(__u64 us)
{
	__u32 v = us > 0xffffffff ? 0xffffffff : us;
	__u32 r = 0;
	if (v >= 1 << 16) { v >>= 16; r += 16; }
	if (v >= 1 << 8) { v >>= 8; r += 8; }
	if (v >= 1 << 4) { v >>= 4; r += 4; }
	if (v >= 1 << 2) { v >>= 2; r += 2; }
	if (v >= 1 << 1) { r += 1; }
	return r < EBR_BUCKETS ? r : EBR_BUCKETS - 1;
}

/* Adds one to counter in counters, a per-CPU array of __u64. */
static __always_inline void ebr_count(void *counters, __u32 counter)
{
	__u64 *v = bpf_map_lookup_elem(counters, &counter);
	if (v)
		*v += 1;
}

/* Returns key's value in the hash map m, adding it as *zero if it is
 * missing, or NULL when m is full; the caller then counts the loss and
 * uses its overflow entry. */
static __always_inline void *ebr_lookup_or_init(void *m, const void *key, const void *zero)
{
	void *v = bpf_map_lookup_elem(m, key);
	if (v)
		return v;
	/* An int, not a long: before Linux 6.4 the JIT calls the map's update
	 * directly and the upper half of its int result is not sign-extended,
	 * so a long never equals -EEXIST there. */
	int err = bpf_map_update_elem(m, key, zero, BPF_NOEXIST);
	if (err && err != -EEXIST)
		return NULL;
	return bpf_map_lookup_elem(m, key);
}

#endif
