"""Our ctypes mirrors of the kernel's UAPI structs, field by field.

The offsets are ``offsetof()`` of the same fields in ``<linux/bpf.h>`` and
``<linux/perf_event.h>`` (the Linux 6.1 UAPI headers, printed by a C program
built with gcc; ``gpl_compatible`` is bit 0 of the word at 84). A field
added, dropped or mistyped in ``pybpf.kernel.sys`` fails here, instead of
as EINVAL or garbage from the kernel. Fields those headers do not have, or
that the mirrors name differently, are in ``NEWER``.
"""

import ctypes

import pytest

from pybpf.kernel import perf
from pybpf.kernel import sys as ksys

OFFSETS = {
    "MapCreateAttr": {"map_type": 0, "key_size": 4, "value_size": 8, "max_entries": 12,
        "map_flags": 16, "inner_map_fd": 20, "numa_node": 24, "map_name": 28, "map_ifindex": 44,
        "btf_fd": 48, "btf_key_type_id": 52, "btf_value_type_id": 56,
        "btf_vmlinux_value_type_id": 60, "map_extra": 64},
    "MapElemAttr": {"map_fd": 0, "key": 8, "value": 16, "flags": 24},
    "MapBatchAttr": {"in_batch": 0, "out_batch": 8, "keys": 16, "values": 24, "count": 32,
        "map_fd": 36, "elem_flags": 40, "flags": 48},
    "ProgLoadAttr": {"prog_type": 0, "insn_cnt": 4, "insns": 8, "license": 16, "log_level": 24,
        "log_size": 28, "log_buf": 32, "kern_version": 40, "prog_flags": 44, "prog_name": 48,
        "prog_ifindex": 64, "expected_attach_type": 68, "prog_btf_fd": 72,
        "func_info_rec_size": 76, "func_info": 80, "func_info_cnt": 88, "line_info_rec_size": 92,
        "line_info": 96, "line_info_cnt": 104, "attach_btf_id": 108, "attach_prog_fd": 112,
        "core_relo_cnt": 116, "fd_array": 120, "core_relos": 128, "core_relo_rec_size": 136},
    "ObjAttr": {"pathname": 0, "bpf_fd": 8, "file_flags": 12},
    "TestRunAttr": {"prog_fd": 0, "retval": 4, "data_size_in": 8, "data_size_out": 12,
        "data_in": 16, "data_out": 24, "repeat": 32, "duration": 36, "ctx_size_in": 40,
        "ctx_size_out": 44, "ctx_in": 48, "ctx_out": 56, "flags": 64, "cpu": 68, "batch_size": 72},
    "GetIdAttr": {"start_id": 0, "next_id": 4, "open_flags": 8},
    "InfoAttr": {"bpf_fd": 0, "info_len": 4, "info": 8},
    "RawTracepointAttr": {"name": 0, "prog_fd": 8},
    "BTFLoadAttr": {"btf": 0, "btf_log_buf": 8, "btf_size": 16, "btf_log_size": 20,
        "btf_log_level": 24},
    "LinkCreateAttr": {"prog_fd": 0, "target_fd": 4, "attach_type": 8, "flags": 12},
    "LinkDetachAttr": {"link_fd": 0},
    "EnableStatsAttr": {"type": 0},
    "ProgAttachAttr": {"target_fd": 0, "attach_bpf_fd": 4, "attach_type": 8, "attach_flags": 12,
        "replace_bpf_fd": 16},
    "BPFProgInfo": {"type": 0, "id": 4, "tag": 8, "jited_prog_len": 16, "xlated_prog_len": 20,
        "jited_prog_insns": 24, "xlated_prog_insns": 32, "load_time": 40, "created_by_uid": 48,
        "nr_map_ids": 52, "map_ids": 56, "name": 64, "ifindex": 80, "gpl_compatible": 84,
        "netns_dev": 88, "netns_ino": 96, "nr_jited_ksyms": 104, "nr_jited_func_lens": 108,
        "jited_ksyms": 112, "jited_func_lens": 120, "btf_id": 128, "func_info_rec_size": 132,
        "func_info": 136, "nr_func_info": 144, "nr_line_info": 148, "line_info": 152,
        "jited_line_info": 160, "nr_jited_line_info": 168, "line_info_rec_size": 172,
        "jited_line_info_rec_size": 176, "nr_prog_tags": 180, "prog_tags": 184, "run_time_ns": 192,
        "run_cnt": 200, "recursion_misses": 208, "verified_insns": 216, "attach_btf_obj_id": 220,
        "attach_btf_id": 224},
    "BPFMapInfo": {"type": 0, "id": 4, "key_size": 8, "value_size": 12, "max_entries": 16,
        "map_flags": 20, "name": 24, "ifindex": 40, "btf_vmlinux_value_type_id": 44,
        "netns_dev": 48, "netns_ino": 56, "btf_id": 64, "btf_key_type_id": 68,
        "btf_value_type_id": 72, "map_extra": 80},
    "BPFLinkInfo": {"type": 0, "id": 4, "prog_id": 8},
    "BPFBTFInfo": {"btf": 0, "btf_size": 8, "id": 12, "name": 16, "name_len": 24,
        "kernel_btf": 28},
    "PerfEventAttr": {"type": 0, "size": 4, "config": 8, "sample_period": 16, "sample_type": 24,
        "read_format": 32, "wakeup_events": 48, "bp_type": 52, "config1": 56, "config2": 64,
        "branch_sample_type": 72, "sample_regs_user": 80, "sample_stack_user": 88, "clockid": 92,
        "sample_regs_intr": 96, "aux_watermark": 104, "sample_max_stack": 108},
}
# Fields the mirrors name differently or that are newer than the headers:
# log_true_size and btf_log_true_size (Linux 6.4), btf_vmlinux_id (in the
# padding before map_extra);
# link_create's union as two words (target_btf_id or perf_event.bpf_cookie
# at 16, tracing.cookie or kprobe_multi.syms at 24), bpf_link_info's union
# at 16, and perf_event_attr's bitfield word after read_format.
NEWER = {("ProgLoadAttr", "log_true_size"): 140, ("BTFLoadAttr", "btf_log_true_size"): 28,
         ("LinkCreateAttr", "extra"): 16, ("LinkCreateAttr", "extra2"): 24,
         ("BPFLinkInfo", "union"): 16,
         ("BPFMapInfo", "btf_vmlinux_id"): 76, ("PerfEventAttr", "flags"): 40}
