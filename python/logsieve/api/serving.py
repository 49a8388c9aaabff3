"""Serving an app: sockets, a uvicorn server in a background thread, signals, host and port."""

from __future__ import annotations

import argparse
import contextlib
import signal
import socket
import threading
import time
from collections.abc import Iterator
from types import FrameType
from typing import TYPE_CHECKING, Any

from logsieve.errors import ConfigError, InternalError

if TYPE_CHECKING:
    pass


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening-ready TCP socket, bound up front so a busy port is a clear one-line error."""
    if not 0 <= port <= 65535:
        raise ConfigError(f"port {port} is not a TCP port number (0-65535; 0 picks a free one)")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
    except (OSError, UnicodeError) as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc}") from exc
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    return sock


class BackgroundServer:
    """uvicorn serving an ASGI app from a daemon thread; `with` starts it and stops it."""

    def __init__(
        self,
        app: Any,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        log_level: str = "warning",
        access_log: bool = False,
    ) -> None:
        import uvicorn

        self.socket = bind_socket(host, port)
        self.host = host
        self.port: int = self.socket.getsockname()[1]
        config = uvicorn.Config(app, log_level=log_level, access_log=access_log, lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [self.socket]},
            name="logsieve-api",
            daemon=True,
        )

    @property
    def url(self) -> str:
        """A URL clients can use: a wildcard address (0.0.0.0, ::) is reached through loopback."""
        return f"http://{url_host(self.host)}:{self.port}"

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def start(self, timeout: float = 15.0) -> None:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise InternalError(f"the HTTP server on {self.url} did not start")
            time.sleep(0.01)

    def stop(self, timeout: float = 15.0) -> None:
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout)
        self.socket.close()

    def __enter__(self) -> BackgroundServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


@contextlib.contextmanager
def shutdown_signals() -> Iterator[threading.Event]:
    """An event set by SIGINT or SIGTERM while inside; the previous handlers come back after."""
    stop = threading.Event()

    def handle(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def port_number(text: str) -> int:
    """argparse type for a TCP port: 0-65535, where 0 asks the system for a free one."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number 0-65535")
    return port


def url_host(host: str) -> str:
    """`host` as it goes in a URL that clients connect to: a wildcard is reached via loopback."""
    if is_wildcard(host):
        host = "::1" if ":" in host else "127.0.0.1"
    return f"[{host.replace('%', '%25')}]" if ":" in host else host


def is_wildcard(host: str) -> bool:
    """Whether binding `host` listens on every interface (0.0.0.0, ::, 0, ::0 ...)."""
    import ipaddress

    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return host == "0"  # what inet_aton reads as 0.0.0.0
