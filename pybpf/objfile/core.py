"""CO-RE: make instructions compiled against one kernel's types right for
this one's, as libbpf's ``relo_core.c`` does.

Each ``.BTF.ext`` CO-RE record names an instruction, a local type (in the
object's BTF) and an access string: ``0:2:1`` is "element 0 of the root
type, its member #2, that member's member #1". The record's kind says
what the instruction needs: a member's byte offset, size, signedness or
bitfield shifts, whether it exists; a type's id, size or existence; an
enumerator's value or existence. Resolving one:

1. the local spec: the access string walked through the local BTF (member
   names, array indexes, the bit offset they add up to);
2. candidates: target types with the local type's *essential* name (the
   part before a ``___flavor`` suffix) and kind;
3. a match: the same walk by member names in each candidate (through
   anonymous structs and unions), with compatible member types;
4. the value, computed from the target spec, written into the instruction
   (``imm`` of an ALU or 64-bit load, ``off`` of a memory access, whose
   size follows the field's when that is safe).

No match is not always an error: the ``*_EXISTS`` and ``TYPE_MATCHES``
kinds, and type-based kinds, then give 0. Where a value is needed and
there is none, the instruction is *poisoned*: replaced by a call to helper
``0xbad2310``, so the program loads and fails in the verifier only if it
can reach that instruction ("invalid func unknown#195896080"). Candidates
that match with different values are an error (ambiguity), as in libbpf.
"""

import re
import struct
from typing import Callable, Dict, List, NamedTuple, Optional, Tuple

from .. import isa
from ..kernel.btf import BTF
from ..kernel.btf_format import (BTF_KIND_ARRAY, BTF_KIND_ENUM, BTF_KIND_ENUM64,
                                 BTF_KIND_FLOAT, BTF_KIND_FUNC_PROTO, BTF_KIND_FWD,
                                 BTF_KIND_INT, BTF_KIND_PTR,
                                 BTFError, COMPOSITE_KINDS)
from .btf_ext import BTFExt, CoreRelo
from .reader import ElfFile

# enum bpf_core_relo_kind (include/uapi/linux/bpf.h)
BPF_CORE_FIELD_BYTE_OFFSET = 0
BPF_CORE_FIELD_BYTE_SIZE = 1
BPF_CORE_FIELD_EXISTS = 2
BPF_CORE_FIELD_SIGNED = 3
BPF_CORE_FIELD_LSHIFT_U64 = 4
BPF_CORE_FIELD_RSHIFT_U64 = 5
BPF_CORE_TYPE_ID_LOCAL = 6
BPF_CORE_TYPE_ID_TARGET = 7
BPF_CORE_TYPE_EXISTS = 8
BPF_CORE_TYPE_SIZE = 9
BPF_CORE_ENUMVAL_EXISTS = 10
BPF_CORE_ENUMVAL_VALUE = 11
BPF_CORE_TYPE_MATCHES = 12

FIELD_KINDS = frozenset(range(BPF_CORE_FIELD_BYTE_OFFSET, BPF_CORE_FIELD_RSHIFT_U64 + 1))
TYPE_KINDS = frozenset((BPF_CORE_TYPE_ID_LOCAL, BPF_CORE_TYPE_ID_TARGET, BPF_CORE_TYPE_EXISTS,
                        BPF_CORE_TYPE_SIZE, BPF_CORE_TYPE_MATCHES))
ENUM_KINDS = frozenset((BPF_CORE_ENUMVAL_EXISTS, BPF_CORE_ENUMVAL_VALUE))
_ZERO_WHEN_MISSING = frozenset((BPF_CORE_FIELD_EXISTS, BPF_CORE_ENUMVAL_EXISTS)) | TYPE_KINDS

#: The helper id a poisoned instruction calls (libbpf's bpf_core_poison_insn).
POISON_HELPER = 0xBAD2310

_SLOT = struct.Struct("<BBhi")
_ENUMS = (BTF_KIND_ENUM, BTF_KIND_ENUM64)
_SIZE_CODES = {1: isa.BPF_B, 2: isa.BPF_H, 4: isa.BPF_W, 8: isa.BPF_DW}
_FLAVOR = re.compile(r"(?<=[^_])___(?=[^_])")


class CoreError(BTFError):
    """A CO-RE relocation that cannot be applied (not one that is poisoned)."""


def essential_name(name: str) -> str:
    """``task_struct`` of ``task_struct___v2``: the name without the last
    ``___flavor`` suffix, which lets one object carry several layouts."""
    found = list(_FLAVOR.finditer(name))
    return name[:found[-1].start()] if found else name


