"""Parse eBPF assembly text into an :class:`~pybpf.asm.AssembledProgram`.

The syntax is LLVM's (what ``llvm-objdump`` prints and ``llvm-mc`` reads)
plus the additions of :mod:`pybpf.disasm`'s annotated style, so that both
styles parse back to the program they came from:

* labels ``name:`` and symbolic targets ``goto out``, ``call my_function``;
* helpers by name ``call bpf_map_lookup_elem`` (or by id ``call 1``);
* ``call pc+3`` (bpf-to-bpf call by offset), ``call kfunc 1234`` (BTF id);
* map references ``r1 = map[events] ll`` and ``r1 = map[config][0]+8 ll``,
  function addresses ``r1 = subprog[callback] ll``, and llvm's
  ``ld_pseudo r1, src, imm`` for any other ld_imm64 (with a 64-bit imm);
* ``r0 = *(u8 *)skb[r1 + 4]`` (llvm can only write ``skb[r1]``);
* leading slot numbers ``  12: r0 = 0`` (ignored), comments ``#``, ``;``, ``//``.

Numeric jump offsets (``goto +3``, ``if r1 > r2 goto -2``) are kept exactly as
written. Every instruction records ``SourceLocation(filename, line)``, and bad
input raises :class:`~pybpf.errors.AssemblyError` naming the file, the line
and its text. This module reads text only; building programs is :mod:`pybpf.asm`.

>>> parse("r0 = 0\\nexit").bytecode().hex()
'b7000000000000009500000000000000'
"""

import linecache
import os
import re
from typing import Dict, List, NamedTuple, NoReturn, Optional, Set, Tuple

from . import asm, disasm_tables, helper_defs, isa
from .errors import AssemblyError, SourceLocation

# --- lexical pieces -------------------------------------------------------------------

_NAME = r"[A-Za-z_.$][\w.$]*"
_COMMENT = re.compile(r"#|;|//")
_LEADING_LABEL = re.compile(r"\s*(%s|\d+)\s*:" % _NAME)  # a label, or a slot number
_CALLED = re.compile(r"call\s+(%s)\s*$|subprog\[\s*(%s)\s*\]" % (_NAME, _NAME))
_REGISTER = re.compile(r"([rw])(\d+)$")
_IS_NAME = re.compile(_NAME + "$")

# Pieces of the instruction templates below. In a template a space stands for
# optional whitespace, "~" for required whitespace, and everything else is literal.
_PIECES = {
    "reg": r"([rw]\d+)",
    "operand": r"([+-]?\w+)",                       # a register or a number
    "num": r"([+-]?\w+)",
    "name": r"(%s)" % _NAME,
    "target": r"([+-]?[\w.$]+)",                    # a number or a label
    "signed": r"([+-]\w+)",
    "word": r"(\w+)",
    "goto": r"(goto|gotol|may_goto)",
    "size": r"([us]\d+)",
    "addr": r"\(\s*([rw]\d+)\s*(?:([+-])\s*(\w+))?\s*\)",   # (r1 + 8): base, sign, magnitude
    "bare_addr": r"([rw]\d+)\s*(?:([+-])\s*(\w+))?",        # r1 + 8
    "alu_op": r"(s/=|s%=|s>>=|<<=|>>=|\+=|-=|\*=|/=|\|=|&=|%=|\^=|=)",
    "jump_op": r"(==|!=|s>=|s<=|s>|s<|>=|<=|>|<|&)",
}


def _template(text: str) -> "re.Pattern[str]":
    out = []
    for part in re.split(r"(\{\w+\}| |~)", text):
        if part == " ":
            out.append(r"\s*")
        elif part == "~":
            out.append(r"\s+")
        elif part.startswith("{"):
            out.append(_PIECES[part[1:-1]])
        else:
            out.append(re.escape(part))
    return re.compile("".join(out))


# Operator spellings: the disassembler's tables read backwards, so that what
# it prints always parses.
ALU_OPS = {text: op for op, text in disasm_tables.ALU_OPERATORS.items()}
ALU_OPS.update({text: op for op, text in disasm_tables.SIGNED_ALU_OPERATORS.items()})
SIGNED_ALU_OPS = tuple(disasm_tables.SIGNED_ALU_OPERATORS.values())  # the signed forms set off = 1
JUMP_OPS = {text: op for op, text in disasm_tables.JUMP_OPERATORS.items()}
ATOMIC_ALU_OPS = {disasm_tables.ALU_OPERATORS[op]: op for op in disasm_tables.ATOMIC_ALU_NAMES}
ATOMIC_FETCH_OPS = {name: op for op, name in disasm_tables.ATOMIC_ALU_NAMES.items()}
LOAD_SIZES = {"u8": 1, "u16": 2, "u32": 4, "u64": 8}
SIGNED_LOAD_SIZES = {"s8": 1, "s16": 2, "s32": 4}
ATOMIC_SUFFIX_SIZES = {"_64": 8, "32_32": 4}
MNEMONICS = ("exit", "goto", "gotol", "may_goto", "call", "if", "lock", "ld_pseudo")


