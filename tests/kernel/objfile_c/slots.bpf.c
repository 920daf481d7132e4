// Maps libbpf fills or shares for the program: a map of maps and a prog
// array with initialised slots, a bloom filter (map_extra: its hash count)
// and a map pinned by name (LIBBPF_PIN_BY_NAME)
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

struct inner {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
};

struct inner inner_a SEC(".maps"), inner_b SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 4);
	__type(key, __u32);
	__array(values, struct inner);
} outer SEC(".maps") = {
	.values = { [0] = &inner_a, [2] = &inner_b },
};

struct {
	__uint(type, BPF_MAP_TYPE_BLOOM_FILTER);
	__uint(max_entries, 16);
	__type(value, __u32);
	__uint(map_extra, 3);
} seen SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pybpf_test_shared SEC(".maps");

SEC("tp/syscalls/sys_enter_getppid")
int tail_target(void *ctx)
{
	__u32 key = 0;
	__u64 *count = bpf_map_lookup_elem(&pybpf_test_shared, &key);

	if (count)
		__sync_fetch_and_add(count, 1);
	return 0;
}

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__array(values, int (void *));
} jumps SEC(".maps") = {
	.values = { [1] = (void *)&tail_target },
};

SEC("tp/syscalls/sys_enter_getppid")
int entry(void *ctx)
{
	__u32 key = 0, value = 7;
	void *inner = bpf_map_lookup_elem(&outer, &key);

	if (inner) {
		__u64 *slot = bpf_map_lookup_elem(inner, &key);
		if (slot)
			__sync_fetch_and_add(slot, 1);
	}
	bpf_map_push_elem(&seen, &value, 0);
	bpf_tail_call(ctx, &jumps, 1);
	return 0;
}
