"""The HTTP protocol the server runs: uvicorn's httptools protocol, a response in one write.

uvicorn writes a response's status line and headers when the app starts it, and its
body when the app sends it: two writes to the socket, two segments on the wire, and
a client reading `Content-Length` first may be woken twice to read one answer. Each
write is a system call made holding the GIL, and each wake-up of the other side is
paid for by both processes: on the two shared cores of the benchmark's virtual
machine, a loopback round trip (`SELECT 1`) costs the client about 110 µs of CPU.

`HttpToolsProtocol` here hands uvicorn's protocol a transport that keeps what is
written during one turn of the event loop and writes it at the end of that turn: a
response the app sends in one go (every answer of this service) leaves in one write.
Nothing is held longer than that turn, and a close writes what is kept first.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _Uvicorn


class _OneWritePerTurn:
    """A connection's transport whose writes of one loop turn go out as one."""

    __slots__ = ("_transport", "_loop", "_kept")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport, self._loop = transport, loop
        self._kept: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._kept:
            self._loop.call_soon(self.flush)
        self._kept.append(bytes(data))

    def flush(self) -> None:
        """Write what is kept, if the connection still takes it."""
        if not self._kept:
            return
        kept, self._kept = self._kept, []
        if not self._transport.is_closing():
            self._transport.write(kept[0] if len(kept) == 1 else b"".join(kept))

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:  # everything else is the transport's own
        return getattr(self._transport, name)


class HttpToolsProtocol(_Uvicorn):
    """uvicorn's httptools protocol, writing each response in one system call."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(_OneWritePerTurn(transport, self.loop))  # type: ignore[arg-type]
