"""Listing through botocore's paginators: no hand-written NextToken loops."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def pages(client: Any, operation: str, **params: Any) -> Iterator[dict[str, Any]]:
    """Every page of `operation`; botocore follows the tokens (it must have a paginator)."""
    if not client.can_paginate(operation):
        raise TypeError(f"{operation} has no botocore paginator")  # a programming error
    yield from client.get_paginator(operation).paginate(**params)


def items(client: Any, operation: str, key: str, **params: Any) -> Iterator[Any]:
    """The entries under `key` of every page."""
    for page in pages(client, operation, **params):
        yield from page.get(key) or []
