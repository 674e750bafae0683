"""Tag-checked deletion: this tool deletes only what carries its managed-by tag.

Every kind of resource (SageMaker model/config/endpoint, S3 object, ECR repository, CloudWatch
alarm) is looked up, its tags read, and deleted only when `names.is_ours` says so.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Literal, TypeVar

from botocore.exceptions import ClientError

from deploy import names
from deploy.aws.not_found import is_not_found

Outcome = Literal["deleted", "absent", "refused"]
T = TypeVar("T")
Tags = list[dict[str, str]] | dict[str, str]


def delete_if_ours(
    find: Callable[[], T | None],
    tags_of: Callable[[T], Tags],
    delete: Callable[[], object],
) -> Outcome:
    """'deleted', 'absent' (already gone, or gone before the delete), or 'refused' (it exists
    without our tag). `find` returns None for a resource that does not exist."""
    found = find()
    if found is None:
        return "absent"
    if not names.is_ours(tags_of(found)):
        return "refused"
    try:
        delete()
    except ClientError as exc:
        if is_not_found(exc):
            return "absent"
        raise
    return "deleted"


def split_ours(found: Iterable[T], tags_of: Callable[[T], Tags]) -> tuple[list[T], list[T]]:
    """(those tagged by this tool, the others): for services that delete in one batch."""
    ours: list[T] = []
    others: list[T] = []
    for item in found:
        (ours if names.is_ours(tags_of(item)) else others).append(item)
    return ours, others
