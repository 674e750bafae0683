"""`update --canary/--linear/--all-at-once`: SageMaker's deployment guardrails, wired for the user.

A blue/green update with a `DeploymentConfig`: traffic moves to the new fleet all at once, a
canary first, or in linear steps, with a bake time after each shift; if an alarm of
`AutoRollbackConfiguration` goes to ALARM meanwhile, SageMaker moves the traffic back to the old
fleet (EndpointStatus RollingBack, then InService on the old config). The progress line shows the
phase that describe_endpoint reports; a rollback ends with exit 1 naming the alarm that fired.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from deploy import alarms, preflight
from deploy.aws.sagemaker import instances
from deploy.context import Context
from deploy.errors import UserError
from deploy.requests import Call
from deploy.spec import Spec

MODES = ("ALL_AT_ONCE", "CANARY", "LINEAR")
PHASES = {
    "Creating": "starting the new fleet",
    "Updating": "updating",
    "ActivatingTraffic": "shifting traffic",
    "Baking": "baking",
    "Deleting": "stopping the old fleet",
}


@dataclass
class Plan:
    """What the user asked for; None of it reaches AWS until `prepare`."""

    mode: str = "ALL_AT_ONCE"
    percent: int | None = None
    wait_s: int = 300
    alarms: list[str] = field(default_factory=list)  # ["auto"], [] (none) or alarm names
    latency_p99_ms: float | None = None

    @property
    def auto_alarms(self) -> bool:
        return self.alarms == ["auto"]


def plan_from_options(
    canary: int | None,
    linear: int | None,
    all_at_once: bool,
    bake: int | None,
    step_wait: int | None,
    rollback_alarms: list[str] | None,
    latency_p99_ms: float | None,
) -> Plan | None:
    """None: a plain update (SageMaker's default blue/green, no guardrails), as before."""
    if bake is not None and linear is not None:
        raise UserError("--bake is for --canary and --all-at-once", "use --step-wait with --linear")
    if step_wait is not None and linear is None:
        raise UserError("--step-wait is for --linear", "use --bake with --canary")
    guarded = canary is not None or linear is not None
    if rollback_alarms is None:
        rollback_alarms = ["auto"] if guarded else []
    if rollback_alarms == ["none"]:
        rollback_alarms = []
    if len(rollback_alarms) > 1 and ("auto" in rollback_alarms or "none" in rollback_alarms):
        raise UserError("--rollback-alarms takes auto, none, or alarm names, not a mix")
    if latency_p99_ms is not None and (latency_p99_ms <= 0 or rollback_alarms != ["auto"]):
        raise UserError("--latency-p99-ms is the bound of `--rollback-alarms auto`'s alarm")
    if not guarded and not all_at_once and not rollback_alarms and bake is None:
        return None
    wait = bake if bake is not None else step_wait
    steps = 300 if wait is None else wait
    if wait is not None and not 0 <= wait <= 3600:
        raise UserError("--bake / --step-wait must be between 0 and 3600 seconds")
    if canary is not None:
        if not 1 <= canary <= 50:
            raise UserError("--canary must be 1 to 50 (% of the fleet that goes first)")
        return Plan("CANARY", canary, steps, rollback_alarms, latency_p99_ms)
    if linear is not None:
        if not 10 <= linear <= 50:
            raise UserError("--linear must be 10 to 50 (% of the fleet per step)")
        return Plan("LINEAR", linear, steps, rollback_alarms, latency_p99_ms)
    return Plan("ALL_AT_ONCE", None, 0 if wait is None else wait, rollback_alarms, latency_p99_ms)


def deployment_config(plan: Plan, alarm_names: list[str], startup_timeout: int) -> dict[str, Any]:
    routing: dict[str, Any] = {"Type": plan.mode, "WaitIntervalInSeconds": plan.wait_s}
    steps = 1
    if plan.mode == "CANARY":
        routing["CanarySize"] = {"Type": "CAPACITY_PERCENT", "Value": plan.percent}
        steps = 2
    elif plan.mode == "LINEAR":
        routing["LinearStepSize"] = {"Type": "CAPACITY_PERCENT", "Value": plan.percent}
        steps = math.ceil(100 / (plan.percent or 100))
    # Room for the new fleet to start and pass /ping, every wait, and the old fleet's wait.
    budget = 2 * startup_timeout + steps * plan.wait_s + plan.wait_s + 600
    config: dict[str, Any] = {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": routing,
            # Keep the old fleet for one more bake after the last shift: an alarm then still
            # rolls back at once, without starting instances again.
            "TerminationWaitInSeconds": min(plan.wait_s, 3600),
            "MaximumExecutionTimeoutInSeconds": max(600, min(budget, 28800)),
        }
    }
    if alarm_names:
        config["AutoRollbackConfiguration"] = {"Alarms": [{"AlarmName": a} for a in alarm_names]}
    return config


