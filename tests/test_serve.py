"""`ticketing serve --workers N`: each worker listens on a socket of its own."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from bench.server import Server
from ticketing.migrate import upgrade


def _listening_sockets(port: int) -> int:
    """TCP sockets in LISTEN state on `port` (one per socket, however many processes hold it)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                count += 1
    return count


def test_workers_listen_each_on_their_own_socket_and_share_connections(tmp_path):
    url = f"sqlite:///{tmp_path / 'serve.db'}"
    upgrade(url)
    server = Server(url, 3, tmp_path / "server.log").start()
    socks = []
    try:
        deadline = time.monotonic() + 60  # the server answers once its first worker is up
        while _listening_sockets(server.port) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _listening_sockets(server.port) == 3
        for _ in range(24):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
            socks.append(sock)
        for sock in socks:  # answered, so the worker that holds it has accepted it
            assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        spread = server.connections_per_worker()
        assert sum(spread) == 24 and len(spread) == 3 and min(spread) > 0, spread
        # A second server on the same port is refused, not silently given half the connections.
        second = subprocess.run(
            [sys.executable, "-m", "ticketing.cli.main", "serve", "--port", str(server.port),
             "--workers", "2"], env={**os.environ, "TICKETING_DATABASE_URL": url},
            capture_output=True, text=True, timeout=60)
        assert second.returncode != 0 and "already in use" in second.stderr
        assert _listening_sockets(server.port) == 3
    finally:
        for sock in socks:
            sock.close()
        server.stop()


def _get_healthz(sock: socket.socket) -> bytes:
    """One whole answer to GET /healthz on `sock` (b"" if the server closed it): its head
    and then as many body bytes as its Content-Length says, however they were split."""
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = sock.recv(4096)
        if not chunk:
            return answer
        answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    length = int(next(line.split(b":", 1)[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:")))
    while len(body) < length:
        chunk = sock.recv(4096)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def test_an_idle_keep_alive_connection_outlasts_the_clients_pool_expiry(tmp_path):
    """A client or proxy reuses a pooled connection idle for up to its own expiry (httpx:
    5 s, uvicorn's default too; proxies: 60 s). The server must not close it first, or
    a request sent as it closes is lost to a reset."""
    url = f"sqlite:///{tmp_path / 'serve.db'}"
    upgrade(url)
    servers = [Server(url, workers, tmp_path / f"server-{workers}.log").start()
               for workers in (1, 2)]  # uvicorn.run, and the multi-socket supervisor
    socks = []
    try:
        for server in servers:
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            socks.append(sock)
            assert _get_healthz(sock).startswith(b"HTTP/1.1 200")
        time.sleep(6.5)  # longer than httpx's pool expiry and uvicorn's default timeout
        for sock in socks:
            assert _get_healthz(sock).startswith(b"HTTP/1.1 200")  # the same connection
    finally:
        for sock in socks:
            sock.close()
        for server in servers:
            server.stop()
