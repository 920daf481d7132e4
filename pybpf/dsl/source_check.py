"""Mistakes Python accepts that running the function cannot see, found in its source.

A program function runs once to emit its code, so two mistakes leave no
trace in what it does:

* ``x = 5`` inside ``with p.if_(...)`` (or a ``for ... in p.range()``) where
  ``x`` is a ``p.var``: it rebinds the Python name; nothing is stored on
  the branch, and what follows uses the constant on every path. The DSL
  spells assignment ``x.set(5)``.
* ``return 1``: the program's return value is ``p.return_(1)``; a Python
  ``return`` of a value is lost (the program returned 0).

The function's source is read and parsed with :mod:`ast` once per code
object; a function whose source cannot be read (typed at a prompt) is not
checked.
"""

import ast
import functools
import inspect
import textwrap
from types import CodeType
from typing import Callable, Dict, Iterator, List, Optional

from ..errors import ProgramBuildError, SourceLocation

#: Statements of the builder that open a DSL block (``with p.if_(...)``).
_BLOCKS = {"if_", "elif_", "else_"}
#: Builder methods a DSL loop iterates over (``for i in p.range(n)``).
_LOOPS = {"range"}


def check_function(fn: Callable) -> None:
    """Raise :class:`ProgramBuildError` at the first mistake in ``fn``'s source."""
    mistake = _mistake(fn.__code__)
    if mistake is not None:
        raise ProgramBuildError(*mistake)


@functools.lru_cache(maxsize=None)
def _mistake(code: CodeType) -> Optional[tuple]:
    function = _parse(code)
    if function is None or not function.args.args:
        return None
    filename = code.co_filename
    first = code.co_firstlineno - 1
    builder = function.args.args[0].arg
    for node in _own_nodes(function):
        if isinstance(node, ast.Return) and node.value is not None \
                and not (isinstance(node.value, ast.Constant) and node.value.value is None):
            return ("a program function returns nothing: `%s` is lost (the program returns "
                    "0); use %s.return_(%s)" % (ast.unparse(node), builder,
                                                ast.unparse(node.value)),
                    SourceLocation(filename, first + node.lineno))
    variables = _declared_variables(function, builder)
    for node, assign in _assignments_in_blocks(function.body, builder, False):
        target = assign.targets[0] if isinstance(assign, ast.Assign) else assign.target
        if isinstance(target, ast.Name) and target.id in variables \
                and not _is_call(assign.value, builder, {"var"}):
            name = target.id
            return ("%s is a DSL variable (%s = %s.var(...) at line %d): `%s` only rebinds "
                    "the Python name, on every path; write %s.set(%s)"
                    % (name, name, builder, first + variables[name], ast.unparse(node), name,
                       ast.unparse(assign.value) if assign.value is not None else ""),
                    SourceLocation(filename, first + node.lineno))
    return None


def _parse(code: CodeType) -> Optional[ast.FunctionDef]:
    try:
        lines, _start = inspect.findsource(code)
    except (OSError, TypeError):
        return None
    block = inspect.getblock(lines[code.co_firstlineno - 1:])
    try:
        tree = ast.parse(textwrap.dedent("".join(block)))
    except SyntaxError:
        return None
    node = tree.body[0] if tree.body else None
    return node if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) else None


def _own_nodes(function: ast.AST) -> Iterator[ast.AST]:
    """The nodes of ``function``'s body, not those of functions nested in it."""
    pending: List[ast.AST] = list(function.body)  # type: ignore[attr-defined]
    while pending:
        node = pending.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda,
                                      ast.ClassDef)):
                pending.append(child)


def _is_call(node: Optional[ast.AST], builder: str, methods: set) -> bool:
    """Whether ``node`` is ``builder.<one of methods>(...)``."""
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
        and node.func.attr in methods and isinstance(node.func.value, ast.Name) \
        and node.func.value.id == builder


def _declared_variables(function: ast.AST, builder: str) -> Dict[str, int]:
    """Names bound to ``p.var(...)``, with the line of their first declaration."""
    found: Dict[str, int] = {}
    for node in _own_nodes(function):
        if isinstance(node, ast.Assign) and _is_call(node.value, builder, {"var"}):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    found[target.id] = min(found.get(target.id, node.lineno), node.lineno)
    return found


def _assignments_in_blocks(body: List[ast.stmt], builder: str, inside: bool) -> Iterator:
    """``(statement, assignment)`` for each plain assignment inside a DSL
    block (``with p.if_/elif_/else_``, ``for ... in p.range()``)."""
    for stmt in body:
        if inside and isinstance(stmt, (ast.Assign, ast.AnnAssign)):
            yield stmt, stmt
        opens = (isinstance(stmt, ast.With)
                 and any(_is_call(item.context_expr, builder, _BLOCKS) for item in stmt.items)) \
            or (isinstance(stmt, ast.For) and _is_call(stmt.iter, builder, _LOOPS))
        for field in ("body", "orelse", "finalbody"):
            children = getattr(stmt, field, None)
            if isinstance(children, list) and children and isinstance(children[0], ast.stmt):
                yield from _assignments_in_blocks(children, builder, inside or opens)
