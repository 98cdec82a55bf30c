"""Authentication in ``process_request``: a token or HTTP Basic, 401 for the rest.

    python examples/auth.py [--backend trio]

The server checks the ``Authorization`` header before the WebSocket handshake, so a
client without valid credentials never gets a connection: it gets ``401
Unauthorized`` and ``anyws.connect`` raises :exc:`anyws.InvalidStatus`. The demo runs
the server and four clients: one with a bearer token, one with a user name and
password in the URI (sent as Basic), and two that are refused.

Browsers cannot set headers on a WebSocket; for them, check a cookie or a short-lived
token in the query string the same way. Serve over TLS (see tls.py): Basic credentials
and tokens travel in clear text otherwise.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hmac
import weakref

import anyio

import anyws

# In a real application: a database, and password hashes rather than passwords.
TOKENS = {"alice": "3f9c2a7e1b"}
PASSWORDS = {"bob": "correct horse battery staple"}

CHALLENGE = [
    ("WWW-Authenticate", 'Bearer realm="anyws"'),
    ("WWW-Authenticate", 'Basic realm="anyws", charset="UTF-8"'),
]


def _equal(given: str, expected: str) -> bool:
    # Compare in constant time, so that timing reveals nothing about the secret.
    return hmac.compare_digest(given.encode(), expected.encode())


def authenticate(request: anyws.Request) -> str | None:
    """Return the user the request authenticates, or ``None``."""
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        for user, token in TOKENS.items():
            if _equal(credentials, token):
                return user
    elif scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(credentials, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        user, _, password = decoded.partition(":")
        expected = PASSWORDS.get(user)
        if expected is not None and _equal(password, expected):
            return user
    return None


# The user of each open connection; entries go away with their connections.
users: weakref.WeakKeyDictionary[anyws.ServerConnection, str] = (
    weakref.WeakKeyDictionary()
)


def process_request(
    connection: anyws.ServerConnection, request: anyws.Request
) -> anyws.Response | None:
    user = authenticate(request)
    if user is None:
        return connection.respond(401, "Unauthorized\n", CHALLENGE)
    users[connection] = user
    return None  # authenticated: go on with the handshake


async def handler(ws: anyws.ServerConnection) -> None:
    await ws.send(f"hello, {users[ws]}")


async def attempt(label: str, uri: str, headers: dict[str, str] | None = None) -> None:
    try:
        async with anyws.connect(uri, additional_headers=headers) as ws:
            reply = await ws.recv()
            print(f"{label}:", reply if isinstance(reply, str) else repr(reply))
    except anyws.InvalidStatus as exc:
        print(f"{label}: refused with HTTP {exc.response.status_code}")


async def main() -> None:
    async with anyws.serve(
        handler, "127.0.0.1", 0, process_request=process_request
    ) as server:
        address = f"127.0.0.1:{server.port}"
        token = {"Authorization": f"Bearer {TOKENS['alice']}"}
        await attempt("token", f"ws://{address}/", token)
        await attempt(
            "basic", f"ws://bob:correct%20horse%20battery%20staple@{address}/"
        )
        await attempt("wrong password", f"ws://bob:guess@{address}/")
        await attempt("no credentials", f"ws://{address}/")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    args = parser.parse_args()
    anyio.run(main, backend=args.backend)
