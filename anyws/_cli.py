"""The command line: ``python -m anyws`` (also installed as ``anyws``).

::

    anyws ws://host:port/path        interactive client (also: anyws connect URL)
    anyws serve [--echo]             a server for trying things out
    anyws bench-echo URL             round-trip timing against an echo server
    anyws demo                       a server and a client in one process

Plain argparse, no dependency beyond anyws. Errors end the program with a one-line
message on stderr and a non-zero exit status: 2 for usage errors (a bad URI
included), 1 when the connection fails or closes with an error code, 130 on Ctrl-C
in the client.

The client reads stdin in a daemon thread of its own and hands each line to the event
loop through an anyio blocking portal, so reading never blocks the event loop and a
read pending when the connection ends never keeps the program alive.
"""

from __future__ import annotations

import argparse
import codecs
import contextlib
import os
import signal
import ssl as ssl_module
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

import anyio
from anyio.from_thread import BlockingPortal

import anyws

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from anyio.streams.memory import MemoryObjectSendStream

BACKENDS = ("asyncio", "trio")

# After stdin ends, the client waits for the Pong of a last Ping at most this long.
PONG_WAIT = 10.0

# The progress line of bench-echo is redrawn at most this often, in seconds.
PROGRESS_EVERY = 0.1


class CommandError(Exception):
    """Raised to end a command with a one-line message and an exit status."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


# -- demo ---------------------------------------------------------------------


async def _echo(ws: anyws.ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


async def _demo(backend: str) -> None:
    print(f"-- {backend} --")
    started = time.perf_counter()
    async with anyws.serve(_echo, "127.0.0.1", 0) as server:
        print(f"server listening on ws://127.0.0.1:{server.port}/")
        uri = f"ws://127.0.0.1:{server.port}/"
        async with anyws.connect(uri) as ws:
            opened = time.perf_counter()
            extensions = (
                ws.response.headers.get("Sec-WebSocket-Extensions")
                if ws.response
                else None
            )
            print(
                f"client connected in {(opened - started) * 1000:.1f} ms"
                f" (compression: {extensions or 'off'})"
            )
            t0 = time.perf_counter()
            await ws.send("hello, anyws")
            text = await ws.recv()
            print(
                f"text   {text!r} echoed in {(time.perf_counter() - t0) * 1000:.2f} ms"
            )
            t0 = time.perf_counter()
            await ws.send(bytes(range(8)))
            data = await ws.recv()
            print(
                f"binary {data!r} echoed in {(time.perf_counter() - t0) * 1000:.2f} ms"
            )
            latency = await ws.ping()
            print(f"ping   answered in {latency * 1000:.2f} ms")
        print(f"client closed with code {ws.close_code}")
        await server.aclose()
    elapsed = (time.perf_counter() - started) * 1000
    print(f"server closed; {backend} demo took {elapsed:.1f} ms")


def _run_demo(args: argparse.Namespace) -> int:
    for backend in args.backend or BACKENDS:
        if backend == "trio":
            try:
                import trio  # noqa: F401
            except ImportError:
                print(
                    "-- trio -- skipped: trio isn't installed"
                    " (pip install 'anyws[trio]')"
                )
                continue
        anyio.run(_demo, backend, backend=backend)
    return 0


# -- shared by the client commands --------------------------------------------


def _header(value: str) -> tuple[str, str]:
    name, sep, rest = value.partition(":")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected 'Name: value', got {value!r}")
    return name.strip(), rest.strip()


def _client_options(args: argparse.Namespace) -> dict[str, Any]:
    """Check the URI and turn the client options into keywords of connect()."""
    try:
        uri = anyws.parse_uri(args.uri)
    except anyws.InvalidURI as exc:
        raise CommandError(str(exc), 2) from None
    options: dict[str, Any] = {
        "additional_headers": args.header or None,
        "subprotocols": args.subprotocol or None,
        "compression": "deflate" if args.compression else None,
        "ping_interval": args.ping_interval or None,
        "open_timeout": args.open_timeout or None,
    }
    if uri.secure and args.insecure:
        context = ssl_module.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl_module.CERT_NONE
        options["ssl"] = context
    return options


def _connect_error(exc: BaseException, uri: str) -> CommandError | None:
    """The one-line message for an error while connecting, if it is one."""
    if isinstance(exc, anyws.InvalidStatus):
        response = exc.response
        return CommandError(
            f"server rejected WebSocket connection: HTTP {response.status_code}"
            f" {response.reason_phrase}".rstrip()
        )
    if isinstance(exc, anyws.ConnectionClosed):
        return CommandError(
            f"connection closed: {_describe_close(exc.code, exc.reason)}"
        )
    if isinstance(exc, anyws.InvalidURI):
        return CommandError(str(exc), 2)
    if isinstance(exc, anyws.InvalidHandshake):
        return CommandError(f"handshake with {uri} failed: {exc}")
    if isinstance(exc, TimeoutError):
        return CommandError(f"timed out connecting to {uri}")
    if isinstance(exc, ssl_module.SSLCertVerificationError):
        return CommandError(
            f"cannot connect to {uri}: {exc.verify_message or exc}"
            " (--insecure skips certificate verification)"
        )
    if isinstance(exc, OSError):
        return CommandError(f"cannot connect to {uri}: {_os_error_text(exc)}")
    return None


def _os_error_text(exc: OSError) -> str:
    """A short text for an OSError: "Connection refused" rather than its details."""
    cause = _leaf(exc.__cause__) if exc.__cause__ is not None else None
    if exc.errno is None and isinstance(cause, OSError):
        exc = cause  # anyio's "All connection attempts failed"
    if exc.errno is not None and exc.errno > 0:
        return os.strerror(exc.errno)
    return exc.strerror or str(exc)


def _leaf(exc: BaseException) -> BaseException:
    """The only exception in a (nested) exception group, or ``exc`` itself."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def _run_async(
    func: Callable[..., Awaitable[int | None]],
    *args: Any,
    backend: str,
    uri: str | None = None,
) -> int | None:
    """Run ``func`` under ``backend``; map known errors to :exc:`CommandError`."""
    try:
        result: int | None = anyio.run(func, *args, backend=backend)
    except BaseException as exc:
        leaf = _leaf(exc)
        if isinstance(leaf, KeyboardInterrupt):
            raise leaf from None
        if isinstance(leaf, CommandError):
            raise leaf from None
        if uri is not None:
            error = _connect_error(leaf, uri)
            if error is not None:
                raise error from None
        raise
    return result