def prepare(
    ctx: Context, plan: Plan | None, spec: Spec, endpoint: str
) -> tuple[dict[str, Any] | None, list[str]]:
    """Alarms made (auto) or checked (names), and the DeploymentConfig; call after every check
    that can refuse the update, before anything else is created."""
    deployment, names, _ = _prepared(ctx, plan, spec, endpoint, create=True)
    return deployment, names


def preview(
    ctx: Context, plan: Plan | None, spec: Spec, endpoint: str
) -> tuple[dict[str, Any] | None, list[Call]]:
    """`update --dry-run`: the DeploymentConfig and the alarm calls `prepare` would make; named
    alarms are checked (a read), nothing is created."""
    deployment, _, calls = _prepared(ctx, plan, spec, endpoint, create=False)
    return deployment, calls


def _prepared(
    ctx: Context, plan: Plan | None, spec: Spec, endpoint: str, create: bool
) -> tuple[dict[str, Any] | None, list[str], list[Call]]:
    if plan is None:
        return None, [], []
    if spec.serverless and plan.mode != "ALL_AT_ONCE":
        raise UserError(
            f"--{plan.mode.lower().replace('_', '-')} shifts traffic between instance fleets",
            "serverless endpoints update all at once: drop it, or pass --all-at-once",
        )
    calls: list[Call] = []
    if plan.auto_alarms:
        if plan.latency_p99_ms is not None:
            bound = alarms.LatencyBound(plan.latency_p99_ms, "--latency-p99-ms")
        else:
            size = preflight.model_bytes(ctx, spec.model_data)
            bound = alarms.p99_bound(None if spec.serverless else spec.instance_type, size)
        if create:
            names = alarms.create(ctx, endpoint, bound)
        else:
            calls = [
                Call("cloudwatch", "put_metric_alarm", request)
                for request in alarms.requests(endpoint, bound, alarms.tags_of(ctx))
            ]
            names = sorted(call.params["AlarmName"] for call in calls)
        ctx.log(
            f"rollback alarms: {', '.join(names)} (p99 ModelLatency > {bound.ms:g} ms: {bound.how})"
        )
    else:
        names = list(plan.alarms)
        alarms.require(ctx, names)
    if not names:
        ctx.log("warning: no rollback alarm: only a failed health check rolls this update back")
    what = {
        "ALL_AT_ONCE": "all at once",
        "CANARY": f"canary {plan.percent} %",
        "LINEAR": f"linear steps of {plan.percent} %",
    }[plan.mode]
    ctx.log(f"rollout: {what}, {plan.wait_s} s bake per step")
    return deployment_config(plan, names, spec.startup_timeout), names, calls


def phase(response: dict[str, Any]) -> str:
    """The phase of a guarded update, from describe_endpoint (the new fleet's variant status)."""
    if response.get("EndpointStatus") == "RollingBack":
        return "rolling back"
    pending = response.get("PendingDeploymentSummary") or {}
    for variant in pending.get("ProductionVariants") or []:
        statuses = variant.get("VariantStatus") or []
        if statuses:
            latest = statuses[-1]
            text = PHASES.get(latest.get("Status", ""), latest.get("Status", "?"))
            weight = variant.get("CurrentWeight")
            if weight is not None and latest.get("Status") in ("Baking", "ActivatingTraffic"):
                text += f", new fleet weight {weight:g}"
            return f"{text}: {latest['StatusMessage']}" if latest.get("StatusMessage") else text
    return instances(response)


def rolled_back(ctx: Context, alarm_names: list[str], live: dict[str, Any]) -> str | None:
    """Which alarm fired, in words, when SageMaker rolled the update back; None if none did."""
    if not alarm_names:
        return None
    fired = alarms.fired(ctx, alarm_names)
    if not fired:
        return None
    said = "; ".join(
        f"{a['AlarmName']} ({a.get('MetricName', '?')}: {a.get('StateReason', 'in ALARM')})"
        for a in fired
    )
    word = "alarm" if len(fired) == 1 else "alarms"
    return f"SageMaker rolled the update back: {word} {said} fired"
