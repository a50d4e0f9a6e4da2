"""``seo-export serve REPO``: a Triton Inference Server on 127.0.0.1 over a model repository, until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from seo_export.cli.common import positive_int


def _port(text: str) -> int:
    value = positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"expected a port number up to 65535, got {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("repository", nargs="?", metavar="REPO", help="a model repository (`seo-export triton-repo`)")
    parser.add_argument("--http-port", type=_port, default=8000, metavar="P", help="HTTP/REST port (default 8000)")
    parser.add_argument("--grpc-port", type=_port, default=8001, metavar="Q", help="gRPC port (default 8001)")
    parser.add_argument("--metrics-port", type=_port, default=8002, metavar="R",
                        help="Prometheus metrics port (default 8002)")
    parser.add_argument("--address", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1; 0.0.0.0 exposes the server to the network)")
    parser.add_argument("--exit-timeout", type=positive_int, default=5, metavar="S",
                        help="seconds a stop waits for in-flight requests and open connections (default 5)")
    parser.add_argument("--ready-timeout", type=positive_int, default=300, metavar="S",
                        help="seconds to wait for every model to load (default 300)")
    parser.add_argument("--log-verbose", type=int, default=0, metavar="N", help="tritonserver --log-verbose level")
    parser.add_argument("--env", metavar="DIR", help="the serving environment (default: $SEO_EXPORT_SERVE_ENV, else "
                                                     "~/.cache/seo-export/serve/...)")
    parser.add_argument("--setup", action="store_true",
                        help="create the serving environment (nvidia-pytriton 0.7.0 and numpy 1.26 in a virtual "
                             "environment; once, ~55 MB download) and exit, or serve REPO after it")
    parser.add_argument("--reinstall", action="store_true", help="with --setup: create it again")


def _notice(message: str) -> None:
    print(f"seo-export serve: {message}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    from seo_export.cli.common import require
    from seo_export.serve.runtime import ensure_runtime
    from seo_export.serve.server import ServerOptions, TritonServer, check_repository

    require(args.repository or args.setup, "give a model repository (REPO), or --setup to prepare the server only")
    require(args.setup or not args.reinstall, "--reinstall goes with --setup")
    ports = {"--http-port": args.http_port, "--grpc-port": args.grpc_port, "--metrics-port": args.metrics_port}
    require(len(set(ports.values())) == 3, f"the three ports must differ, got {ports}")
    models = check_repository(args.repository) if args.repository else {}
    runtime = ensure_runtime(args.env, install=True, reinstall=args.reinstall, notice=_notice)
    if not args.repository:
        print(f"serving environment ready: {runtime.root} (tritonserver {runtime.tritonserver}, numpy "
              f"{runtime.numpy_version} for the python-backend stub)")
        return 0

    stop = threading.Event()
    received: list[int] = []

    def on_signal(signum, _frame) -> None:
        received.append(signum)
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    options = ServerOptions(http_port=args.http_port, grpc_port=args.grpc_port, metrics_port=args.metrics_port,
                            address=args.address, exit_timeout_s=args.exit_timeout, log_verbose=args.log_verbose)
    server = TritonServer(runtime, args.repository, options)
    try:
        server.start(args.ready_timeout, cancel=stop)
        if stop.is_set():
            return 130 if received and received[0] == signal.SIGINT else 0
        listing = ", ".join(f"{name} ({kind})" for name, kind in models.items())
        print(f"seo-export serve: ready on HTTP {server.http_url}, gRPC {server.grpc_url}, metrics "
              f"{server.metrics_url} (tritonserver pid {server.process.pid}); models: {listing}. "
              "Ctrl-C or SIGTERM stops it.", flush=True)
        while not stop.wait(0.2):
            if server.process.poll() is not None:
                _notice(f"error: tritonserver exited on its own with status {server.process.returncode}")
                return 1
        _notice(f"stopping ({signal.Signals(received[0]).name})")
        return 0
    finally:
        server.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)

