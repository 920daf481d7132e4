/* C equivalent of programs/feature_tour.py. */
#include "common.h"

#define STOP 0x5709
#define STOPPED 7
#ifndef TASK_COMM_OFFSET
#define TASK_COMM_OFFSET 1752  /* offsetof(struct task_struct, comm); the tool passes BTF's */
#endif

struct sample {
	s16 values[4];
	char tag[6];
};

struct report {
	u32 pid;
	u8 kind;
	u8 flags;
	u8 is_py;
	u8 matched;
	s32 arg_len;
	s64 ops[8];
	u64 arg_sum;
	u64 unrolled;
	u64 loop_sum;
	s64 loops;
	u64 big_sum;
	char comm[16];
	char kcomm[16];
	char arg[32];
	struct sample samples[2];
};

struct big {
	u8 data[1024];
};

struct loop_state {
	u64 total;
	u64 limit;
};

struct settings {
	char prefix[16];
	u32 scale;
	u32 target_pid;
};

/* load-time settings, frozen: what the DSL's Config is */
const volatile struct settings settings = { .scale = 3 };

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 16);
} reports SEC(".maps");
LOST_COUNTER(reports);

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct big);
} scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, u32);
	__type(value, u64);
} calls SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, s64);
} ppids SEC(".maps");

static __attribute__((noinline)) u64 clamp(u64 value, u64 limit)
{
	if (value > limit)
		return limit;
	return value;
}

static long add_square(u64 index, struct loop_state *state)
{
	state->total = state->total + index * index;
	if (index + 1 >= state->limit)
		return 1;
	return 0;
}

static __attribute__((always_inline)) int prefix_eq(const char *buf,
						     const volatile char *prefix)
{
	int equal = 1;
#pragma clang loop unroll(disable)
	for (u32 i = 0; i < 16; i++) {
		char c = prefix[i];
		if (c == 0)
			break;
		if (buf[i] != c) {
			equal = 0;
			break;
		}
	}
	return equal;
}

SEC("raw_tracepoint/sys_enter")
int tour(struct bpf_raw_tracepoint_args *ctx)
{
	if (ctx->args[2] == STOP)
		return STOPPED;
	s64 x = ctx->args[1];
	u32 pid = bpf_get_current_pid_tgid() >> 32;
	u64 *count = bpf_map_lookup_elem(&calls, &pid);
	if (count) {
		__sync_fetch_and_add(count, 1);
	} else {
		u64 one = 1;
		bpf_map_update_elem(&calls, &pid, &one, BPF_ANY);
	}

	struct report *rep = bpf_ringbuf_reserve(&reports, sizeof(*rep), 0);
	if (!rep) {
		count_lost(&reports_lost);
		return 0;
	}
	rep->pid = pid;
	rep->ops[0] = x >> 2;
	rep->ops[1] = (u64)x >> 60;
	rep->ops[2] = (u64)x / 7;
	rep->ops[3] = (u64)x % 8;
	rep->ops[4] = x * settings.scale + (2 + 3) * 4;
	rep->ops[5] = clamp(x, 1000);
	rep->ops[6] = -(s32)x;
	u8 flags = 0;
	if (x < 0)
		flags |= 1;
	if ((u64)x > 1000)
		flags |= 2;
	if ((s32)x >= -5)
		flags |= 4;
	if ((u16)x == 0xFFFF)
		flags |= 8;
	if ((u8)x < 200 && x != 1)
		flags |= 16;
	rep->flags = flags;
	if (x < 0)
		rep->kind = 1;
	else if (x == 0)
		rep->kind = 2;
	else
		rep->kind = 3;

	bpf_get_current_comm(rep->comm, sizeof(rep->comm));
	u64 task = bpf_get_current_task();
	bpf_probe_read_kernel_str(rep->kcomm, sizeof(rep->kcomm), (void *)(task + TASK_COMM_OFFSET));
	rep->arg_len = bpf_probe_read_user_str(rep->arg, sizeof(rep->arg), (void *)ctx->args[0]);
	rep->is_py = rep->comm[0] == 'p' && rep->comm[1] == 'y';
	rep->matched = prefix_eq(rep->comm, settings.prefix);

	u64 total = 0;
#pragma clang loop unroll(disable)
	for (u32 i = 0; i < sizeof(rep->arg); i++) {
		char c = rep->arg[i];
		if (c == 0)
			break;
		total += c;
	}
	rep->arg_sum = total;
	u64 product = 1;
#pragma unroll
	for (int i = 2; i < 7; i++)
		product *= i;
	rep->unrolled = product;
	struct loop_state state = { .total = 0, .limit = 10 };
	rep->loops = bpf_loop(100, add_square, &state, 0);
	rep->loop_sum = state.total;

	struct sample sample = {};
#pragma unroll
	for (int i = 0; i < 4; i++)
		sample.values[i] = (s16)x - i;
	__builtin_memcpy(sample.tag, "tour\0", 6);
	__builtin_memcpy(&rep->samples[1], &sample, sizeof(sample));
	__builtin_memset(&rep->samples[0], 0, sizeof(sample));
	rep->ops[7] = sample.values[3];

	u32 zero = 0;
	struct big *big = bpf_map_lookup_elem(&scratch, &zero);
	if (!big) {
		bpf_ringbuf_discard(rep, 0);
		return 0;
	}
#pragma clang loop unroll(disable)
	for (u32 i = 0; i < sizeof(*big) / 8; i++)
		((volatile u64 *)big->data)[i] = 0;  /* stays a loop: no memset idiom */
	big->data[10] = 7;
	big->data[1000] = (u8)x;
	rep->big_sum = big->data[10] + big->data[1000];
	bpf_ringbuf_submit(rep, 0);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_getppid")
int tour_getppid(struct exit_ctx *ctx)
{
	if ((u32)(bpf_get_current_pid_tgid() >> 32) != settings.target_pid)
		return 0;
	u32 zero = 0;
	s64 ret = ctx->ret;
	bpf_map_update_elem(&ppids, &zero, &ret, BPF_ANY);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
