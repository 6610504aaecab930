"""The static memory plan of a native slice: where every activation lives, fixed at build time.

The slice's input and outputs live in the caller's buffers; every other activation and each
kernel's scratch gets an offset in one arena. Two buffers share bytes only when their lifetimes
(first writing op to last reading op) are disjoint; buffers are placed largest first at the lowest
offset that fits (TFLite Micro's greedy planner does the same). Reshapes cost nothing: their
output is the input's buffer, unless it is a slice output, then the bytes are copied.
"""

from __future__ import annotations

from dataclasses import dataclass

from converter.native_graph import NativeGraph

ALIGN = 4


@dataclass(frozen=True)
class Location:
    """A buffer: ``base`` is "arena" or the name of a caller's pointer, plus a byte offset."""

    base: str
    offset: int = 0


@dataclass(frozen=True)
class Plan:
    tensors: dict[int, Location]
    scratch: dict[int, Location]  # op index -> its scratch (ops with scratch_bytes only)
    copies: frozenset[int]  # indices of alias ops that must copy their bytes
    arena_bytes: int


@dataclass
class _Buffer:
    key: tuple[str, int]
    size: int
    first: int
    last: int
    offset: int = -1


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def _place(buffers: list[_Buffer]) -> int:
    placed: list[_Buffer] = []
    for b in sorted(buffers, key=lambda b: (-b.size, b.first, b.key)):
        live = sorted((p for p in placed if p.first <= b.last and b.first <= p.last), key=lambda p: p.offset)
        offset = 0
        for p in live:
            if offset + b.size <= p.offset:
                break
            offset = max(offset, _align(p.offset + p.size))
        b.offset = offset
        placed.append(b)
    return max((_align(b.offset + b.size) for b in placed), default=0)


def plan(graph: NativeGraph, external: dict[int, str]) -> Plan:
    """Plan ``graph``; ``external`` maps the input and output tensor ids to the caller's pointer names."""
    root: dict[int, int] = {}
    copies = set()
    for k, op in enumerate(graph.ops):
        if op.kind == "alias":
            if op.output in external:
                copies.add(k)
            else:
                src = op.inputs[0]
                root[op.output] = root.get(src, src)
    buffers: dict[tuple[str, int], _Buffer] = {}
    for k, op in enumerate(graph.ops):
        if op.kind == "alias" and k not in copies:
            continue
        out = root.get(op.output, op.output)
        if out not in external:
            buffers[("t", out)] = _Buffer(("t", out), graph.tensors[out].size, k, k)
        if op.scratch_bytes:
            buffers[("s", k)] = _Buffer(("s", k), op.scratch_bytes, k, k)
        for i in op.inputs:
            b = buffers.get(("t", root.get(i, i)))
            if b is not None:
                b.last = k
    size = _place(list(buffers.values()))
    tensors = {t: Location(name) for t, name in external.items()}
    for (kind, key), b in buffers.items():
        if kind == "t":
            tensors[key] = Location("arena", b.offset)
    for alias, src in root.items():
        tensors[alias] = tensors[src]
    scratch = {k: Location("arena", b.offset) for (kind, k), b in buffers.items() if kind == "s"}
    return Plan(tensors, scratch, frozenset(copies), size)