SIZES = {"BPFProgInfo": 232, "BPFMapInfo": 88, "BPFBTFInfo": 32,
         "PerfEventAttr": ksys.PERF_ATTR_SIZE_VER5}


@pytest.mark.parametrize("name", sorted(OFFSETS))
def test_field_offsets_match_the_uapi_headers(name):
    layout = getattr(ksys, name)
    assert {field: getattr(layout, field).offset for field in OFFSETS[name]} == OFFSETS[name]


def test_fields_newer_than_the_headers():
    assert {key: getattr(getattr(ksys, key[0]), key[1]).offset for key in NEWER} == NEWER


def test_every_field_is_checked():
    """A field added to a mirror must be added here too."""
    checked = {(name, field) for name, fields in OFFSETS.items() for field in fields}
    checked |= set(NEWER)
    for name in OFFSETS:
        declared = {f[0] for f in getattr(ksys, name)._fields_ if not f[0].startswith("_")}
        assert declared <= {field for struct, field in checked if struct == name}, name


def test_struct_sizes():
    assert {name: ctypes.sizeof(getattr(ksys, name)) for name in SIZES} == SIZES


def test_perf_mmap_page_and_ioctls():
    # offsetof(struct perf_event_mmap_page, data_head / data_tail); data_offset
    # and data_size follow at 1040 and 1048.
    assert (perf.DATA_HEAD_OFFSET, perf.DATA_TAIL_OFFSET) == (1024, 1032)
    assert (ksys.PERF_EVENT_IOC_ENABLE, ksys.PERF_EVENT_IOC_DISABLE,
            ksys.PERF_EVENT_IOC_SET_BPF) == (0x2400, 0x2401, 0x40042408)