def _event(text: str) -> None:
    print(f"* {text}", file=sys.stderr, flush=True)


def _describe_close(code: int | None, reason: str | None) -> str:
    try:
        name = anyws.CloseCode(code or 0).name.lower().replace("_", " ")
    except ValueError:
        name = ""
    description = f"code {code}" + (f" ({name})" if name else "")
    if reason:
        description += f", reason {reason!r}"
    return description


def _format_message(message: str | bytes) -> str:
    if isinstance(message, str):
        return message
    return f"(binary) {message.hex()}"


# -- connect --------------------------------------------------------------------


def _read_lines(portal: BlockingPortal, lines: MemoryObjectSendStream[str]) -> None:
    """Read stdin in this thread and hand its lines to the event loop.

    It reads the file descriptor with :func:`os.read` rather than through
    ``sys.stdin``, so that a read still pending at exit holds no lock of the
    interpreter's.
    """
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    pending = ""
    try:
        fd = sys.stdin.fileno()
        while True:
            chunk = os.read(fd, 2**16)
            *complete, pending = (pending + decoder.decode(chunk, not chunk)).split(
                "\n"
            )
            for line in complete:
                portal.call(lines.send, line.removesuffix("\r"))
            if not chunk:
                break
        if pending:
            portal.call(lines.send, pending)
        portal.call(lines.aclose)
    except (OSError, ValueError, AttributeError):
        # No usable stdin: as good as an empty one.
        with contextlib.suppress(RuntimeError):
            portal.call(lines.aclose)
    except (anyio.BrokenResourceError, anyio.ClosedResourceError, RuntimeError):
        pass  # the event loop stopped listening: the connection is over


