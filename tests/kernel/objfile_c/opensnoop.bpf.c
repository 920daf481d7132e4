// opensnoop-style: tracepoints, a ring buffer, a const volatile pid filter,
// CO-RE reads of task_struct, a bpf_loop callback and a static subprogram
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "GPL";

const volatile int target_tgid = 0;
const volatile char comm_filter[16] = "";

struct event {
	__u32 tgid;
	__u32 ppid;
	__s32 ret;
	__s32 flags;
	char comm[16];
	char fname[128];
};

struct args_t {
	const char *fname;
	int flags;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, struct args_t);
} start SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} events SEC(".maps");

__u64 dropped = 0;

static int count_cb(__u32 index, void *ctx)
{
	*(__u64 *)ctx += index;
	return 0;
}

static __noinline int wanted(__u32 tgid)
{
	return !target_tgid || target_tgid == tgid;
}

SEC("tracepoint/syscalls/sys_enter_openat")
int enter_openat(struct trace_event_raw_sys_enter *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32, tid = (__u32)id;
	struct args_t args = {};
	__u64 sum = 0;

	if (!wanted(tgid))
		return 0;
	bpf_loop(4, count_cb, &sum, 0);
	args.fname = (const char *)ctx->args[1];
	args.flags = (int)ctx->args[2] + (sum - 6);
	bpf_map_update_elem(&start, &tid, &args, 0);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_openat")
int exit_openat(struct trace_event_raw_sys_exit *ctx)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct task_struct *task;
	struct args_t *ap;
	struct event *e;

	ap = bpf_map_lookup_elem(&start, &tid);
	if (!ap)
		return 0;
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		__sync_fetch_and_add(&dropped, 1);
		goto cleanup;
	}
	task = (struct task_struct *)bpf_get_current_task();
	e->tgid = BPF_CORE_READ(task, tgid);
	e->ppid = BPF_CORE_READ(task, real_parent, tgid);
	e->ret = ctx->ret;
	e->flags = ap->flags;
	bpf_get_current_comm(&e->comm, sizeof(e->comm));
	bpf_probe_read_user_str(&e->fname, sizeof(e->fname), ap->fname);
	bpf_ringbuf_submit(e, 0);
cleanup:
	bpf_map_delete_elem(&start, &tid);
	return 0;
}
