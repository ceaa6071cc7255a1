"""Buffered socket reads for a consuming py-amqp connection: the one place taskctl touches py-amqp internals.

py-amqp's TCP transport reads exactly the bytes it needs with one ``recv`` each: three system calls per
frame, nine per message. :func:`buffer_reads` replaces the transport's private ``_quick_recv`` (py-amqp 5.x,
plain TCP only) with a function that serves those reads from one 64 KiB ``recv``; with it a drain runs at
about the rate of a bare no-ack consumer.

Tested on py-amqp 5.1-5.4 (pyproject pins ``amqp>=5.1,<5.5``). Every private attribute is read inside one
guard: any AttributeError/TypeError (a renamed attribute, another transport class), an SSL transport or
bytes already buffered by py-amqp, and the connection keeps py-amqp's own reads. ``TASKCTL_AMQP_FASTPATH=0``
turns the fast path off.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any

#: bytes asked of the socket per read on a consuming connection
RECV_BUFFER = 64 * 1024
ENV_SWITCH = "TASKCTL_AMQP_FASTPATH"


class Reader:
    """State of a buffered consuming socket: the deadline of the current wait (None: the socket's own timeout)."""

    __slots__ = ("deadline",)

    def __init__(self) -> None:
        self.deadline: float | None = None


def enabled() -> bool:
    return os.environ.get(ENV_SWITCH, "1").strip().lower() not in ("0", "false", "no", "off")


def buffer_reads(amqp_connection: Any) -> Reader | None:
    """Have py-amqp read AMQP_CONNECTION's socket RECV_BUFFER bytes at a time; None where that cannot be done.

    Only whole reads py-amqp asked for are returned, so its own buffering and error handling are unchanged.
    While :attr:`Reader.deadline` is set, a read that has to wait raises ``TimeoutError`` at the deadline (as
    py-amqp's ``drain_events(timeout)`` would).
    """
    if not enabled():
        return None
    try:
        from amqp.transport import TCPTransport

        transport = amqp_connection.transport
        if type(transport) is not TCPTransport or transport._read_buffer:
            return None
        sock = transport.sock
        if not isinstance(sock, socket.socket) or transport._quick_recv != sock.recv:
            return None
        recv = sock.recv
        gettimeout, settimeout = sock.gettimeout, sock.settimeout
    except (AttributeError, TypeError, ImportError):
        return None
    reader = Reader()
    monotonic = time.monotonic
    buf = b""
    pos = 0

    def quick_recv(n: int) -> bytes:
        nonlocal buf, pos
        if pos >= len(buf):
            deadline = reader.deadline
            chunk: bytes
            if deadline is None:
                chunk = recv(RECV_BUFFER)
            else:
                left = deadline - monotonic()
                if left <= 0:
                    raise TimeoutError("timed out")
                prev = gettimeout()
                settimeout(left)
                try:
                    chunk = recv(RECV_BUFFER)
                finally:
                    settimeout(prev)
            if not chunk:
                return chunk  # closed: py-amqp raises
            buf, pos = chunk, 0
        end = pos + n
        data = buf if pos == 0 and end >= len(buf) else buf[pos:end]
        pos += len(data)
        return data

    try:
        transport._quick_recv = quick_recv
    except (AttributeError, TypeError):
        return None
    return reader
