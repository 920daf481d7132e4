/* C equivalent of programs/tc_drop_port.py. */
#include "common.h"
#include "net.h"

struct settings {
	u16 port;	/* network order */
};

/* load-time settings, frozen: what the DSL's Config is */
const volatile struct settings settings = {};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, u64);
} drops SEC(".maps");

static __attribute__((always_inline)) int drop_if_port(struct udphdr *udp, void *data_end)
{
	if ((void *)(udp + 1) <= data_end && udp->dest == settings.port) {
		u32 zero = 0;
		u64 *count = bpf_map_lookup_elem(&drops, &zero);
		if (count)
			*count += 1;
		return 1;
	}
	return 0;
}

SEC("tc")
int tc_drop_port(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > data_end)
		return TC_ACT_OK;
	u16 proto = eth->h_proto;
	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);
		if ((void *)(ip + 1) <= data_end && ip->protocol == IPPROTO_UDP &&
		    (ip->frag_off & bpf_htons(IP_OFFSET)) == 0 &&
		    drop_if_port((void *)ip + ip->ihl * 4, data_end))
			return TC_ACT_SHOT;
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);
		if ((void *)(ip6 + 1) <= data_end && ip6->nexthdr == IPPROTO_UDP &&
		    drop_if_port((void *)(ip6 + 1), data_end))
			return TC_ACT_SHOT;
	}
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "GPL";
