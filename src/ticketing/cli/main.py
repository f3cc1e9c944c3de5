"""The `ticketing` command: serve, migrate, load demo data."""

from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile

from ticketing.kit.errors import TicketingError

EXIT_CODES = {401: 3, 403: 3, 404: 4, 409: 5, 422: 2}


def reuseport_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to host:port with SO_REUSEPORT (not listening yet)."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def _answers(host: str, port: int) -> bool:
    """Whether something already accepts connections on host:port."""
    target = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)
    try:
        with socket.create_connection((target, port), timeout=2):
            return True
    except OSError:
        return False


class OwnSocket:
    """Stands in for the listening socket uvicorn hands each worker: the worker binds its own.

    With one shared socket, whichever worker wakes first accepts, so keep-alive
    connections pile onto one worker while another idles. Each worker listening on a
    socket of its own (SO_REUSEPORT) lets the kernel spread connections over them.
    Unpickling in the worker process (uvicorn spawns workers) does the binding.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port

    def __reduce__(self) -> tuple[object, tuple[str, int]]:
        return reuseport_socket, (self.host, self.port)


# How long an idle keep-alive connection stays open. It must outlast the idle time after
# which the clients and proxies in front reuse or drop a pooled connection (60 s for
# nginx's and most load balancers' upstream pools; 5 s for httpx), or the server closes
# a connection just as one of them sends a request on it, and the sender gets a reset
# (a 502 from a proxy, a ReadError from httpx) for a request that never arrived.
KEEP_ALIVE_SECONDS = 75


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from uvicorn.supervisors import Multiprocess

    from ticketing.api.protocol import HttpToolsProtocol

    app = "ticketing.api.app:create_app_from_env"
    options = dict(factory=True, access_log=False, log_level="warning", timeout_graceful_shutdown=10,
                   timeout_keep_alive=KEEP_ALIVE_SECONDS, http=HttpToolsProtocol)
    if args.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="ticketing-metrics-")
    if args.workers <= 1 or not hasattr(socket, "SO_REUSEPORT"):
        uvicorn.run(app, host=args.host, port=args.port, workers=args.workers, **options)
        return 0
    try:  # held (never listening) while the workers run: no other program takes the port
        holder = reuseport_socket(args.host, args.port)
        port = holder.getsockname()[1]
        if _answers(args.host, port):  # another server with SO_REUSEPORT would share it silently
            holder.close()
            raise OSError(f"address already in use: another server listens on port {port}")
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    config = uvicorn.Config(app, host=args.host, port=port, workers=args.workers, **options)
    with holder:
        Multiprocess(config, sockets=[OwnSocket(args.host, port)]).run()  # type: ignore[list-item]
    return 0


def _db_upgrade(_args: argparse.Namespace) -> int:
    from ticketing.migrate import upgrade
    from ticketing.settings import Settings

    upgrade(Settings().database_url)
    print("database is at the latest schema")
    return 0


def _demo(_args: argparse.Namespace) -> int:
    from ticketing.db import Database
    from ticketing.settings import Settings
    from ticketing.tenant.demo import load_demo

    db = Database(Settings().database_url, pool_size=1)
    with db.transaction() as session:
        created = load_demo(session)
    db.dispose()
    print("demo data: " + (", ".join(created) if created else "already loaded, nothing changed"))
    return 0


def _check(_args: argparse.Namespace) -> int:
    from ticketing.audit.checker import check_database
    from ticketing.db import Database
    from ticketing.settings import Settings

    db = Database(Settings().database_url, pool_size=1)
    try:
        violations = check_database(db)
    finally:
        db.dispose()
    for violation in violations:
        print(violation)
    if violations:
        print(f"{len(violations)} invariant violation(s)", file=sys.stderr)
        return 1
    print("ok: every invariant holds")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ticketing", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve the HTTP API")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--workers", type=int, default=1)
    serve.set_defaults(func=_serve)
    db = sub.add_parser("db", help="database schema")
    dbsub = db.add_subparsers(dest="db_command", required=True)
    dbsub.add_parser("upgrade", help="apply schema migrations").set_defaults(func=_db_upgrade)
    sub.add_parser("demo", help="load the demo data (idempotent)").set_defaults(func=_demo)
    sub.add_parser("check", help="verify stock, ticket, payment and notification invariants"
                   ).set_defaults(func=_check)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `ticketing` console script."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except TicketingError as exc:
        print(f"error: {exc.message} ({exc.code})", file=sys.stderr)
        return EXIT_CODES.get(exc.status_code, 1)


if __name__ == "__main__":
    sys.exit(main())
