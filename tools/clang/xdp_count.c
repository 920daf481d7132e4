/* C equivalent of programs/xdp_count.py. */
#include "common.h"
#include "net.h"

enum { OTHER, ICMP, TCP, UDP, IPV4, IPV6, CLASSES };

struct counter {
	u64 packets;
	u64 bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, CLASSES);
	__type(key, u32);
	__type(value, struct counter);
} stats SEC(".maps");

SEC("xdp")
int xdp_count(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	u32 kind = OTHER;
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) <= data_end) {
		u16 proto = eth->h_proto;
		if (proto == bpf_htons(ETH_P_IP)) {
			struct iphdr *ip = (void *)(eth + 1);
			if ((void *)(ip + 1) <= data_end) {
				u8 protocol = ip->protocol;
				if (protocol == IPPROTO_ICMP)
					kind = ICMP;
				else if (protocol == IPPROTO_TCP)
					kind = TCP;
				else if (protocol == IPPROTO_UDP)
					kind = UDP;
				else
					kind = IPV4;
			}
		} else if (proto == bpf_htons(ETH_P_IPV6)) {
			kind = IPV6;
		}
	}
	struct counter *counter = bpf_map_lookup_elem(&stats, &kind);
	if (counter) {
		counter->packets += 1;
		counter->bytes += data_end - data;
	}
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
