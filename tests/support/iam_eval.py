"""A small evaluator of IAM identity policies, to test what the shipped documents allow.

No well-kept library evaluates conditions locally: moto's access control knows StringEquals only
(and denies when a condition fails, where IAM merely does not apply the statement); principalmapper
has not been released since 2022. This implements the documented rules for what our documents use:
- An explicit Deny wins; else any Allow; else the implicit deny.
- Action / NotAction: case-insensitive, `*` and `?` wildcards. Resource / NotResource:
  case-sensitive wildcards, `*` matching across `:` and `/` as IAM's does.
- Condition: every operator and every key in it must hold (AND); the values of one key are
  alternatives (OR). A key missing from the request: false, except for the negated operators
  (StringNotEquals, StringNotLike, ArnNotEquals, ArnNotLike: true), `...IfExists` (true) and Null.
  Condition key names are case-insensitive, values are not (StringEquals).
- ForAllValues: true when every request value matches one policy value (so also when the key is
  missing or empty); ForAnyValue: true when at least one does (false when missing).
Policy variables (${aws:username}) are refused: the documents do not use them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

ALLOW = "Allow"
EXPLICIT_DENY = "ExplicitDeny"
IMPLICIT_DENY = "ImplicitDeny"

ContextValue = str | bool | Sequence[str]


@dataclass(frozen=True)
class Request:
    action: str
    resource: str
    context: Mapping[str, ContextValue] = field(default_factory=dict)


def _listed(value: Any) -> list[Any]:
    return [value] if isinstance(value, (str, bool)) else list(value)


def wildcard(pattern: str, text: str, ignore_case: bool = False) -> bool:
    """IAM's `*` (any run of characters, `:` and `/` included) and `?` (one character)."""
    if "${" in pattern:
        raise ValueError(f"policy variables are not supported: {pattern}")
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return (
        re.fullmatch(regex, text, re.IGNORECASE | re.DOTALL if ignore_case else re.DOTALL)
        is not None
    )


def arn_like(pattern: str, arn: str) -> bool:
    """ArnLike: the six ARN fields compared one by one (the last may hold `:` and `/`)."""
    wanted, got = pattern.split(":", 5), arn.split(":", 5)
    if len(wanted) != 6 or len(got) != 6:
        return False
    return all(wildcard(p, a) for p, a in zip(wanted, got, strict=True))


def _string(value: ContextValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if not isinstance(value, str):
        raise TypeError(f"a single-valued operator got a set of values: {value!r}")
    return value


# Positive operators: (policy value, request value) -> matches. The negated ones are their `not`.
_MATCHERS = {
    "StringEquals": lambda p, a: p == a,
    "StringEqualsIgnoreCase": lambda p, a: p.lower() == a.lower(),
    "StringLike": wildcard,
    "ArnEquals": lambda p, a: p == a,
    "ArnLike": arn_like,
    "Bool": lambda p, a: p.lower() == a.lower(),
}
_NEGATED = {
    "StringNotEquals": "StringEquals",
    "StringNotEqualsIgnoreCase": "StringEqualsIgnoreCase",
    "StringNotLike": "StringLike",
    "ArnNotEquals": "ArnEquals",
    "ArnNotLike": "ArnLike",
}


def _lookup(context: Mapping[str, ContextValue], key: str) -> ContextValue | None:
    lowered = key.lower()
    for name, value in context.items():
        if name.lower() == lowered:
            return value
    return None


def condition_holds(
    operator: str, key: str, wanted: Any, context: Mapping[str, ContextValue]
) -> bool:
    values = [str(v).lower() if isinstance(v, bool) else str(v) for v in _listed(wanted)]
    present = _lookup(context, key)
    qualifier, _, operator = operator.rpartition(":")
    if_exists = operator.endswith("IfExists")
    operator = operator.removesuffix("IfExists")
    if operator == "Null":
        (want_absent,) = {v.lower() for v in values}
        return (present is None) == (want_absent == "true")
    negated = operator in _NEGATED
    match = _MATCHERS[_NEGATED.get(operator, operator)]
    if qualifier:
        given = [] if present is None else [_string(v) for v in _listed(present)]
        hits = [any(match(p, a) for p in values) for a in given]
        if negated:
            hits = [not h for h in hits]
        if qualifier == "ForAllValues":
            return all(hits)
        if qualifier == "ForAnyValue":
            return any(hits)
        raise ValueError(f"unknown set operator {qualifier}")
    if present is None:
        return if_exists or negated
    found = any(match(p, _string(present)) for p in values)
    return not found if negated else found


def _applies(statement: Mapping[str, Any], request: Request) -> bool:
    if "Action" in statement:
        if not any(
            wildcard(p, request.action, ignore_case=True) for p in _listed(statement["Action"])
        ):
            return False
    elif any(
        wildcard(p, request.action, ignore_case=True) for p in _listed(statement["NotAction"])
    ):
        return False
    if "Resource" in statement:
        if not any(wildcard(p, request.resource) for p in _listed(statement["Resource"])):
            return False
    elif any(wildcard(p, request.resource) for p in _listed(statement["NotResource"])):
        return False
    return all(
        condition_holds(operator, key, wanted, request.context)
        for operator, keys in statement.get("Condition", {}).items()
        for key, wanted in keys.items()
    )


def statements(documents: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    found = []
    for document in documents:
        body = document["Statement"]
        found += [body] if isinstance(body, Mapping) else list(body)
    return found


def evaluate(documents: Iterable[Mapping[str, Any]], request: Request) -> str:
    """ALLOW, EXPLICIT_DENY or IMPLICIT_DENY for `request` under these identity policies."""
    matching = [s for s in statements(documents) if _applies(s, request)]
    if any(s["Effect"] == "Deny" for s in matching):
        return EXPLICIT_DENY
    if any(s["Effect"] == "Allow" for s in matching):
        return ALLOW
    return IMPLICIT_DENY


def allowed(documents: Iterable[Mapping[str, Any]], request: Request) -> bool:
    return evaluate(documents, request) == ALLOW