class Access(NamedTuple):
    """One step of a spec: ``type_id`` is the struct/union of a member
    (``name`` set) or the array indexed (``name`` empty); index is the
    member number or the array index."""

    type_id: int
    index: int
    name: str


class Spec(NamedTuple):
    """An access string resolved in one BTF."""

    btf: BTF
    root_id: int
    steps: Tuple[Access, ...]
    bit_offset: int
    last_type_id: int      # the type reached (a member's, or an element's)
    bit_size: int          # of a bitfield member, else 0


class Result(NamedTuple):
    """What a CO-RE record resolves to, to patch into its instruction."""

    value: int
    size: int = 0          # the field's byte size, for memory access size fix-ups
    type_id: int = 0
    poison: bool = False


# --- local specs -----------------------------------------------------------------------------

def local_spec(btf: BTF, relo: CoreRelo) -> Spec:
    """The access string of ``relo`` walked through the object's BTF."""
    try:
        raw = [int(part) for part in relo.access.split(":")]
    except ValueError:
        raise CoreError("bad access string %r" % relo.access) from None
    root = btf.resolve_type(relo.type_id)
    if relo.kind in TYPE_KINDS:
        return Spec(btf, relo.type_id, (), 0, relo.type_id, 0)
    if relo.kind in ENUM_KINDS:
        if root.kind not in _ENUMS:
            raise CoreError("enum relocation on %s" % root)
        names = list(enumerators(btf, root.id))
        if not 0 <= raw[0] < len(names):
            raise CoreError("enumerator #%d of %s does not exist" % (raw[0], root))
        return Spec(btf, root.id, (Access(root.id, raw[0], names[raw[0]]),), 0, root.id, 0)
    steps = [Access(relo.type_id, raw[0], "")]
    bit_offset = raw[0] * btf.sizeof(relo.type_id) * 8
    type_id, bit_size = relo.type_id, 0
    for index in raw[1:]:
        t = btf.resolve_type(type_id)
        if t.kind in COMPOSITE_KINDS:
            members = btf.members(t.id)
            if not 0 <= index < len(members):
                raise CoreError("member #%d of %s does not exist" % (index, t))
            member = members[index]
            bit_offset += member.bit_offset
            bit_size = member.bit_size
            if member.name:
                steps.append(Access(t.id, index, member.name))
            type_id = member.type
        elif t.kind == BTF_KIND_ARRAY:
            info = btf.array_info(t.id)
            steps.append(Access(t.id, index, ""))
            bit_offset += index * info.elem_size * 8
            type_id, bit_size = info.elem_type_id, 0
        else:
            raise CoreError("access string %r goes into %s" % (relo.access, t))
    return Spec(btf, relo.type_id, tuple(steps), bit_offset, type_id, bit_size)


# --- compatibility ---------------------------------------------------------------------------

def fields_compatible(local: BTF, local_id: int, target: BTF, target_id: int) -> bool:
    """libbpf's bpf_core_fields_are_compat: may a member of this local
    type be read as this target member?"""
    lt, tt = local.resolve_type(local_id), target.resolve_type(target_id)
    if lt.kind in COMPOSITE_KINDS or lt.kind == BTF_KIND_FWD:
        return (tt.kind in COMPOSITE_KINDS or tt.kind == BTF_KIND_FWD) and \
            essential_name(lt.name) == essential_name(tt.name)
    if lt.kind in _ENUMS:
        return tt.kind in _ENUMS or tt.kind == BTF_KIND_INT
    if lt.kind == BTF_KIND_INT:
        return tt.kind in (BTF_KIND_INT,) + _ENUMS
    if lt.kind in (BTF_KIND_PTR, BTF_KIND_FLOAT):
        return tt.kind == lt.kind
    if lt.kind == BTF_KIND_ARRAY:
        return tt.kind == BTF_KIND_ARRAY and fields_compatible(
            local, local.array_info(lt.id).elem_type_id, target,
            target.array_info(tt.id).elem_type_id)
    return False


