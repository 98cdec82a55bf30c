"""The asyncio-only forms of the ``websockets`` API, and the rest of what needs asyncio.

``ws = await connect(...)`` and ``server = await serve(...)`` hand over an open
connection or a running server with no ``async with`` around it, so the task group
that anyws runs them in (reader, keepalive, accept loops) cannot belong to the caller.
On asyncio a background task holds the anyws context manager open instead, until the
connection or the server is closed: :func:`hold_open`. Trio has no task outside a
nursery, by design, so there these forms raise :exc:`RuntimeError` pointing at
``async with``.

This is the only module of the shim that imports :mod:`asyncio`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, TypeVar

import anyio

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine
    from contextlib import AbstractAsyncContextManager

__all__ = ["get_loop", "hold_open", "on_asyncio", "pong_future"]

T = TypeVar("T")

logger = logging.getLogger("websockets")


def on_asyncio() -> bool:
    """Whether the current thread runs an asyncio event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def get_loop(form: str) -> asyncio.AbstractEventLoop:
    """Return the running asyncio event loop.

    Raises:
        RuntimeError: the event loop isn't asyncio.
    """
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        raise RuntimeError(f"{form} works on asyncio only") from None


def _retrieve(future: asyncio.Future[Any]) -> None:
    # Mark the outcome as seen, so that asyncio doesn't log "exception was never
    # retrieved" for a ping whose result the application ignored.
    if not future.cancelled():
        future.exception()


def pong_future(waiting: Coroutine[Any, Any, float]) -> asyncio.Future[float]:
    """Run the wait for a Pong in a task, the future ``websockets`` returns."""
    task = asyncio.ensure_future(waiting)
    task.add_done_callback(_retrieve)
    return task


async def hold_open(
    context: AbstractAsyncContextManager[T],
    until: Callable[[T], Awaitable[object]],
    *,
    form: str,
    instead: str,
) -> tuple[T, Callable[[], Awaitable[None]]]:
    """Enter ``context`` in a background task and keep it open until ``until`` ends.

    Args:
        context: the async context manager to hold open.
        until: called with what ``context`` yields; the task leaves the context
            when the awaitable it returns completes.
        form: the call being served, for the error raised off asyncio.
        instead: what to write instead, for the same error.

    Returns:
        What ``context`` yields, and a function that waits until the background
        task has left the context.

    Raises:
        RuntimeError: the event loop isn't asyncio.
        Exception: what entering ``context`` raised.
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        raise RuntimeError(
            f"{form} works on asyncio only; with trio, write {instead}"
        ) from None
    opened: asyncio.Future[T] = loop.create_future()

    async def hold() -> None:
        try:
            async with context as value:
                opened.set_result(value)
                await until(value)
        except Exception as exc:
            if not opened.done():
                opened.set_exception(exc)  # raised by hold_open()
            else:
                logger.error("error in the background task of %s", form, exc_info=True)
        except BaseException:
            if not opened.done():
                opened.cancel()
            raise

    task = loop.create_task(hold(), name=f"websockets {form}")
    try:
        value = await asyncio.shield(opened)
    except BaseException:
        task.cancel()
        with anyio.CancelScope(shield=True):
            await asyncio.wait([task])
        if opened.done():
            _retrieve(opened)
        raise

    async def release() -> None:
        if asyncio.current_task() is not task:
            await asyncio.wait([task])

    return value, release
