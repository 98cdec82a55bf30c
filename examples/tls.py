"""Secure WebSocket (wss://): a TLS server and a client that verifies it.

    python examples/tls.py [--backend trio]
    python examples/tls.py --certfile certs/server.pem --keyfile certs/server.key \\
        --cafile certs/ca.pem

Without options, a throwaway certificate authority and a certificate for 127.0.0.1 are
made in memory with trustme. With options, they are loaded from PEM files, as you would
load a real certificate: ``generate_cert.py`` writes such files for local testing.

A real certificate, from Let's Encrypt or another public CA, is loaded the same way,
on the server only::

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain("/etc/letsencrypt/live/example.com/fullchain.pem",
                            "/etc/letsencrypt/live/example.com/privkey.pem")
    async with anyws.serve(handler, None, 443, ssl=context): ...

and clients need nothing: ``anyws.connect("wss://example.com/")`` verifies the
certificate against the system's trusted CAs. Pass ``ssl=`` to the client only to
trust another CA, as below.
"""

from __future__ import annotations

import argparse
import ssl

import anyio
import trustme

import anyws


def server_context(certfile: str, keyfile: str) -> ssl.SSLContext:
    """A server-side context presenting the certificate chain in ``certfile``."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certfile, keyfile)
    return context


def client_context(cafile: str) -> ssl.SSLContext:
    """A client-side context that trusts the CA certificate in ``cafile``."""
    return ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile)


def throwaway_contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context and a client context that trusts it, for 127.0.0.1."""
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(server)
    client = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ca.configure_trust(client)
    return server, client


async def echo(ws: anyws.ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


async def main(server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext) -> None:
    async with anyws.serve(echo, "127.0.0.1", 0, ssl=server_ssl) as server:
        uri = f"wss://127.0.0.1:{server.port}/"
        async with anyws.connect(uri, ssl=client_ssl) as ws:
            await ws.send("hello over TLS")
            print(f"{uri} answered {await ws.recv()!r}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--certfile", help="server certificate chain (PEM)")
    parser.add_argument("--keyfile", help="server private key (PEM)")
    parser.add_argument("--cafile", help="CA certificate the client trusts (PEM)")
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    args = parser.parse_args()
    if args.certfile:
        if not (args.keyfile and args.cafile):
            parser.error("--certfile needs --keyfile and --cafile")
        contexts = (
            server_context(args.certfile, args.keyfile),
            client_context(args.cafile),
        )
    else:
        contexts = throwaway_contexts()
    anyio.run(main, *contexts, backend=args.backend)
