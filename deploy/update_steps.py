"""`update` as a transaction: the marks it leaves in the state, and how they are settled.

An update is only safe to leave half-done if the state says which half. Before each step that
cannot be undone at once, a mark is saved:

- `autoscaling.paused_for_update`: the scalable target was (or is being) deregistered for an
  instance type change; the record keeps the settings to register it again.
- `endpoint.pending_update`: update_endpoint was (or may have been) sent for a new config; the
  state's `endpoint.config` still names the one that served before.

`settle` turns marks into facts from describe_endpoint once the endpoint is no longer changing:
the new config adopted when SageMaker runs it (the old model and config removed), dropped when it
does not (the new ones removed), and autoscaling registered again on an InService endpoint.
`reconcile` does that for `status`, `update` and `autoscale`; `down` needs no settling, since
both models and configs are in the resources ledger it walks.
"""

from __future__ import annotations

from typing import Any, cast

from deploy import config, names
from deploy.autoscaling import choose
from deploy.aws.sagemaker import delete_if_ours, describe_endpoint
from deploy.context import Context
from deploy.schema import AutoscalingRecord, EndpointRecord, PendingUpdateRecord, ResourceKind
from deploy.spec import Spec
from deploy.state import forget, now_iso

# EndpointStatus values after which the endpoint does not change without a new request.
SETTLED = ("InService", "Failed", "OutOfService")
FINISH = "python -m deploy status"


def pause_autoscaling(ctx: Context) -> None:
    """Deregister autoscaling (Application Auto Scaling rejects an update that changes a scaled
    variant's type) but keep its record, marked, so that any failure can put it back."""
    record = ctx.state.get("autoscaling")
    if not record:
        return
    paused: AutoscalingRecord = {**record, "paused_for_update": True}
    ctx.state["autoscaling"] = paused
    ctx.save()  # marked before the first delete: an interrupted removal is resumed too
    try:
        choose.for_endpoint(ctx).remove()  # pops the record as it ends
    finally:
        ctx.state["autoscaling"] = paused
        ctx.save()
    ctx.log("deregistered autoscaling for the instance type change")


def paused(ctx: Context) -> AutoscalingRecord | None:
    record = ctx.state.get("autoscaling")
    return record if record and record.get("paused_for_update") else None


def restore_autoscaling(ctx: Context) -> None:
    """Register a paused autoscaling again as it was (a serverless endpoint drops it)."""
    record = paused(ctx)
    if record is None:
        return
    endpoint = ctx.state.get("endpoint") or {}
    if endpoint.get("serverless"):
        ctx.state.pop("autoscaling", None)
        ctx.save()
        ctx.log("autoscaling removed: serverless endpoints scale by themselves")
        return
    scaler = choose.for_endpoint(ctx)
    scaler.apply(scaler.settings_of(record))  # writes the record again, unmarked
    ctx.log("registered autoscaling again")


def mark_pending(ctx: Context, new: names.DeploymentNames, spec: Spec) -> None:
    """Saved before update_endpoint is sent: whatever happens next, the state knows which config
    may take over and what the endpoint record becomes if it does."""
    pending: PendingUpdateRecord = {
        "config": new.config,
        "model": new.model,
        "started_at": now_iso(),
        "recorded": dict(spec.recorded()),
    }
    ctx.state["endpoint"]["pending_update"] = pending
    ctx.save()


def adopt(ctx: Context, sm: Any, live: dict[str, Any]) -> list[str]:
    """SageMaker runs the pending config: record it, remove the old model and config (if ours).
    Returns the names removed."""
    current = ctx.state["endpoint"]
    pending = current.get("pending_update") or {}
    deleted = []
    replaced: tuple[tuple[ResourceKind, str | None], ...] = (
        ("endpoint-config", current.get("config")),
        ("model", current.get("model")),
    )
    for kind, name in replaced:
        if not name or name in (pending.get("config"), pending.get("model")):
            continue
        if delete_if_ours(sm, kind, name) in ("deleted", "absent"):
            forget(ctx.state, kind, name)
            deleted.append(name)
        else:
            ctx.log(f"kept {kind} {name}: it is not tagged {config.TAG_KEY}={config.TAG_VALUE}")
    adopted: dict[str, Any] = {
        **current,
        **pending.get("recorded", {}),
        "config": pending.get("config", live.get("EndpointConfigName")),
        "model": pending.get("model", current.get("model")),
        "status": live.get("EndpointStatus"),
        "updated_at": now_iso(),
    }
    adopted.pop("pending_update", None)
    ctx.state["endpoint"] = cast(EndpointRecord, adopted)
    ctx.save()
    return deleted


