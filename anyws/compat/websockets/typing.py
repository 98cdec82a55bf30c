"""``websockets.typing``: the type aliases of the ``websockets`` API."""

from __future__ import annotations

import http
import logging
import os
from typing import Any, NewType, Union

__all__ = [
    "BytesLike",
    "Data",
    "DataLike",
    "ExtensionName",
    "ExtensionParameter",
    "LoggerLike",
    "Origin",
    "PathLike",
    "StatusLike",
    "Subprotocol",
]

Data = str | bytes
"""A WebSocket message: :class:`str` for text, :class:`bytes` for binary."""

BytesLike = bytes | bytearray | memoryview
"""Types accepted where :class:`bytes` is expected."""

DataLike = str | bytes | bytearray | memoryview
"""Types accepted where :data:`Data` is expected."""

# A string, because logging.LoggerAdapter is subscriptable from Python 3.11 only.
LoggerLike = Union[logging.Logger, "logging.LoggerAdapter[Any]"]
"""Types accepted where a :class:`~logging.Logger` is expected."""

PathLike = str | bytes | os.PathLike[str] | os.PathLike[bytes]
"""Types accepted where a file system path is expected."""

StatusLike = http.HTTPStatus | int
"""Types accepted where an :class:`~http.HTTPStatus` is expected."""

Origin = NewType("Origin", str)
"""Value of an ``Origin`` header."""

Subprotocol = NewType("Subprotocol", str)
"""A subprotocol in a ``Sec-WebSocket-Protocol`` header."""

ExtensionName = NewType("ExtensionName", str)
"""Name of a WebSocket extension."""

ExtensionParameter = tuple[str, str | None]
"""Parameter of a WebSocket extension."""
