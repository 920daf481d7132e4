/* The few declarations the C equivalents of programs/ need, so that they
 * compile with `clang -O2 -target bpf` without kernel or libbpf headers.
 * Helper ids are BPF_FUNC_* from include/uapi/linux/bpf.h. Only used by
 * tools/compare_clang.py to count instructions; nothing loads these. */
#ifndef PYBPF_COMMON_H
#define PYBPF_COMMON_H

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;
typedef signed char s8;
typedef short s16;
typedef int s32;
typedef long long s64;

#define SEC(name) __attribute__((section(name), used))
#define __uint(name, val) int (*name)[val]
#define __type(name, val) typeof(val) *name

enum { BPF_MAP_TYPE_HASH = 1, BPF_MAP_TYPE_ARRAY = 2, BPF_MAP_TYPE_PERCPU_ARRAY = 6,
       BPF_MAP_TYPE_RINGBUF = 27 };
enum { BPF_ANY = 0, BPF_NOEXIST = 1, BPF_EXIST = 2 };

static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;
static long (*bpf_map_update_elem)(void *map, const void *key, const void *value,
                                   u64 flags) = (void *)2;
static long (*bpf_map_delete_elem)(void *map, const void *key) = (void *)3;
static u64 (*bpf_get_current_pid_tgid)(void) = (void *)14;
static u64 (*bpf_get_current_uid_gid)(void) = (void *)15;
static long (*bpf_get_current_comm)(void *buf, u32 size) = (void *)16;
static u64 (*bpf_ktime_get_ns)(void) = (void *)5;
static u64 (*bpf_get_current_task)(void) = (void *)35;
static long (*bpf_probe_read_user)(void *dst, u32 size, const void *ptr) = (void *)112;
static long (*bpf_probe_read_kernel)(void *dst, u32 size, const void *ptr) = (void *)113;
static long (*bpf_probe_read_user_str)(void *dst, u32 size, const void *ptr) = (void *)114;
static long (*bpf_probe_read_kernel_str)(void *dst, u32 size, const void *ptr) = (void *)115;
static void *(*bpf_ringbuf_reserve)(void *ringbuf, u64 size, u64 flags) = (void *)131;
static void (*bpf_ringbuf_submit)(void *data, u64 flags) = (void *)132;
static void (*bpf_ringbuf_discard)(void *data, u64 flags) = (void *)133;
static long (*bpf_ringbuf_output)(void *ringbuf, void *data, u64 size, u64 flags) = (void *)130;
static long (*bpf_loop)(u32 nr_loops, void *callback_fn, void *callback_ctx,
                        u64 flags) = (void *)181;

struct bpf_raw_tracepoint_args { u64 args[0]; };
/* A syscall exit tracepoint's record (tracefs format). */
struct exit_ctx { u64 common; s64 nr; s64 ret; };

/* The lost-record counter every ring buffer of ours has (see dsl/maps.py). */
#define LOST_COUNTER(ring)                                                        \
	struct {                                                                  \
		__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);                          \
		__uint(max_entries, 1);                                           \
		__type(key, u32);                                                 \
		__type(value, u64);                                               \
	} ring##_lost SEC(".maps")

static __attribute__((always_inline)) void count_lost(void *lost_map)
{
	u32 zero = 0;
	u64 *lost = bpf_map_lookup_elem(lost_map, &zero);
	if (lost)
		__sync_fetch_and_add(lost, 1);
}

#endif