def drop(ctx: Context, sm: Any, live_config: str | None = None) -> None:
    """SageMaker will not run the pending config: remove it and its model (unless live)."""
    endpoint = ctx.state["endpoint"]
    pending = endpoint.get("pending_update") or {}
    made: tuple[tuple[ResourceKind, str | None], ...] = (
        ("endpoint-config", pending.get("config")),
        ("model", pending.get("model")),
    )
    for kind, name in made:
        if not name or name in (live_config, endpoint.get("config"), endpoint.get("model")):
            continue
        if delete_if_ours(sm, kind, name) in ("deleted", "absent"):
            forget(ctx.state, kind, name)
    endpoint.pop("pending_update", None)
    if live_config:
        endpoint["config"] = live_config
    ctx.save()


def settle(ctx: Context, sm: Any, live: dict[str, Any]) -> str | None:
    """Adopt or drop a pending update and restore paused autoscaling, from describe_endpoint's
    answer `live`; None when the endpoint is still changing (nothing settled yet), else what was
    done, in words."""
    status = live.get("EndpointStatus", "?")
    endpoint = ctx.state["endpoint"]
    pending = endpoint.get("pending_update")
    endpoint["status"] = status
    if status not in SETTLED:
        ctx.save()
        return None
    said = []
    if pending:
        if live.get("EndpointConfigName") == pending.get("config"):
            removed = adopt(ctx, sm, live)
            said.append(f"adopted {pending.get('config')}")
            if removed:
                said.append(f"removed {', '.join(removed)}")
        else:
            drop(ctx, sm, live.get("EndpointConfigName"))
            said.append(f"dropped {pending.get('config')}")
    if paused(ctx) and status == "InService":
        restore_autoscaling(ctx)
        said.append("autoscaling registered again")
    return "; ".join(said)


def reconcile(ctx: Context, sm: Any) -> None:
    """Settle what an interrupted `update` left, if anything; logs what it did or why it waits."""
    endpoint = ctx.state.get("endpoint")
    if not endpoint or not (endpoint.get("pending_update") or paused(ctx)):
        return
    live = describe_endpoint(sm, endpoint["name"])
    if live is None:
        return  # the endpoint is gone: `down` clears the rest
    said = settle(ctx, sm, live)
    if said is None:
        ctx.log(
            f"endpoint {endpoint['name']} is {live.get('EndpointStatus')}: the interrupted "
            f"update settles once it is InService (`{FINISH}`)"
        )
    elif said:
        ctx.log(f"settled the interrupted update of {endpoint['name']}: {said}")


def left(ctx: Context, serving: bool = True) -> str:
    """What an ended update leaves, and how to finish it, in words for its error line (which
    starts with the config that serves unless `serving` is False)."""
    endpoint = ctx.state.get("endpoint") or {}
    pending = endpoint.get("pending_update")
    said = [f"{endpoint.get('name')} runs {endpoint.get('config')}"] if serving else []
    if not pending and not paused(ctx):
        return "; ".join(
            [*said, "the new model and config were removed, nothing is left to finish"]
        )
    if pending:
        said.append(
            f"the update to {pending.get('config')} may still be running at SageMaker "
            "(its model and config are recorded for `down`)"
        )
    if paused(ctx):
        said.append("its autoscaling is paused")
    said.append(
        f"run `{FINISH}` once the endpoint is InService (with valid credentials): it adopts or "
        "drops the update and registers autoscaling again"
    )
    return "; ".join(said)
