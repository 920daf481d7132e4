"""The generated helper table: up to date with its generator, and right
about the helpers our programs call; and the kind rules behind it."""

import doctest
import importlib.util
import os
import subprocess
import sys

import pytest

from pybpf import helper_defs, helper_proto
from pybpf.helper_proto import HelperArg, HelperProto, arg_kinds, ret_kind

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOL = os.path.join(ROOT, "tools", "gen_helper_defs.py")
HEADER = "/usr/include/linux/bpf.h"
VMLINUX = "/sys/kernel/btf/vmlinux"


def load_tool():
    spec = importlib.util.spec_from_file_location("gen_helper_defs", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def kinds(name):
    return tuple(arg.kind for arg in helper_defs.HELPERS[name].args)


# --- the committed table ---------------------------------------------------------

def test_committed_table_is_what_the_generator_writes(tmp_path):
    if not (os.path.exists(HEADER) and os.path.exists(VMLINUX)):
        pytest.skip("needs %s and %s to regenerate" % (HEADER, VMLINUX))
    kernel_ids = load_tool().helper_ids(VMLINUX)
    table_ids = {helper.name: helper.id for helper in helper_defs.HELPERS.values()}
    if kernel_ids != table_ids:
        pytest.skip("helper_defs.py was generated on a kernel with other helpers")
    out = tmp_path / "helper_defs.py"
    subprocess.run([sys.executable, TOOL, "--output", str(out), "--btf", VMLINUX,
                    "--header", HEADER], check=True, capture_output=True)
    with open(os.path.join(ROOT, "pybpf", "helper_defs.py")) as f:
        assert out.read_text() == f.read(), "run tools/gen_helper_defs.py and commit the result"


def test_tables_agree():
    assert len(helper_defs.HELPERS) == len(helper_defs.HELPERS_BY_ID) > 200
    for name, helper in helper_defs.HELPERS.items():
        assert helper_defs.HELPERS_BY_ID[helper.id] is helper and helper.name == name
        assert name.startswith("bpf_") and helper.id > 0


def test_map_lookup_elem():
    helper = helper_defs.HELPERS["bpf_map_lookup_elem"]
    assert helper.id == 1 and helper_defs.HELPERS_BY_ID[1] is helper
    assert (helper.ret, helper.ret_kind) == ("void *", "ptr_or_null")
    assert helper.args == (HelperArg("map", "struct bpf_map *", "map"),
                           HelperArg("key", "const void *", "const_ptr"))
    assert helper.summary == "Perform a lookup in map for an entry associated to key."
    assert str(helper) == "void *bpf_map_lookup_elem(struct bpf_map *map, const void *key)"


def test_known_prototypes():
    assert helper_defs.HELPERS["bpf_probe_read_user_str"].id == 114
    assert kinds("bpf_probe_read_user_str") == ("ptr", "size", "kernel_ptr")
    assert kinds("bpf_probe_read_kernel") == ("ptr", "size", "kernel_ptr")
    reserve = helper_defs.HELPERS["bpf_ringbuf_reserve"]
    assert reserve.ret_kind == "ptr_or_null" and kinds("bpf_ringbuf_reserve") == (
        "map", "scalar", "flags")
    assert kinds("bpf_ringbuf_submit") == ("ptr", "flags")
    loop = helper_defs.HELPERS["bpf_loop"]
    assert kinds("bpf_loop") == ("scalar", "callback", "ptr", "flags")
    assert loop.args[1].name == "callback_fn"
    assert helper_defs.HELPERS["bpf_get_current_task"].ret_kind == "scalar"
    assert helper_defs.HELPERS["bpf_get_current_task"].args == ()
    assert kinds("bpf_perf_event_output") == ("ctx", "map", "flags", "ptr", "size")
    assert kinds("bpf_get_current_comm") == ("ptr", "size")
    assert helper_defs.HELPERS["bpf_trace_printk"].variadic
    assert helper_defs.HELPERS["bpf_map_update_elem"].ret_kind == "scalar"
    assert helper_defs.HELPERS["bpf_ktime_get_ns"].ret == "u64"


# --- the rules -------------------------------------------------------------------

def test_kind_rules():
    assert helper_proto.__doc__ and doctest.testmod(helper_proto).failed == 0
    assert arg_kinds([("struct pt_regs *", "regs"), ("u64", "rc")]) == ("ctx", "scalar")
    assert arg_kinds([("void *", "ctx"), ("struct bpf_sock_tuple *", "tuple"),
                      ("u32", "tuple_size"), ("u64", "netns"), ("u64", "flags")]) == (
        "ctx", "ptr", "size", "scalar", "flags")
    assert arg_kinds([("void *", "map"), ("void *", "sk")]) == ("map", "kernel_ptr")
    assert arg_kinds([("struct task_struct *", "task")]) == ("kernel_ptr",)
    # a length that does not follow a pointer is a plain number
    assert arg_kinds([("u32", "start"), ("u32", "len")]) == ("scalar", "scalar")
    assert arg_kinds([("void *", "buf"), ("u32", "offset")]) == ("ptr", "scalar")
    assert ret_kind("void", "") == "void"
    assert ret_kind("long", "0 on success") == "scalar"
    assert ret_kind("void *", "A pointer, or NULL.") == "ptr_or_null"
    assert ret_kind("void *", "A pointer to the local storage area.") == "ptr"
    assert ret_kind("struct bpf_sock *", "NULL on failure") == "kernel_ptr_or_null"
    assert ret_kind("struct task_struct *", "Pointer to the current task.") == "kernel_ptr"


def test_undocumented_helper():
    helper = HelperProto("bpf_new", 300, None, helper_proto.RET_UNKNOWN, None, "")
    assert str(helper) == "bpf_new(?)" and helper.short_name == "new"


# --- the generator's parsing ---------------------------------------------------------

HEADER_SNIPPET = """/* Start of BPF helper function descriptions:
 *
 * long bpf_first(void *dst, u32 size, const void *unsafe_ptr)
 * 	Description
 * 		For tracing programs, read *size* bytes from
 * 		**bpf_other**\\ () (e.g. a test). More text.
 *
 * 		Second paragraph.
 * 	Return
 * 		0 on success.
 *
 * void *bpf_second(struct bpf_map *map, ...)
 *     Description
 *             Spaces, not tabs.
 *     Return
 *             Value, or NULL.
 *
 * u64 bpf_first(void)
 * 	Description
 * 		Documented again for another program type.
 * 	Return
 * 		Something.
 */
"""


def test_generator_parses_the_header_comment():
    tool = load_tool()
    documented, duplicates = tool.parse_header(HEADER_SNIPPET)
    assert sorted(documented) == ["bpf_first", "bpf_second"] and duplicates == ["bpf_first"]
    first = documented["bpf_first"]
    assert first.ret == "long" and first.args == (("void *", "dst"), ("u32", "size"),
                                                  ("const void *", "unsafe_ptr"))
    assert tool.summary(first.description) == \
        "For tracing programs, read size bytes from bpf_other() (e.g. a test)."
    second = documented["bpf_second"]
    assert second.variadic and second.returns == "Value, or NULL."
    assert tool.summary(second.description) == "Spaces, not tabs."
    text = tool.render({"bpf_first": 1, "bpf_second": 2, "bpf_third": 3}, documented)
    namespace = {}
    exec(compile(text.replace("from .helper_proto", "from pybpf.helper_proto"), "gen", "exec"),
         namespace)
    table = namespace["HELPERS"]
    assert table["bpf_second"].ret_kind == "ptr_or_null"
    assert table["bpf_third"].args is None and table["bpf_third"].ret_kind == "unknown"
    assert "DO NOT EDIT" in text.splitlines()[1]
