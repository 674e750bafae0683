"""The one place that decides how an endpoint scales: from its record, once."""

from __future__ import annotations

from deploy.autoscaling.backlog import BacklogScaling
from deploy.autoscaling.invocations import InvocationsScaling
from deploy.autoscaling.variant import VariantScaling
from deploy.context import Context
from deploy.schema import EndpointRecord


def for_endpoint(ctx: Context, endpoint: EndpointRecord | None = None) -> VariantScaling:
    """Backlog scaling for an asynchronous endpoint, invocation tracking otherwise.

    Without `endpoint`, the state's: then a state whose autoscaling record holds the backlog's
    alarm or step policy also gets backlog scaling, so that removing it removes those too.
    """
    if endpoint is None:
        endpoint = ctx.state.get("endpoint") or {}
        record = ctx.state.get("autoscaling") or {}
        if record.get("step_policy") or record.get("alarm"):
            return BacklogScaling(ctx, endpoint)
    if endpoint.get("async_inference"):
        return BacklogScaling(ctx, endpoint)
    return InvocationsScaling(ctx, endpoint)
