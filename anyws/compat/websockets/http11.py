"""``websockets.http11``: the handshake's request and response, which are anyws's own.

:data:`USER_AGENT` and :data:`SERVER` name anyws, not ``websockets``: they are the
default ``User-Agent`` and ``Server`` headers of the shim's ``connect`` and ``serve``.
"""

from __future__ import annotations

from anyws._client import USER_AGENT as USER_AGENT
from anyws._http import Request as Request, Response as Response

__all__ = ["SERVER", "USER_AGENT", "Request", "Response"]

SERVER: str = USER_AGENT
"""Default value of the ``Server`` response header."""