# Every instruction form, tried in order; each names the _Parser method that
# handles its groups.
_FORMS = [(_template(template), method) for template, method in (
    ("exit", "exit_"),
    ("{goto}~{target}", "goto"),
    ("call~kfunc~{num}", "call_kfunc"),
    ("call~pc{signed}", "call_pc"),
    ("call~{target}", "call"),
    ("if~{reg} {jump_op} {operand}~goto~{target}", "cond_jump"),
    ("lock~*({size} *) {addr} {alu_op} {reg}", "lock"),
    ("*({size} *) {addr} = {operand}", "store"),
    ("ld_pseudo~{reg} , {num} , {num}", "ld_pseudo"),
    ("{reg} = - {reg}", "neg"),
    ("{reg} = ({size}) {reg}", "movsx"),
    ("{reg} = {name}~{reg}", "endian"),
    ("{reg} = addr_space_cast( {reg} , {num} , {num} )", "addr_space_cast"),
    ("{reg} = *({size} *) {addr}", "load"),
    ("{reg} = *({size} *) skb[ {reg} ]", "ld_ind"),
    ("{reg} = *({size} *) skb[ {reg} + {num} ]", "ld_ind"),
    ("{reg} = *({size} *) skb[ {num} ]", "ld_abs"),
    ("{reg} = atomic_fetch_{name}(({size} *) {addr} , {reg} )", "fetch"),
    ("{reg} = xchg{word}( {bare_addr} , {reg} )", "xchg"),
    ("{reg} = cmpxchg{word}( {bare_addr} , {reg} , {reg} )", "cmpxchg"),
    ("{reg} = map[ {name} ]~ll", "ld_map"),
    ("{reg} = map[ {name} ][0] + {num}~ll", "ld_map_value"),
    ("{reg} = subprog[ {name} ]~ll", "ld_function"),
    ("{reg} = {num}~ll", "ld_imm64"),
    ("{reg} {alu_op} {operand}", "alu"),
)]


class Limits(NamedTuple):
    """Accepted values [low, high) of a number in the text. Where high goes past
    the signed range (immediates), values from -low up wrap to negative, as in
    llvm: ``0xffffffff`` is the 32-bit immediate -1."""

    low: int
    high: int
    description: str


IMM32 = Limits(-(1 << 31), 1 << 32, "32 bits")
IMM64 = Limits(-(1 << 63), 1 << 64, "64 bits")
OFF16 = Limits(-(1 << 15), 1 << 15, "a signed 16-bit offset")
OFF32 = Limits(-(1 << 31), 1 << 31, "a signed 32-bit offset")
ADDRESS_SPACE = Limits(0, 1 << 16, "16 bits (0..65535)")
VALUE_OFFSET = Limits(0, 1 << 31, "0..2147483647")
PSEUDO_SOURCE = Limits(0, isa.BPF_PSEUDO_MAP_IDX_VALUE + 1,
                       "0..%d" % isa.BPF_PSEUDO_MAP_IDX_VALUE)


class _Line(NamedTuple):
    lineno: int
    text: str            # the whole line as written, for error messages
    labels: List[str]
    body: str            # the instruction, without labels and comments


def _split(text: str) -> List[_Line]:
    out = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        body = _COMMENT.split(raw, 1)[0]
        labels = []
        match = _LEADING_LABEL.match(body)
        while match:
            if not match.group(1).isdigit():
                labels.append(match.group(1))
            body = body[match.end():]
            match = _LEADING_LABEL.match(body)
        out.append(_Line(lineno, raw, labels, body.strip()))
    return out


