"""`logsieve serve`: the HTTP API (logsieve.api.app) over a clean table, until Ctrl-C."""

from __future__ import annotations

import argparse
import sys

from logsieve import settings
from logsieve.api.app import create_app
from logsieve.api.dataset import DEFAULT_REFRESH_INTERVAL
from logsieve.api.serving import BackgroundServer, is_wildcard, port_number, shutdown_signals
from logsieve.cli import verbosity

#: Log levels `serve` and `up` accept (uvicorn's names).
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--clean",
        metavar="URI",
        default=None,
        help="clean Delta table: a directory or s3://bucket/prefix "
        f"(default: ${settings.CLEAN_URI})",
    )
    parser.add_argument(
        "--errors",
        metavar="URI",
        default=None,
        help="error records: a directory or s3://bucket/prefix (default: "
        f"${settings.ERROR_URI}, "
        "else errors/ beside a local clean table, as `process --out DIR` writes them)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument(
        "--port", type=port_number, default=8000, metavar="PORT", help="port (0: a free one)"
    )
    parser.add_argument(
        "--refresh-interval",
        type=float,
        default=DEFAULT_REFRESH_INTERVAL,
        metavar="SECONDS",
        help="how often the Delta log is checked for new commits (default: 1)",
    )
    parser.add_argument("--access-log", action="store_true", help="log every request")
    parser.add_argument(
        "--log-level",
        default="warning",
        choices=LOG_LEVELS,
        help="uvicorn's log level (-v: info, and every request)",
    )


def run_serve(args: argparse.Namespace) -> int:
    """Serve until SIGINT or SIGTERM, then stop cleanly."""
    app = create_app(args.clean, refresh_interval=args.refresh_interval, errors_uri=args.errors)
    loud = verbosity(args) > 0  # -v: uvicorn's info lines and every request
    server = BackgroundServer(
        app,
        args.host,
        args.port,
        log_level="info" if loud and args.log_level == "warning" else args.log_level,
        access_log=args.access_log or loud,
    )
    with shutdown_signals() as stop, server:
        if verbosity(args) >= 0:
            print(
                f"logsieve serve: {app.state.table.uri} on {server.url}"
                f"{' (listening on every interface)' if is_wildcard(args.host) else ''}\n"
                f"  dashboard: {server.url}/\n"
                f"  curl '{server.url}/logins_today?date=YYYY-MM-DD&tz=Europe/Berlin'\n"
                f"  API docs: {server.url}/docs   (Ctrl-C stops)",
                flush=True,
            )
        while not stop.wait(0.2):
            if not server.alive:
                print("logsieve serve: the HTTP server stopped unexpectedly", file=sys.stderr)
                return 1
    if verbosity(args) >= 0:
        print("logsieve serve: stopped", flush=True)
    return 0


__all__ = ["LOG_LEVELS", "add_serve_arguments", "run_serve"]
