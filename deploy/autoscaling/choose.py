"""The one place that decides how an endpoint scales: from its record, once."""

from __future__ import annotations

from typing import Any

from deploy.autoscaling.backlog import BacklogScaling
from deploy.autoscaling.invocations import InvocationsScaling
from deploy.autoscaling.variant import VariantScaling
from deploy.context import Context


def for_endpoint(ctx: Context, endpoint: dict[str, Any] | None = None) -> VariantScaling:
    """Backlog scaling for an asynchronous endpoint (or a state whose record has the backlog's
    alarm or step policy), invocation tracking otherwise. `endpoint` defaults to the state's."""
    if endpoint is None:
        endpoint = ctx.state.get("endpoint") or {}
    record = ctx.state.get("autoscaling") or {}
    if endpoint.get("async_inference") or record.get("step_policy") or record.get("alarm"):
        return BacklogScaling(ctx, endpoint)
    return InvocationsScaling(ctx, endpoint)