class _Parser:
    """Turns one line at a time into assembler calls."""

    def __init__(self, filename: str, lines: List[_Line]):
        self.filename = filename
        self.assembler = asm.Assembler()
        self.labels: Set[str] = {label for line in lines for label in line.labels}
        self.functions: Set[str] = set()
        for line in lines:
            for match in _CALLED.finditer(line.body):
                name = match.group(1) or match.group(2)
                if name in self.labels:
                    self.functions.add(name)
        self.location: Optional[SourceLocation] = None

    # -- helpers ---------------------------------------------------------------------

    def fail(self, message: str) -> NoReturn:
        raise AssemblyError(message, self.location)

    def emit(self, insn: isa.Instruction) -> None:
        self.assembler.emit(insn, self.location)

    def reg(self, text: str, kinds: str = "r", why: str = "this operand is 64 bits") -> isa.Reg:
        """Register ``text`` (``r3``/``w3``), whose letter must be in ``kinds``."""
        match = _REGISTER.match(text)
        if not match or int(match.group(2)) >= isa.MAX_BPF_REG:
            self.fail("bad register %r (registers are r0-r10, and w0-w10 for 32 bits)" % text)
        if match.group(1) not in kinds:
            self.fail("register %r is not allowed here: %s" % (text, why))
        return isa.Reg(int(match.group(2)))

    def number(self, text: str, limits: Limits, what: str = "immediate") -> int:
        try:
            value = int(text, 0)
        except ValueError:
            self.fail("bad number %r" % text)
        if not limits.low <= value < limits.high:
            self.fail("%s %s does not fit in %s" % (what, text, limits.description))
        if limits.low < 0 and value >= -limits.low:
            value -= 2 * -limits.low  # two's complement, as llvm reads it
        return value

    def address(self, base: str, sign: Optional[str],
                magnitude: Optional[str]) -> Tuple[isa.Reg, int]:
        """``(r1 - 8)`` -> (R1, -8)."""
        offset = 0
        if magnitude is not None:
            offset = self.number(sign + magnitude, OFF16, "offset")
        return self.reg(base, "r", "memory is addressed through a 64-bit register"), offset

    def operand(self, text: str, kind: str) -> isa.Operand:
        """A register of the same kind as the destination, or an immediate."""
        if _REGISTER.match(text):
            return self.reg(text, kind, "both operands must be r registers or both w registers")
        return self.number(text, IMM32)

    def value_reg(self, text: str, size: int) -> isa.Reg:
        """The register a load, store or atomic moves: r for 64 bits, r or w below."""
        return self.reg(text, "r" if size == 8 else "rw", "a 64-bit value needs an r register")

    def size(self, text: str, sizes: Dict[str, int]) -> int:
        if text not in sizes:
            self.fail("bad size %r (expected %s)" % (text, ", ".join(sizes)))
        return sizes[text]

    def target(self, text: str, limits: Limits) -> Tuple[Optional[int], Optional[str]]:
        """A jump target: (offset, None) for a number, (None, label) for a name."""
        if text[0] in "+-" or text[0].isdigit():
            return self.number(text, limits, "jump offset"), None
        if not _IS_NAME.match(text):
            self.fail("bad jump target %r" % text)
        return None, text

    # -- control flow -----------------------------------------------------------------

    def exit_(self) -> None:
        self.emit(isa.exit_())

    def goto(self, mnemonic: str, target: str) -> None:
        long = mnemonic == "gotol"
        offset, label = self.target(target, OFF32 if long else OFF16)
        if label is None:
            make = {"goto": isa.ja, "gotol": isa.gotol, "may_goto": isa.may_goto}[mnemonic]
            self.emit(make(offset))
        elif mnemonic == "may_goto":
            self.assembler.may_goto(label, location=self.location)
        else:
            self.assembler.goto(label, long=long, location=self.location)

    def cond_jump(self, dst: str, op: str, operand: str, target: str) -> None:
        kind = dst[0]
        dst_reg = self.reg(dst, kind)
        source = self.operand(operand, kind)
        offset, label = self.target(target, OFF16)
        if label is None:
            self.emit(isa.jump(JUMP_OPS[op], dst_reg, source, offset, jmp32=kind == "w"))
        else:
            self.assembler.jump(JUMP_OPS[op], dst_reg, source, label, jmp32=kind == "w",
                                location=self.location)

    def call(self, target: str) -> None:
        offset, name = self.target(target, IMM32)
        if name is None:
            self.emit(isa.call_helper(offset))  # any id: llvm prints every call as a number
        elif name in self.labels:
            self.assembler.call_function(name, location=self.location)
        elif name in helper_defs.HELPERS or "bpf_" + name in helper_defs.HELPERS:
            self.assembler.call(name, location=self.location)
        else:
            self.fail("unknown helper or function %r" % name)

    def call_pc(self, offset: str) -> None:
        self.emit(isa.call_local(self.number(offset, OFF32, "call offset")))

    def call_kfunc(self, btf_id: str) -> None:
        self.emit(isa.call_kfunc(self.number(btf_id, IMM32, "BTF id")))

    # -- arithmetic -------------------------------------------------------------------

    def alu(self, dst: str, op: str, operand: str) -> None:
        kind = dst[0]
        insn = isa.alu(ALU_OPS[op], self.reg(dst, kind), self.operand(operand, kind),
                       alu64=kind == "r", off=1 if op in SIGNED_ALU_OPS else 0)
        self.emit(insn)

    def neg(self, dst: str, src: str) -> None:
        if src != dst:
            self.fail("neg works in place: write %s = -%s" % (dst, dst))
        self.emit(isa.neg(self.reg(dst, "rw"), alu64=dst[0] == "r"))

    def movsx(self, dst: str, size: str, src: str) -> None:
        kind = dst[0]
        sizes = SIGNED_LOAD_SIZES if kind == "r" else {"s8": 1, "s16": 2}
        bits = 8 * self.size(size, sizes)
        src_reg = self.reg(src, kind, "both registers must be of one kind")
        self.emit(isa.movsx(self.reg(dst, kind), src_reg, bits, alu64=kind == "r"))

    def endian(self, dst: str, name: str, src: str) -> None:
        match = re.match(r"(be|le|bswap)(16|32|64)$", name)
        if not match:
            self.fail("unknown operation %r (expected be16..64, le16..64 or bswap16..64)" % name)
        if src != dst:
            self.fail("byte swaps work in place: write %s = %s %s" % (dst, name, dst))
        reg, bits = self.reg(dst), int(match.group(2))
        if match.group(1) == "bswap":
            self.emit(isa.bswap(reg, bits))
        else:
            self.emit(isa.endian(reg, bits, big=match.group(1) == "be"))

    def addr_space_cast(self, dst: str, src: str, dst_as: str, src_as: str) -> None:
        to_space = self.number(dst_as, ADDRESS_SPACE, "address space")
        from_space = self.number(src_as, ADDRESS_SPACE, "address space")
        imm = to_space << 16 | from_space
        insn = isa.addr_space_cast(self.reg(dst), self.reg(src), 0, 0)
        self.emit(insn._replace(imm=imm - (1 << 32) if imm >> 31 else imm))

    # -- memory -----------------------------------------------------------------------

    def load(self, dst: str, size: str, base: str, sign: str, magnitude: str) -> None:
        src, offset = self.address(base, sign, magnitude)
        if size in SIGNED_LOAD_SIZES:
            nbytes = SIGNED_LOAD_SIZES[size]
            self.emit(isa.ldx(nbytes, self.reg(dst, "r", "sign-extending loads fill 64 bits"),
                              src, offset, signed=True))
        else:
            nbytes = self.size(size, LOAD_SIZES)
            self.emit(isa.ldx(nbytes, self.value_reg(dst, nbytes), src, offset))

    def store(self, size: str, base: str, sign: str, magnitude: str, value: str) -> None:
        nbytes = self.size(size, LOAD_SIZES)
        dst, offset = self.address(base, sign, magnitude)
        if _REGISTER.match(value):
            self.emit(isa.stx(nbytes, dst, offset, self.value_reg(value, nbytes)))
        else:
            self.emit(isa.st(nbytes, dst, offset, self.number(value, IMM32)))

    def atomic_size(self, size: str) -> int:
        return self.size(size, {"u32": 4, "u64": 8})

    def lock(self, size: str, base: str, sign: str, magnitude: str, op: str, src: str) -> None:
        nbytes = self.atomic_size(size)
        if op not in ATOMIC_ALU_OPS:
            self.fail("no atomic %r (expected +=, |=, &= or ^=)" % op)
        dst, offset = self.address(base, sign, magnitude)
        self.emit(isa.atomic(nbytes, ATOMIC_ALU_OPS[op], dst, offset, self.value_reg(src, nbytes)))

    def fetch(self, result: str, op: str, size: str, base: str, sign: str, magnitude: str,
              src: str) -> None:
        nbytes = self.atomic_size(size)
        if op not in ATOMIC_FETCH_OPS:
            self.fail("no atomic_fetch_%s (expected add, or, and or xor)" % op)
        self.same_register(result, src, nbytes)
        dst, offset = self.address(base, sign, magnitude)
        self.emit(isa.atomic(nbytes, ATOMIC_FETCH_OPS[op] | isa.BPF_FETCH, dst, offset,
                             self.value_reg(src, nbytes)))

    def same_register(self, result: str, operand: str, nbytes: int) -> None:
        """Fetching atomics return the old value in their operand register."""
        self.value_reg(result, nbytes)
        if result[1:] != operand[1:]:
            self.fail("the result register must be the operand register (%s)" % operand)

    def xchg(self, result: str, suffix: str, base: str, sign: str, magnitude: str,
             src: str) -> None:
        nbytes = self.size(suffix, ATOMIC_SUFFIX_SIZES)
        self.same_register(result, src, nbytes)
        dst, offset = self.address(base, sign, magnitude)
        self.emit(isa.atomic(nbytes, isa.BPF_XCHG, dst, offset, self.value_reg(src, nbytes)))

    def cmpxchg(self, result: str, suffix: str, base: str, sign: str, magnitude: str,
                expected: str, src: str) -> None:
        nbytes = self.size(suffix, ATOMIC_SUFFIX_SIZES)
        for reg in (result, expected):
            if self.value_reg(reg, nbytes) != 0:
                self.fail("cmpxchg compares with and returns in r0, not %s" % reg)
        dst, offset = self.address(base, sign, magnitude)
        self.emit(isa.atomic(nbytes, isa.BPF_CMPXCHG, dst, offset, self.value_reg(src, nbytes)))

    # -- BPF_LD --------------------------------------------------------------------------

    def packet_size(self, dst: str, size: str) -> int:
        if dst != "r0":
            self.fail("packet loads always load into r0")
        return self.size(size, {"u8": 1, "u16": 2, "u32": 4})

    def ld_abs(self, dst: str, size: str, offset: str) -> None:
        self.emit(isa.ld_abs(self.packet_size(dst, size), self.number(offset, IMM32)))

    def ld_ind(self, dst: str, size: str, src: str, offset: str = "0") -> None:
        src_reg = self.reg(src, "r", "the packet offset is a 64-bit register")
        self.emit(isa.ld_ind(self.packet_size(dst, size), src_reg, self.number(offset, IMM32)))

    def ld_imm64(self, dst: str, value: str) -> None:
        self.emit(isa.ld_imm64(self.reg(dst), self.number(value, IMM64)))

    def ld_pseudo(self, dst: str, src: str, value: str) -> None:
        pseudo = self.number(src, PSEUDO_SOURCE, "pseudo source")
        self.emit(isa.ld_imm64(self.reg(dst), self.number(value, IMM64), pseudo))

    def ld_map(self, dst: str, name: str) -> None:
        self.assembler.ld_map(self.reg(dst), name, location=self.location)

    def ld_map_value(self, dst: str, name: str, offset: str) -> None:
        value_offset = self.number(offset, VALUE_OFFSET, "value offset")
        self.assembler.ld_map(self.reg(dst), name, value_offset=value_offset,
                              location=self.location)

    def ld_function(self, dst: str, name: str) -> None:
        if name not in self.labels:
            self.fail("unknown function %r" % name)
        self.assembler.ld_function(self.reg(dst), name, location=self.location)

    # -- lines ------------------------------------------------------------------------

    def line(self, line: _Line) -> None:
        self.location = SourceLocation(self.filename, line.lineno)
        for label in line.labels:
            if label in self.functions:
                self.assembler.function(label, self.location)
            else:
                self.assembler.label(label, self.location)
        if not line.body:
            return
        for pattern, method in _FORMS:
            match = pattern.fullmatch(line.body)
            if match:
                getattr(self, method)(*match.groups())
                return
        word = re.match(r"[A-Za-z_]\w*", line.body)
        if word and not _REGISTER.match(word.group()) and word.group() not in MNEMONICS:
            self.fail("unknown mnemonic %r" % word.group())
        self.fail("cannot parse this instruction")


def _remember_text(filename: str, text: str) -> None:
    """Let linecache (and so disasm's ``source=True``) show lines of text that
    exists in memory only: under a pseudo file name such as ``<asm>``, or a
    name given for text that is not (or no longer) on disk."""
    if filename.startswith("<") or not os.path.isfile(filename):
        lines = [line + "\n" for line in text.splitlines()]
        linecache.cache[filename] = (len(text), None, lines, filename)


def parse(text: str, *, filename: str = "<asm>") -> asm.AssembledProgram:
    """Assemble ``text``; see the module docstring for the syntax."""
    lines = _split(text)
    _remember_text(filename, text)
    parser = _Parser(filename, lines)
    for line in lines:
        try:
            parser.line(line)
        except AssemblyError as exc:
            raise AssemblyError(exc.message, exc.location or parser.location, line.text) from None
    try:
        return parser.assembler.assemble()
    except AssemblyError as exc:
        line_text = None
        if exc.location is not None and exc.location.filename == filename:
            line_text = lines[exc.location.line - 1].text
        raise AssemblyError(exc.message, exc.location, line_text) from None
