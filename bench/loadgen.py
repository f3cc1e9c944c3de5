"""Load generator: a fixed number of keep-alive HTTP/1.1 connections over asyncio streams.

It runs in a process of its own (`python -m bench.loadgen SPEC.json`), one core at
most, so the server keeps the rest. Requests are rendered to bytes beforehand; the
client only writes them, reads the answers and times them. Each connection sends
its next request when the previous answer is in (closed loop), so the load is
exactly `connections` requests in flight.
"""

from __future__ import annotations

import asyncio
import json
import os
import pickle
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import cycle
from pathlib import Path
from typing import Any


def render(method: str, path: str, headers: dict[str, str] | None = None,
           body: bytes | None = None) -> bytes:
    """One HTTP/1.1 request as bytes, ready to write on a keep-alive connection."""
    lines = [f"{method} {path} HTTP/1.1", "Host: bench", "Connection: keep-alive"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    lower = head.lower()
    at = lower.find(b"\r\ncontent-length:")
    if at >= 0:
        end = lower.index(b"\r\n", at + 2)
        size = int(head[at + 17:end])
        body = await reader.readexactly(size) if size else b""
    elif b"\r\ntransfer-encoding: chunked" in lower:
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            parts.append(await reader.readexactly(size + 2))
            if size == 0:
                break
        body = b"".join(p[:-2] for p in parts)
    else:
        body = await reader.read()
    return status, body, b"\r\nconnection: close" in lower


@dataclass
class Record:
    """What the connections saw: latencies, statuses, bodies that matched `expect`."""

    expect: bytes | None
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    matched: int = 0
    errors: list[str] = field(default_factory=list)
    samples: list[str] = field(default_factory=list)
    last_done: float = 0.0
    exhausted: bool = False

    def add(self, started: float, done: float, status: int, body: bytes) -> None:
        self.latencies.append(done - started)
        self.statuses[status] += 1
        self.last_done = max(self.last_done, done)
        if self.expect is not None and self.expect in body:
            self.matched += 1
        elif status >= 300 and len(self.samples) < 5:
            self.samples.append(f"{status} {body[:300].decode('utf-8', 'replace')}")


async def _connection(host: str, port: int, source: Iterator[bytes], stop_at: float,
                      rec: Record) -> None:
    reader = writer = None
    while time.perf_counter() < stop_at:
        request = next(source, None)
        if request is None:
            rec.exhausted = True
            break
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(host, port)
            started = time.perf_counter()
            writer.write(request)
            status, body, close = await _read_response(reader)
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            rec.errors.append(f"{type(exc).__name__}: {exc}")
            if writer is not None:
                writer.close()
            reader = writer = None
            continue
        rec.add(started, time.perf_counter(), status, body)
        if close:
            writer.close()
            reader = writer = None
    if writer is not None:
        writer.close()


def _quantile(ordered: list[float], q: float) -> float | None:
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _run(spec: dict[str, Any], requests: list[bytes]) -> dict[str, Any]:
    source = cycle(requests) if spec.get("cycle") else iter(requests)
    expect = spec.get("expect")
    rec = Record(expect.encode() if expect else None)
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    stop_at = started + float(spec["seconds"])
    targets = spec["targets"]  # connection i goes to target i mod len(targets)
    await asyncio.gather(*(
        _connection(*targets[i % len(targets)], source, stop_at, rec)
        for i in range(int(spec["connections"]))))
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    elapsed = max(rec.last_done, started + 1e-9) - started
    ordered = sorted(rec.latencies)
    ms = lambda v: None if v is None else round(v * 1000, 3)  # noqa: E731
    return {
        "requests": len(ordered), "seconds": round(elapsed, 4),
        "per_second": round(len(ordered) / elapsed, 2) if ordered else 0.0,
        "p50_ms": ms(_quantile(ordered, 0.50)), "p90_ms": ms(_quantile(ordered, 0.90)),
        "p99_ms": ms(_quantile(ordered, 0.99)), "max_ms": ms(ordered[-1] if ordered else None),
        "statuses": {str(k): v for k, v in sorted(rec.statuses.items())},
        "matched": rec.matched if expect else None, "errors": len(rec.errors),
        "error_samples": rec.errors[:5], "bad_samples": rec.samples,
        "exhausted": rec.exhausted,
        "client_cpu_seconds": round(cpu1.ru_utime + cpu1.ru_stime
                                    - cpu0.ru_utime - cpu0.ru_stime, 3),
    }


def main(argv: list[str]) -> int:
    """`python -m bench.loadgen SPEC.json`: run the spec, print the result as JSON."""
    spec = json.loads(Path(argv[0]).read_text())
    with open(spec["requests_path"], "rb") as fh:
        requests = pickle.load(fh)
    try:
        import uvloop  # installed with uvicorn[standard]; a cheaper event loop

        uvloop.install()
    except ImportError:
        pass
    print(json.dumps(asyncio.run(_run(spec, requests))))
    return 0


def spawn(base_url: str | list[str], requests: list[bytes], *, connections: int,
          seconds: float, cycle_requests: bool = False,
          expect: str | None = None) -> dict[str, Any]:
    """Run the load generator in a separate process; connections spread over the URLs."""
    urls = [base_url] if isinstance(base_url, str) else base_url
    targets = []
    for url in urls:
        host, _, port = url.removeprefix("http://").rstrip("/").partition(":")
        targets.append([host, int(port or 80)])
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        req_path, spec_path = Path(tmp) / "requests.pickle", Path(tmp) / "spec.json"
        req_path.write_bytes(pickle.dumps(requests))
        spec_path.write_text(json.dumps({
            "targets": targets, "connections": connections,
            "seconds": seconds, "requests_path": str(req_path), "cycle": cycle_requests,
            "expect": expect}))
        root = Path(__file__).resolve().parent.parent
        env = {**os.environ, "PYTHONPATH": str(root)}
        out = subprocess.run([sys.executable, "-m", "bench.loadgen", str(spec_path)],
                             capture_output=True, text=True, env=env, cwd=root,
                             timeout=seconds + 120)
    if out.returncode != 0:
        raise RuntimeError(f"load generator failed:\n{out.stderr}")
    return json.loads(out.stdout)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
