/* C equivalent of programs/count_syscalls.py. */
#include "common.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, u32);
	__type(value, u64);
} counts SEC(".maps");

SEC("raw_tracepoint/sys_enter")
int count_syscalls(struct bpf_raw_tracepoint_args *ctx)
{
	u32 pid = bpf_get_current_pid_tgid() >> 32;
	u64 *count = bpf_map_lookup_elem(&counts, &pid);
	if (count) {
		__sync_fetch_and_add(count, 1);
	} else {
		u64 one = 1;
		bpf_map_update_elem(&counts, &pid, &one, BPF_NOEXIST);
	}
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
