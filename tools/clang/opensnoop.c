/* C equivalent of programs/opensnoop.py. */
#include "common.h"

#define PATH_MAX 4096
enum { OPENAT = 0, OPENAT2 = 1 };

struct args {
	const char *filename;
	u32 flags;
	u32 syscall;
};

struct event {
	u32 pid;
	u32 tid;
	u32 uid;
	u32 flags;
	s32 ret;
	s32 path_len;
	u8 truncated;
	u8 syscall;
	char comm[16];
	char path[PATH_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, u64);
	__type(value, struct args);
} start SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22);
} events SEC(".maps");
LOST_COUNTER(events);

/* The syscall tracepoints' records (tracefs format): 8 bytes per argument. */
struct enter_openat_ctx { u64 common; s64 nr; s64 dfd; const char *filename; s64 flags; s64 mode; };
struct enter_openat2_ctx { u64 common; s64 nr; s64 dfd; const char *filename; void *how; u64 usize; };

SEC("tracepoint/syscalls/sys_enter_openat")
int enter_openat(struct enter_openat_ctx *ctx)
{
	struct args args;
	args.filename = ctx->filename;
	args.flags = (s32)ctx->flags;
	args.syscall = OPENAT;
	u64 id = bpf_get_current_pid_tgid();
	bpf_map_update_elem(&start, &id, &args, BPF_ANY);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_openat2")
int enter_openat2(struct enter_openat2_ctx *ctx)
{
	struct args args;
	args.filename = ctx->filename;
	args.flags = 0;
	bpf_probe_read_user(&args.flags, sizeof(args.flags), ctx->how);
	args.syscall = OPENAT2;
	u64 id = bpf_get_current_pid_tgid();
	bpf_map_update_elem(&start, &id, &args, BPF_ANY);
	return 0;
}

static __attribute__((always_inline)) int send_event(s64 ret)
{
	u64 id = bpf_get_current_pid_tgid();
	struct args *args = bpf_map_lookup_elem(&start, &id);
	if (!args)
		return 0;
	struct event *ev = bpf_ringbuf_reserve(&events, sizeof(*ev), 0);
	if (ev) {
		ev->pid = id >> 32;
		ev->tid = (u32)id;
		ev->uid = (u32)bpf_get_current_uid_gid();
		ev->flags = args->flags;
		ev->ret = ret;
		ev->syscall = args->syscall;
		bpf_get_current_comm(ev->comm, sizeof(ev->comm));
		long length = bpf_probe_read_user_str(ev->path, sizeof(ev->path), args->filename);
		ev->path_len = length;
		ev->truncated = 0;
		if (length == sizeof(ev->path)) {
			char next_byte[1];
			bpf_probe_read_user(next_byte, 1, args->filename + (PATH_MAX - 1));
			if (next_byte[0] != 0)
				ev->truncated = 1;
		}
		bpf_ringbuf_submit(ev, 0);
	} else {
		count_lost(&events_lost);
	}
	bpf_map_delete_elem(&start, &id);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_openat")
int exit_openat(struct exit_ctx *ctx)
{
	return send_event(ctx->ret);
}

SEC("tracepoint/syscalls/sys_exit_openat2")
int exit_openat2(struct exit_ctx *ctx)
{
	return send_event(ctx->ret);
}

char LICENSE[] SEC("license") = "GPL";
