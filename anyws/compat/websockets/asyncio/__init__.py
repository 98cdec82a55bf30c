"""``websockets.asyncio``: the client and server API.

Despite the name, it runs on any event loop that anyws supports, asyncio and trio;
only ``ws = await connect(...)`` and ``server = await serve(...)`` need asyncio.
"""

from __future__ import annotations
