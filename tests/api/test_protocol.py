"""api.protocol: what one turn of the event loop writes leaves in one write, in order,
and nothing kept is lost at a close. On a real socket and event loop."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import uvloop

from ticketing.api.protocol import HttpToolsProtocol, _OneWritePerTurn


class _Recording:
    """The loop's transport, each write recorded as it is made."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport, self.writes = transport, []

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))
        self.transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


async def _connected() -> tuple[socket.socket, Any, list[bytes]]:
    """A transport on one end of a socket pair, its writes recorded; the other end."""
    with socket.create_server(("127.0.0.1", 0)) as listening:  # TCP, as the server's
        theirs = socket.create_connection(listening.getsockname())
        ours, _ = listening.accept()
    loop = asyncio.get_running_loop()
    transport, _ = await loop.connect_accepted_socket(asyncio.Protocol, ours)
    theirs.settimeout(5)
    recording = _Recording(transport)
    return theirs, recording, recording.writes


def _read(peer: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        data += peer.recv(65536)
    return data


def test_a_turns_writes_go_out_as_one():
    async def scenario() -> None:
        peer, transport, writes = await _connected()
        kept = _OneWritePerTurn(transport, asyncio.get_running_loop())
        kept.write(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\n")
        kept.write(memoryview(b"body"))
        assert writes == []  # nothing before the turn ends
        await asyncio.sleep(0)
        assert writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nbody"]
        kept.write(b"next")  # the next turn's writes are its own
        await asyncio.sleep(0)
        assert writes[1:] == [b"next"]
        assert _read(peer, 46) == b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nbodynext"
        kept.close()
        peer.close()

    asyncio.run(scenario())


def test_a_close_writes_what_is_kept_first_and_nothing_after():
    async def scenario() -> None:
        peer, transport, writes = await _connected()
        kept = _OneWritePerTurn(transport, asyncio.get_running_loop())
        kept.write(b"last words")
        kept.close()
        assert writes == [b"last words"]
        assert kept.is_closing()  # the transport's own state, through the wrapper
        kept.write(b"too late")
        await asyncio.sleep(0)  # a closing transport is written no more
        assert writes == [b"last words"]
        assert _read(peer, 10) == b"last words"
        assert peer.recv(10) == b""  # then the connection ends
        peer.close()

    asyncio.run(scenario())


def test_the_server_protocol_answers_in_one_write_on_uvloop():
    """uvicorn's protocol with the wrapper, on the loop the server runs: a whole
    response from the app, in one write of the transport."""
    async def app(scope, receive, send):  # noqa: ANN001
        if scope["type"] != "http":
            return
        await receive()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    async def scenario() -> None:
        from uvicorn.config import Config
        from uvicorn.server import ServerState

        config = Config(app, http=HttpToolsProtocol, lifespan="off")
        config.load()
        loop = asyncio.get_running_loop()
        peer, transport, writes = await _connected()
        protocol = HttpToolsProtocol(config, ServerState(), {}, loop)
        protocol.connection_made(transport)
        protocol.data_received(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        for _ in range(20):
            await asyncio.sleep(0)
        assert len(writes) == 1 and writes[0].startswith(b"HTTP/1.1 200 OK\r\n")
        assert writes[0].endswith(b"\r\n\r\nok")
        protocol.connection_lost(None)
        transport.close()
        peer.close()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(scenario())