async def _send_stdin(ws: anyws.ClientConnection) -> None:
    """Send every line of stdin as a text message, until stdin ends."""
    sender, receiver = anyio.create_memory_object_stream[str]()
    # The receiver closes before the portal stops, which fails a pending hand-over.
    async with BlockingPortal() as portal, receiver:
        reader = threading.Thread(
            target=_read_lines, args=(portal, sender), name="anyws stdin", daemon=True
        )
        reader.start()
        async for line in receiver:
            await ws.send(line)


async def _interactive(uri: str, options: dict[str, Any], linger: float) -> int:
    async with anyws.connect(uri, **options) as ws:
        subprotocol = f" (subprotocol {ws.subprotocol})" if ws.subprotocol else ""
        _event(f"connected to {uri}{subprotocol}")
        activity = anyio.Event()
        async with anyio.create_task_group() as task_group:

            async def receive() -> None:
                nonlocal activity
                try:
                    async for message in ws:
                        print(f"< {_format_message(message)}", flush=True)
                        activity.set()
                        activity = anyio.Event()
                except anyws.ConnectionClosed:
                    pass
                task_group.cancel_scope.cancel()

            task_group.start_soon(receive)
            try:
                await _send_stdin(ws)
                # Stdin ended: wait for the replies in flight (a Ping round trip,
                # then a quiet spell of ``linger`` seconds), then close with 1000.
                with anyio.move_on_after(PONG_WAIT):
                    await ws.ping()
                while True:
                    with anyio.move_on_after(linger) as quiet:
                        await activity.wait()
                    if quiet.cancelled_caught:
                        break
                await ws.close()
            except anyws.ConnectionClosed:
                pass  # the server closed first; receive() reports it
    _event(f"connection closed: {_describe_close(ws.close_code, ws.close_reason)}")
    return 0 if ws.close_code in (1000, 1001) else 1


def _run_connect(args: argparse.Namespace) -> int:
    options = _client_options(args)
    try:
        status = _run_async(
            _interactive,
            args.uri,
            options,
            args.linger,
            backend=args.backend,
            uri=args.uri,
        )
    except KeyboardInterrupt:
        return 130
    assert status is not None
    return status


# -- serve ----------------------------------------------------------------------


def _peer(ws: anyws.ServerConnection) -> str:
    address = ws.remote_address
    if isinstance(address, tuple):
        host = f"[{address[0]}]" if ":" in str(address[0]) else address[0]
        return f"{host}:{address[1]}"
    return str(address)


def _server_handler(
    echo: bool,
) -> Callable[[anyws.ServerConnection], Awaitable[None]]:
    async def handler(ws: anyws.ServerConnection) -> None:
        peer = _peer(ws)
        path = ws.request.path if ws.request else "/"
        print(f"[{peer}] open {path}", flush=True)
        try:
            async for message in ws:
                if echo:
                    await ws.send(message)
                else:
                    print(f"[{peer}] < {_format_message(message)}", flush=True)
        except anyws.ConnectionClosed:
            pass
        finally:
            with anyio.CancelScope(shield=True):
                await ws.close()
            reason = _describe_close(ws.close_code, ws.close_reason)
            print(f"[{peer}] closed: {reason}", flush=True)

    return handler


async def _close_on_signal(server: anyws.Server) -> None:
    """Close the server gracefully (1001 to every client) on Ctrl-C or SIGTERM.

    Receiving the signals, rather than letting KeyboardInterrupt strike whatever
    task it lands in, lets every connection finish its closing handshake, on every
    backend.
    """
    try:
        receiver = anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM)
    except (NotImplementedError, AttributeError):  # pragma: no cover - Windows
        return
    with receiver as signals:
        async for _ in signals:
            await server.aclose()
            return


