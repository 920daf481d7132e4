/* The network declarations the C equivalents of programs/xdp_count.py and
 * programs/tc_drop_port.py need (from <linux/bpf.h>, <linux/if_ether.h>,
 * <linux/ip.h>, <linux/ipv6.h>, <linux/udp.h>, <linux/pkt_cls.h>), so that
 * they compile without kernel headers. Little-endian bit-field order. */
#ifndef PYBPF_NET_H
#define PYBPF_NET_H

#define bpf_htons(x) ((u16)__builtin_bswap16(x))

enum { XDP_ABORTED, XDP_DROP, XDP_PASS, XDP_TX, XDP_REDIRECT };
enum { TC_ACT_OK = 0, TC_ACT_SHOT = 2 };
enum { ETH_P_IP = 0x0800, ETH_P_IPV6 = 0x86DD };
enum { IPPROTO_ICMP = 1, IPPROTO_TCP = 6, IPPROTO_UDP = 17 };
#define IP_OFFSET 0x1FFF

struct xdp_md {
	u32 data;
	u32 data_end;
	u32 data_meta;
	u32 ingress_ifindex;
	u32 rx_queue_index;
	u32 egress_ifindex;
};

struct __sk_buff {
	u32 len, pkt_type, mark, queue_mapping, protocol, vlan_present, vlan_tci, vlan_proto;
	u32 priority, ingress_ifindex, ifindex, tc_index, cb[5], hash, tc_classid;
	u32 data, data_end, napi_id;
};

struct ethhdr {
	u8 h_dest[6];
	u8 h_source[6];
	u16 h_proto;
};

struct iphdr {
	u8 ihl:4, version:4;
	u8 tos;
	u16 tot_len, id, frag_off;
	u8 ttl, protocol;
	u16 check;
	u32 saddr, daddr;
};

struct ipv6hdr {
	u8 priority:4, version:4;
	u8 flow_lbl[3];
	u16 payload_len;
	u8 nexthdr, hop_limit;
	u8 saddr[16], daddr[16];
};

struct udphdr {
	u16 source, dest, len, check;
};

#endif