def types_compatible(local: BTF, local_id: int, target: BTF, target_id: int,
                     depth: int = 0) -> bool:
    """libbpf's bpf_core_types_are_compat: same kinds all the way down
    through pointers, arrays and function prototypes (names were matched
    when the candidate was chosen)."""
    if depth > 32:
        return False
    lt, tt = local.resolve_type(local_id), target.resolve_type(target_id)
    if lt.kind in _ENUMS and tt.kind in _ENUMS:
        return True
    if lt.kind != tt.kind:
        return False
    if lt.kind == BTF_KIND_INT:
        return local.int_info(lt.id).bit_offset == 0 and target.int_info(tt.id).bit_offset == 0
    if lt.kind == BTF_KIND_PTR:
        return types_compatible(local, lt.type, target, tt.type, depth + 1)
    if lt.kind == BTF_KIND_ARRAY:
        return types_compatible(local, local.array_info(lt.id).elem_type_id, target,
                                target.array_info(tt.id).elem_type_id, depth + 1)
    if lt.kind == BTF_KIND_FUNC_PROTO:
        lp, tp = local.record(lt.id).entries, target.record(tt.id).entries
        return len(lp) == len(tp) and types_compatible(local, lt.type, target, tt.type,
                                                       depth + 1) and all(
            types_compatible(local, a.type, target, b.type, depth + 1) for a, b in zip(lp, tp))
    return True


def types_match(local: BTF, local_id: int, target: BTF, target_id: int) -> bool:
    """``bpf_core_type_matches()``: compatible, and for a struct or union
    every local member present in the target by name with a compatible type."""
    if not types_compatible(local, local_id, target, target_id):
        return False
    lt, tt = local.resolve_type(local_id), target.resolve_type(target_id)
    if lt.kind not in COMPOSITE_KINDS:
        return True
    theirs = {m.name: m for m in target.members(tt.id)}
    return all(m.name in theirs and fields_compatible(local, m.type, target,
                                                      theirs[m.name].type)
               for m in local.members(lt.id))


# --- matching against a candidate ----------------------------------------------------------

def _find_member(btf: BTF, type_id: int, name: str) -> Optional[Tuple[int, int, int]]:
    """(member type, bit offset, bitfield size) of ``name`` in the struct
    or union ``type_id``, looking into anonymous members."""
    for member in btf.members(type_id):
        if member.name == name:
            return member.type, member.bit_offset, member.bit_size
    for member in btf.members(type_id):
        inner = btf.resolve_type(member.type)
        if not member.name and inner.kind in COMPOSITE_KINDS:
            found = _find_member(btf, inner.id, name)
            if found is not None:
                return found[0], member.bit_offset + found[1], found[2]
    return None


def match(local: Spec, kind: int, target: BTF, candidate: int) -> Optional[Spec]:
    """The target spec of ``local`` in ``candidate``, or ``None``."""
    if kind in TYPE_KINDS:
        check = types_match if kind == BPF_CORE_TYPE_MATCHES else types_compatible
        ok = check(local.btf, local.root_id, target, candidate)
        return Spec(target, candidate, (), 0, candidate, 0) if ok else None
    if kind in ENUM_KINDS:
        wanted = essential_name(local.steps[0].name)
        for index, name in enumerate(enumerators(target, candidate)):
            if essential_name(name) == wanted:
                return Spec(target, candidate, (Access(candidate, index, name),), 0, candidate, 0)
        return None
    first = local.steps[0]
    bit_offset = first.index * target.sizeof(candidate) * 8
    steps = [Access(candidate, first.index, "")]
    type_id, bit_size = candidate, 0
    for step in local.steps[1:]:
        t = target.resolve_type(type_id)
        if step.name:
            if t.kind not in COMPOSITE_KINDS:
                return None
            found = _find_member(target, t.id, step.name)
            if found is None:
                return None
            local_member = local.btf.members(step.type_id)[step.index]
            if not fields_compatible(local.btf, local_member.type, target, found[0]):
                return None
            type_id, offset, bit_size = found
            bit_offset += offset
        else:
            if t.kind != BTF_KIND_ARRAY:
                return None
            info = target.array_info(t.id)
            if info.nelems and step.index >= info.nelems:
                return None
            bit_offset += step.index * info.elem_size * 8
            type_id, bit_size = info.elem_type_id, 0
        steps.append(Access(t.id, step.index, step.name))
    return Spec(target, candidate, tuple(steps), bit_offset, type_id, bit_size)


# --- values ----------------------------------------------------------------------------------