async def _serve(
    host: str, port: int, echo: bool, ssl: ssl_module.SSLContext | None
) -> None:
    listening = False
    try:
        async with anyws.serve(_server_handler(echo), host, port, ssl=ssl) as server:
            listening = True
            scheme = "wss" if ssl is not None else "ws"
            shown = f"[{host}]" if ":" in host else host
            print(f"listening on {scheme}://{shown}:{server.port}/", flush=True)
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(_close_on_signal, server)
                await server.serve_forever()
                task_group.cancel_scope.cancel()
    except OSError as exc:
        if listening:
            raise
        message = f"cannot listen on {host}:{port}: {_os_error_text(exc)}"
        raise CommandError(message) from None


def _run_serve(args: argparse.Namespace) -> int:
    context = None
    if args.tls_key and not args.tls_cert:
        raise CommandError("--tls-key needs --tls-cert", 2)
    if args.tls_cert:
        context = ssl_module.create_default_context(ssl_module.Purpose.CLIENT_AUTH)
        try:
            context.load_cert_chain(args.tls_cert, args.tls_key)
        except (OSError, ssl_module.SSLError) as exc:
            raise CommandError(f"cannot load the TLS certificate: {exc}") from None
    try:
        _run_async(
            _serve, args.host, args.port, args.echo, context, backend=args.backend
        )
    except KeyboardInterrupt:
        pass
    print("server stopped", flush=True)
    return 0


# -- bench-echo -----------------------------------------------------------------


def _percentile(sorted_values: list[float], fraction: float) -> float:
    """The nearest-rank percentile of values sorted in increasing order."""
    index = max(
        0, min(len(sorted_values) - 1, round(fraction * len(sorted_values)) - 1)
    )
    return sorted_values[index]


async def _bench(uri: str, options: dict[str, Any], count: int, size: int) -> int:
    payload = os.urandom(size)
    async with anyws.connect(uri, **options) as ws:
        # One untimed round trip first: it checks that the server echoes.
        probe = os.urandom(max(size, 16))
        await ws.send(probe)
        if await ws.recv() != probe:
            raise CommandError(f"{uri} didn't echo the message back")
        latencies: list[float] = []
        started = last = time.perf_counter()
        shown = False
        try:
            for done in range(1, count + 1):
                t0 = time.perf_counter()
                await ws.send(payload)
                reply = await ws.recv()
                t1 = time.perf_counter()
                if reply != payload:
                    raise CommandError(f"{uri} didn't echo the message back")
                latencies.append(t1 - t0)
                if t1 - last >= PROGRESS_EVERY or done == count:
                    last = t1
                    rate = done / (t1 - started)
                    sys.stderr.write(
                        f"\r{done}/{count} messages, {rate:,.0f} messages/s"
                    )
                    sys.stderr.flush()
                    shown = True
        finally:
            if shown:
                sys.stderr.write("\n")  # keep the progress line
        elapsed = time.perf_counter() - started
    latencies.sort()
    p50 = _percentile(latencies, 0.50) * 1000
    p99 = _percentile(latencies, 0.99) * 1000
    print(
        f"{count} messages of {size} bytes in {elapsed:.3f} s:"
        f" {count / elapsed:,.0f} messages/s,"
        f" latency p50 {p50:.3f} ms, p99 {p99:.3f} ms",
        flush=True,
    )
    return 0


def _run_bench(args: argparse.Namespace) -> int:
    if args.count < 1:
        raise CommandError("--count must be at least 1", 2)
    if args.size < 0:
        raise CommandError("--size must not be negative", 2)
    options = _client_options(args)
    options["max_size"] = max(args.size, 16) + 1024
    try:
        status = _run_async(
            _bench,
            args.uri,
            options,
            args.count,
            args.size,
            backend=args.backend,
            uri=args.uri,
        )
    except KeyboardInterrupt:
        sys.stderr.write("\n")
        return 130
    assert status is not None
    return status


# -- the parser -----------------------------------------------------------------


