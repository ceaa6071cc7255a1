"""The pass over a pickle's opcodes that runs before the C unpickler sees it: lengths only, no objects built.

CPython's unpickler allocates what a pickle declares before it reads it: ``LONG_BINPUT 2**27`` (9 bytes) grows
its memo to 2 GB, ``BINBYTES`` of 4 GB reserves 4 GB. :func:`check_opcodes` refuses memo indices and declared
lengths the data cannot hold and more than :data:`MAX_OPCODES` opcodes (each builds at most one small object, so
this bounds what a load allocates), and tells whether the pickle can share a container.
"""

from __future__ import annotations

__all__ = ["MAX_OPCODES", "PickleDecodeError", "check_opcodes"]

#: at most this many opcodes: each builds at most one small object, so this bounds what a load allocates
MAX_OPCODES = 2_000_000


class PickleDecodeError(ValueError):
    """The bytes are not a well-formed pickle, or one too large to read safely."""


# -- the opcode pass: lengths only, so the C unpickler never sees a length or memo index it would allocate for.
# It also tells whether the pickle can share a container (a memo GET or DUP of one): only then can the value
# expand when rendered, and only then (or when a placeholder needs finishing) does the value need the full walk.
#
# per opcode byte: >= 0 a fixed argument width * 2, plus 1 when the opcode pushes a scalar; < 0 a kind below
(
    _LINE, _LINE_OTHER, _TWO_LINES, _LEN1, _LEN4, _LEN4_SIGNED, _LEN8, _PUT, _BINPUT, _LONG_BINPUT, _MEMOIZE,
    _GET, _BINGET, _LONG_BINGET, _DUP, _FRAME, _PROTO, _STOP, _BAD,
) = range(-1, -20, -1)  # fmt: skip


def _opcode_kinds() -> list[int]:
    kinds = [_BAD] * 256
    for ops, kind in (
        (b"N\x88\x89", 1),  # scalars, no argument
        (b"K", 3),
        (b"M", 5),
        (b"J", 9),
        (b"G", 17),
        (b"]ael)t\x85\x86\x87}dsu\x8f\x90\x910(1\x93RbioQ\x81\x92\x97\x98", 0),  # the rest
        (b"\x82", 2),
        (b"\x83", 4),
        (b"\x84", 8),
        (b"ILSVF", _LINE),
        (b"P", _LINE_OTHER),
        (b"ci", _TWO_LINES),
        (b"UC\x8a\x8c", _LEN1),
        (b"BX", _LEN4),
        (b"T\x8b", _LEN4_SIGNED),
        (b"\x8d\x8e\x96", _LEN8),
        (b"p", _PUT),
        (b"q", _BINPUT),
        (b"r", _LONG_BINPUT),
        (b"\x94", _MEMOIZE),
        (b"g", _GET),
        (b"h", _BINGET),
        (b"j", _LONG_BINGET),
        (b"2", _DUP),
        (b"\x95", _FRAME),
        (b"\x80", _PROTO),
        (b".", _STOP),
    ):
        for op in ops:
            kinds[op] = kind
    return kinds


_KINDS = _opcode_kinds()


def check_opcodes(data: bytes) -> bool:
    """Refuse what would make the C unpickler allocate more than DATA can justify; True when the pickle may
    share a container (then its expansion must be counted)."""
    n = len(data)
    i = ops = memo = 0
    limit = MAX_OPCODES
    memo_limit = n + 256  # a memo index never needs to pass the number of opcodes
    kinds = _KINDS
    scalar = False  # whether the top of the stack is a scalar (as far as this pass can tell)
    containers: set[int] = set()  # memo slots that may hold a container
    shares = False
    while i < n and ops <= limit:
        k = kinds[data[i]]
        i += 1
        ops += 1
        if k >= 0:
            i += k >> 1
            scalar = bool(k & 1)
            continue
        if k == _LEN1:
            if i >= n:
                break
            i += 1 + data[i]
            scalar = True
        elif k in (_LEN4, _LEN4_SIGNED, _LEN8):
            width = 8 if k == _LEN8 else 4
            size = int.from_bytes(data[i : i + width], "little", signed=k == _LEN4_SIGNED)
            if size < 0 or size > n - i - width:
                raise PickleDecodeError("pickle declares more data than it holds")
            i += width + size
            scalar = True
        elif k in (_MEMOIZE, _BINPUT, _LONG_BINPUT, _PUT, _BINGET, _LONG_BINGET, _GET):
            if k == _MEMOIZE:
                slot = memo
                memo += 1
            elif k in (_BINPUT, _BINGET):
                slot = data[i] if i < n else 0
                i += 1
            elif k in (_LONG_BINPUT, _LONG_BINGET):
                slot = int.from_bytes(data[i : i + 4], "little")
                i += 4
            else:
                end = data.find(b"\n", i)
                if end < 0:
                    break
                if end - i > len(str(memo_limit)):
                    raise PickleDecodeError("pickle memo index larger than the pickle")
                try:
                    slot = int(data[i:end])
                except ValueError:
                    slot = -1
                i = end + 1
            if k in (_BINGET, _LONG_BINGET, _GET):
                scalar = slot not in containers
                shares = shares or not scalar
            elif slot > memo_limit:
                raise PickleDecodeError("pickle memo index larger than the pickle")
            elif scalar:
                containers.discard(slot)
            else:
                containers.add(slot)
        elif k in (_LINE, _LINE_OTHER, _TWO_LINES):
            end = data.find(b"\n", i)
            if end < 0:
                break
            if k == _TWO_LINES:
                end = data.find(b"\n", end + 1)
                if end < 0:
                    break
            i = end + 1
            scalar = k == _LINE
        elif k == _DUP:
            shares = shares or not scalar
        elif k == _FRAME:
            i += 8
        elif k == _PROTO:
            i += 1
        elif k == _STOP:
            break
        else:
            raise PickleDecodeError(f"invalid pickle opcode {data[i - 1]:#04x} at byte {i - 1}")
    if ops > limit:
        raise PickleDecodeError(f"pickle has more than {limit:,} opcodes")
    return shares
