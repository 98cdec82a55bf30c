"""Drop-in replacements for the APIs of other WebSocket libraries, built on anyws.

* :mod:`anyws.compat.websockets` mirrors the ``websockets`` package (its asyncio API):
  ``import anyws.compat.websockets as websockets``.
* :mod:`anyws.compat.trio_websocket` mirrors ``trio_websocket``.

The shims are adapters: they rename, reshape signatures and map exceptions, and leave
the protocol to anyws.
"""

from __future__ import annotations