def _client_parser() -> argparse.ArgumentParser:
    """The options shared by the commands that connect to a server."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("uri", metavar="URL", help="ws:// or wss:// URL")
    parser.add_argument(
        "--header",
        action="append",
        type=_header,
        metavar="'NAME: VALUE'",
        help="add a request header (repeatable)",
    )
    parser.add_argument(
        "--subprotocol",
        action="append",
        metavar="NAME",
        help="offer a subprotocol (repeatable, in order of preference)",
    )
    parser.add_argument(
        "--insecure",
        action="store_true",
        help="don't verify the server's TLS certificate (wss:// only)",
    )
    parser.add_argument(
        "--ping-interval",
        type=float,
        default=20.0,
        metavar="SECONDS",
        help="seconds between keepalive pings; 0 disables them (default: 20)",
    )
    parser.add_argument(
        "--open-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="limit for connecting and the handshake; 0 for none (default: 10)",
    )
    parser.add_argument(
        "--compression",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="offer permessage-deflate (default: on)",
    )
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default="asyncio",
        help="event loop to run on (default: asyncio)",
    )
    return parser


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="anyws",
        description="anyws command line. 'anyws URL' is short for 'anyws connect URL'.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    client = _client_parser()

    connect = commands.add_parser(
        "connect",
        parents=[client],
        help="interactive client: send stdin lines, print what arrives",
        description=(
            "Connect to a WebSocket server. Every line read from stdin is sent as a"
            " text message; received messages are printed on stdout (binary ones"
            " as '(binary) HEX'), connection events on stderr. At the end of stdin"
            " the client waits for the Pong of a last Ping and then for a quiet"
            " spell of --linger seconds, so that replies in flight are printed,"
            " then closes with 1000."
        ),
    )
    connect.add_argument(
        "--linger",
        type=float,
        default=0.5,
        metavar="SECONDS",
        help="after stdin ends, close once no message came for this long"
        " (default: 0.5)",
    )
    connect.set_defaults(func=_run_connect)

    serve = commands.add_parser(
        "serve",
        help="a server for trying things out",
        description=(
            "Run a WebSocket server. It prints 'listening on URL' (with the actual"
            " port when --port is 0), then a line per connection opened and closed"
            " and, without --echo, every message received; all on stdout."
            " Ctrl-C closes the connections with 1001 and stops."
        ),
    )
    serve.add_argument("--host", default="127.0.0.1", help="default: 127.0.0.1")
    serve.add_argument(
        "--port", type=int, default=8765, help="0 picks a free port (default: 8765)"
    )
    serve.add_argument(
        "--echo", action="store_true", help="send every message back to its sender"
    )
    serve.add_argument("--tls-cert", metavar="FILE", help="serve wss:// with this PEM")
    serve.add_argument(
        "--tls-key", metavar="FILE", help="the private key, if not in --tls-cert"
    )
    serve.add_argument(
        "--backend",
        choices=BACKENDS,
        default="asyncio",
        help="event loop to run on (default: asyncio)",
    )
    serve.set_defaults(func=_run_serve)

    bench = commands.add_parser(
        "bench-echo",
        parents=[client],
        help="time round trips against an echo server",
        description=(
            "Send --count binary messages of --size bytes to an echo server, one"
            " at a time, each after the echo of the previous one; show progress on"
            " stderr and print messages/s and p50/p99 latency on stdout."
        ),
    )
    bench.add_argument("--count", type=int, default=1000, help="default: 1000")
    bench.add_argument(
        "--size", type=int, default=64, metavar="BYTES", help="default: 64"
    )
    bench.set_defaults(func=_run_bench)

    demo = commands.add_parser(
        "demo",
        help="run a server and a client in one process, under asyncio and then trio",
    )
    demo.add_argument(
        "--backend",
        action="append",
        choices=BACKENDS,
        help="run only under this backend (repeatable)",
    )
    demo.set_defaults(func=_run_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Run the command line."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments and "://" in arguments[0]:
        arguments.insert(0, "connect")
    args = _parser().parse_args(arguments)
    try:
        status = args.func(args)
    except CommandError as exc:
        print(f"anyws: {exc}", file=sys.stderr)
        status = exc.status
    sys.exit(status)
