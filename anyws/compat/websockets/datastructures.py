"""``websockets.datastructures``: HTTP headers, which are anyws's own."""

from __future__ import annotations

from anyws._http import (
    Headers as Headers,
    HeadersLike as HeadersLike,
    MultipleValuesError as MultipleValuesError,
)

__all__ = ["Headers", "HeadersLike", "MultipleValuesError"]