def field_value(spec: Spec, kind: int) -> Result:
    """What a field relocation of ``kind`` means in ``spec``'s BTF
    (libbpf's bpf_core_calc_field_relo)."""
    btf = spec.btf
    if kind == BPF_CORE_FIELD_EXISTS:
        return Result(1)
    last = spec.steps[-1]
    if not last.name:          # an array element or the root itself
        if kind == BPF_CORE_FIELD_BYTE_OFFSET:
            return Result(spec.bit_offset // 8)
        if kind == BPF_CORE_FIELD_BYTE_SIZE:
            return Result(btf.sizeof(spec.last_type_id))
        raise CoreError("relocation kind %d needs a member, not an array element" % kind)
    field_t = btf.resolve_type(spec.last_type_id)
    bit_offset, bit_size = spec.bit_offset, spec.bit_size
    if bit_size:
        byte_size = field_t.size
        byte_offset = bit_offset // 8 // byte_size * byte_size
        while bit_offset + bit_size - byte_offset * 8 > byte_size * 8:
            if byte_size >= 8:
                raise CoreError("bitfield does not fit an 8-byte load")
            byte_size *= 2
            byte_offset = bit_offset // 8 // byte_size * byte_size
    else:
        byte_size = btf.sizeof(spec.last_type_id)
        byte_offset = bit_offset // 8
        bit_size = byte_size * 8
    if kind == BPF_CORE_FIELD_BYTE_OFFSET:
        return Result(byte_offset, byte_size, spec.last_type_id)
    if kind == BPF_CORE_FIELD_BYTE_SIZE:
        return Result(byte_size)
    if kind == BPF_CORE_FIELD_SIGNED:
        signed = (field_t.kind in _ENUMS and field_t.kind_flag) or (
            field_t.kind == BTF_KIND_INT and btf.int_info(field_t.id).signed)
        return Result(int(signed))
    if kind == BPF_CORE_FIELD_LSHIFT_U64:
        return Result(64 - (bit_offset + bit_size - byte_offset * 8))
    return Result(64 - bit_size)


def value_of(spec: Optional[Spec], kind: int) -> Result:
    """The relocated value, or a poison request when ``spec`` is missing
    and the kind needs one."""
    if spec is None:
        return Result(0) if kind in _ZERO_WHEN_MISSING else Result(0, poison=True)
    if kind in FIELD_KINDS:
        return field_value(spec, kind)
    if kind == BPF_CORE_TYPE_ID_TARGET or kind == BPF_CORE_TYPE_ID_LOCAL:
        return Result(spec.root_id)
    if kind == BPF_CORE_TYPE_SIZE:
        return Result(spec.btf.sizeof(spec.root_id))
    if kind in (BPF_CORE_TYPE_EXISTS, BPF_CORE_TYPE_MATCHES, BPF_CORE_ENUMVAL_EXISTS):
        return Result(1)
    return Result(enumerators(spec.btf, spec.root_id)[spec.steps[0].name])


# --- applying --------------------------------------------------------------------------------

class Relocator:
    """Resolves the CO-RE records of an object against ``target`` (the
    kernel's BTF), caching candidates per local type."""

    def __init__(self, local: BTF, target: BTF):
        self.local = local
        self.target = target
        self._candidates: Dict[int, List[int]] = {}

    def candidates(self, local_id: int) -> List[int]:
        """Target types named as ``local_id`` is (up to a flavor), of its
        kind (enum and enum64 alike); none for an anonymous type."""
        if local_id not in self._candidates:
            t = self.local.type(local_id)
            name = essential_name(t.name)
            kinds = _ENUMS if t.kind in _ENUMS else (t.kind,)
            self._candidates[local_id] = ([c.id for c in self.target.find_all(name, kinds)]
                                          if name else [])
        return self._candidates[local_id]

    def resolve(self, relo: CoreRelo) -> Result:
        """The value ``relo`` needs on the target kernel; all matching candidates must agree."""
        spec = local_spec(self.local, relo)
        if relo.kind == BPF_CORE_TYPE_ID_LOCAL:
            return Result(relo.type_id)
        results = []
        for candidate in self.candidates(relo.type_id):
            target_spec = match(spec, relo.kind, self.target, candidate)
            if target_spec is not None:
                results.append(value_of(target_spec, relo.kind))
        if not results:
            return value_of(None, relo.kind)
        if len({r.value for r in results}) > 1:
            raise CoreError("%d candidate types %r match with different values %s: ambiguous"
                            % (len(results), essential_name(self.local.type(relo.type_id).name),
                               sorted({r.value for r in results})))
        return results[0]


def patch(code: bytearray, slot: int, result: Result, original_size: int = 0,
          may_resize: bool = True) -> None:
    """Write ``result`` into the instruction at ``slot`` (libbpf's
    bpf_core_patch_insn), or poison it. ``original_size`` is the field's
    size in the object, for a memory access whose size must follow."""
    opcode, regs, off, imm = _SLOT.unpack_from(code, slot * 8)
    cls = opcode & 0x07
    if result.poison or (cls in (isa.BPF_LDX, isa.BPF_ST, isa.BPF_STX) and result.size
                         and original_size and result.size != original_size
                         and not may_resize):
        poison(code, slot)
        return
    if cls in (isa.BPF_ALU, isa.BPF_ALU64):
        _SLOT.pack_into(code, slot * 8, opcode, regs, off, _s32(result.value))
    elif cls in (isa.BPF_LDX, isa.BPF_ST, isa.BPF_STX):
        if result.size and result.size in _SIZE_CODES and original_size != result.size:
            opcode = (opcode & ~0x18) | _SIZE_CODES[result.size]
        _SLOT.pack_into(code, slot * 8, opcode, regs, result.value, imm)
    elif opcode == isa.LD_IMM64_OPCODE:
        value = result.value & 0xFFFFFFFFFFFFFFFF
        _SLOT.pack_into(code, slot * 8, opcode, regs, off, _s32(value & 0xFFFFFFFF))
        _SLOT.pack_into(code, slot * 8 + 8, 0, 0, 0, _s32(value >> 32))
    else:
        raise CoreError("CO-RE relocation on an instruction (opcode %#x) it cannot patch"
                        % opcode)


def resizable(local: BTF, local_id: int, target: BTF, target_id: int) -> bool:
    """May a load of this field change size? Only between pointers and
    between unsigned integers, whose values zero extension keeps (libbpf)."""
    lt, tt = local.resolve_type(local_id), target.resolve_type(target_id)
    if lt.kind == tt.kind == BTF_KIND_PTR:
        return True
    return (lt.kind == tt.kind == BTF_KIND_INT and not local.int_info(lt.id).signed
            and not target.int_info(tt.id).signed)


def enumerators(btf: BTF, type_id: int) -> Dict[str, int]:
    """``{name: value}`` of the enum or enum64 ``type_id``, in order."""
    t = btf.resolve_type(type_id)
    out = {}
    for entry in btf.record(t.id).entries:
        if t.kind == BTF_KIND_ENUM64:
            value = entry.val_hi32 << 32 | entry.val_lo32
        else:
            value = entry.val & 0xFFFFFFFF
        out[btf.string(entry.name_off)] = value
    return out


def poison(code: bytearray, slot: int) -> None:
    """Make the instruction at ``slot`` (both halves of an ld_imm64) a
    call to the poison helper."""
    opcode = code[slot * 8]
    _SLOT.pack_into(code, slot * 8, isa.BPF_JMP | isa.BPF_CALL, 0, 0, POISON_HELPER)
    if opcode == isa.LD_IMM64_OPCODE:
        _SLOT.pack_into(code, slot * 8 + 8, isa.BPF_JMP | isa.BPF_CALL, 0, 0, POISON_HELPER)


def _s32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >> 31 else value


def relocate(elf: ElfFile, btf: BTF, btf_ext: BTFExt, code: Dict[str, bytearray],
             target_btf: Optional[Callable[[], BTF]]) -> None:
    """Apply every CO-RE record of ``btf_ext`` to the code sections in ``code``."""
    if target_btf is None:
        raise elf.error("has CO-RE relocations and no target BTF was given")
    relocator = Relocator(btf, target_btf())
    for section_name, relos in btf_ext.core_relos.items():
        section = elf.by_name.get(section_name)
        if section_name not in code or section is None:
            raise elf.error("CO-RE relocations for a section that holds no code",
                            section or None, None) if section else \
                elf.error("CO-RE relocations name section %r, which does not exist"
                          % section_name)
        for relo in relos:
            if relo.insn_off % 8 or relo.insn_off + 8 > len(code[section_name]):
                raise elf.error("CO-RE relocation at a byte that is no instruction", section,
                                relo.insn_off)
            try:
                result = relocator.resolve(relo)
                original = Result(0)
                if relo.kind == BPF_CORE_FIELD_BYTE_OFFSET:
                    original = field_value(local_spec(btf, relo), relo.kind)
                may_resize = not result.type_id or resizable(
                    btf, original.type_id, relocator.target, result.type_id)
                patch(code[section_name], relo.insn_off // 8, result, original.size,
                      may_resize)
            except BTFError as exc:
                raise elf.error("CO-RE relocation (kind %d, access %s) of %s: %s"
                                % (relo.kind, relo.access, btf.c_type(relo.type_id), exc),
                                section, relo.insn_off) from None
