"""`cost`: the on-demand price (Pricing API) and, given a throughput, per million images."""

from __future__ import annotations

import argparse
import json
from typing import Any

from deploy import config, preflight, pricing
from deploy.context import Context
from deploy.errors import EXIT_OK, UserError

NAME = "cost"
HELP = "on-demand price from the Pricing API, and per million images"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--instance-type", help="default: the endpoint's, else the default type")
    parser.add_argument("--instance-count", type=int, help="default: the endpoint's, else 1")
    parser.add_argument("--throughput", type=float, metavar="IMG_PER_S", help="images/s/instance")
    parser.add_argument(
        "--models",
        type=int,
        metavar="N",
        help="compare N models on one multi-model endpoint with N single-model endpoints",
    )
    parser.add_argument("--usage", choices=sorted(pricing.USAGE), default="hosting")
    parser.add_argument("--json", action="store_true")


def run(ctx: Context, args: argparse.Namespace) -> int:
    endpoint = ctx.state.get("endpoint") or {}
    instance_type = args.instance_type or endpoint.get("instance_type")
    if not instance_type and endpoint.get("serverless"):
        raise UserError(
            "the deployed endpoint is serverless: billed per GB-second of compute",
            "pass --instance-type to price an instance instead",
        )
    instance_type = instance_type or config.DEFAULT_INSTANCE_TYPE
    count = args.instance_count or endpoint.get("instance_count") or 1
    if args.models is not None and not 1 <= args.models <= 10_000:
        raise UserError("--models must be between 1 and 10000")
    client = ctx.aws.client("pricing", region=config.PRICING_REGION)
    result = pricing.cost(client, ctx.aws.region, instance_type, count, args.throughput, args.usage)
    if args.json:
        print(json.dumps({**as_json(result), **models_json(result, args.models)}, indent=2))
    else:
        print("\n".join([render(result), *models_lines(result, args.models)]))
    return EXIT_OK


def models_json(result: pricing.Cost, models: int | None) -> dict[str, Any]:
    """N models on one multi-model endpoint against N endpoints of the same size."""
    if models is None:
        return {}
    separate = result.usd_per_month * models
    return {
        "models": models,
        "usd_per_month_one_endpoint": round(result.usd_per_month, 2),
        "usd_per_month_one_endpoint_per_model": round(separate, 2),
        "usd_saved_per_month": round(separate - result.usd_per_month, 2),
    }


def models_lines(result: pricing.Cost, models: int | None) -> list[str]:
    if models is None:
        return []
    figures = models_json(result, models)
    saved = figures["usd_saved_per_month"]
    share = saved / figures["usd_per_month_one_endpoint_per_model"]
    return [
        f"{models} models: one multi-model endpoint ${figures['usd_per_month_one_endpoint']:,.2f}"
        f" per month, one endpoint each ${figures['usd_per_month_one_endpoint_per_model']:,.2f}:"
        f" saves ${saved:,.2f} ({share:.0%}) while the models fit in its memory "
        "(docs/multi-model.md)"
    ]


def as_json(result: pricing.Cost) -> dict[str, Any]:
    price = result.price
    return {
        "instance_type": price.instance_type,
        "region": price.region,
        "usage": price.usage,
        "usd_per_hour": price.usd_per_hour,
        "usagetype": price.usagetype,
        "sku": price.sku,
        "instance_count": result.instance_count,
        "usd_per_month": round(result.usd_per_month, 2),
        "throughput": result.throughput,
        "architecture": preflight.architecture_of(price.instance_type),
        "speed_measured": preflight.architecture_of(price.instance_type) != preflight.ARM,
        "usd_per_million_images": (
            round(result.usd_per_million, 4) if result.usd_per_million is not None else None
        ),
    }


def render(result: pricing.Cost) -> str:
    price = result.price
    lines = [
        f"{price.instance_type} in {price.region}, {price.usage}, on-demand: "
        f"${price.usd_per_hour:.4f} per hour ({price.usagetype})",
        f"{result.instance_count} instance{'s' if result.instance_count != 1 else ''}, "
        f"{config.HOURS_PER_MONTH} h/month: ${result.usd_per_month:,.2f} per month",
    ]
    if result.usd_per_million is not None:
        lines.append(
            f"at {result.throughput:g} images/s per instance, kept busy: "
            f"${result.usd_per_million:,.2f} per million images"
        )
    else:
        lines.append("pass --throughput IMAGES_PER_S (from the benchmark) for the cost per image")
    if preflight.architecture_of(price.instance_type) == preflight.ARM:
        lines.append(GRAVITON_NOTE)
    return "\n".join(lines)


# The benchmark's figures (docs/bench.md) are x86 ones: a throughput for Graviton is a guess.
GRAVITON_NOTE = (
    "Graviton (arm64): speed not measured by this project; run `make bench` on the instance for "
    "its throughput, and push an arm64 image (`push --platform linux/arm64`)"
)
