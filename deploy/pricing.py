"""`cost`: on-demand hourly price of a SageMaker instance from the Price List API, and what a
million images cost at a measured throughput.

The field names are not guessed: `describe_services` lists the attributes of AmazonSageMaker
products, and the instance attribute (`instanceName`) and region attribute (`regionCode`) are
picked from that list. A product is real-time hosting when its usage type reads
`<REGION>-Host:<instance>` (batch transform: `-Tsform:`); the price is its OnDemand term's
price per `Hrs` in USD.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from deploy import config
from deploy.errors import AwsError, UserError

SERVICE_CODE = "AmazonSageMaker"
USAGE = {"hosting": "Host", "transform": "Tsform"}
INSTANCE_FIELDS = ("instanceName", "instanceType")
REGION_FIELD = "regionCode"


@dataclass
class Price:
    instance_type: str
    region: str
    usage: str
    usd_per_hour: float
    sku: str
    usagetype: str
    description: str


@dataclass
class Cost:
    price: Price
    instance_count: int
    usd_per_month: float
    throughput: float | None = None
    usd_per_million: float | None = None


def field_names(pricing: Any) -> tuple[str, str]:
    services = pricing.describe_services(ServiceCode=SERVICE_CODE, FormatVersion="aws_v1")
    attributes = set()
    for service in services.get("Services", []):
        attributes.update(service.get("AttributeNames", []))
    instance = next((f for f in INSTANCE_FIELDS if f in attributes), None)
    if instance is None or REGION_FIELD not in attributes:
        raise AwsError(
            f"the Price List API no longer describes {SERVICE_CODE} with an instance and a "
            "region attribute",
            "check the price on https://aws.amazon.com/sagemaker/pricing/",
        )
    return instance, REGION_FIELD


def products(pricing: Any, filters: list[dict]) -> Iterator[dict]:
    for page in pricing.get_paginator("get_products").paginate(
        ServiceCode=SERVICE_CODE, Filters=filters, FormatVersion="aws_v1"
    ):
        for item in page.get("PriceList", []):
            yield json.loads(item) if isinstance(item, str) else item


def on_demand_usd_per_hour(product: dict) -> tuple[float, str] | None:
    for term in (product.get("terms", {}).get("OnDemand") or {}).values():
        for dimension in (term.get("priceDimensions") or {}).values():
            usd = (dimension.get("pricePerUnit") or {}).get("USD")
            if usd is not None and dimension.get("unit", "").lower() in ("hrs", "hours", "hour"):
                return float(usd), dimension.get("description", "")
    return None


def hourly_price(pricing: Any, region: str, instance_type: str, usage: str = "hosting") -> Price:
    if usage not in USAGE:
        raise UserError(f"unknown usage {usage!r}", f"use one of {', '.join(USAGE)}")
    instance_field, region_field = field_names(pricing)
    filters = [
        {"Type": "TERM_MATCH", "Field": region_field, "Value": region},
        {"Type": "TERM_MATCH", "Field": instance_field, "Value": instance_type},
    ]
    wanted = re.compile(rf"(^|-){USAGE[usage]}:{re.escape(instance_type)}$")
    seen = 0
    for product in products(pricing, filters):
        seen += 1
        attributes = product.get("product", {}).get("attributes", {})
        usagetype = attributes.get("usagetype", "")
        if not wanted.search(usagetype):
            continue
        found = on_demand_usd_per_hour(product)
        if found is None:
            continue
        usd, description = found
        return Price(
            instance_type=instance_type,
            region=region,
            usage=usage,
            usd_per_hour=usd,
            sku=product.get("product", {}).get("sku", ""),
            usagetype=usagetype,
            description=description,
        )
    if seen:
        raise UserError(
            f"{instance_type} has prices in {region}, but none for {usage}",
            "pick an instance type that SageMaker offers for this use",
        )
    close = suggestions(pricing, instance_field, instance_type)
    hint = f"did you mean {', '.join(close)}?" if close else "check the instance type and region"
    raise UserError(f"no on-demand {usage} price for {instance_type} in {region}", hint)


def suggestions(pricing: Any, instance_field: str, instance_type: str) -> list[str]:
    values = []
    paginator = pricing.get_paginator("get_attribute_values")
    for page in paginator.paginate(ServiceCode=SERVICE_CODE, AttributeName=instance_field):
        values += [v["Value"] for v in page.get("AttributeValues", [])]
    return difflib.get_close_matches(instance_type, values, n=3, cutoff=0.8)


def cost(
    pricing: Any,
    region: str,
    instance_type: str,
    instance_count: int = 1,
    throughput: float | None = None,
    usage: str = "hosting",
) -> Cost:
    """Hourly price; monthly for `instance_count`; per million images at `throughput` img/s
    per instance, all instances busy."""
    if instance_count < 1:
        raise UserError("--instance-count must be at least 1")
    if throughput is not None and throughput <= 0:
        raise UserError("--throughput must be positive (images per second per instance)")
    price = hourly_price(pricing, region, instance_type, usage)
    monthly = price.usd_per_hour * config.HOURS_PER_MONTH * instance_count
    per_million = None
    if throughput:
        per_million = price.usd_per_hour / (throughput * 3600) * 1_000_000
    return Cost(price, instance_count, monthly, throughput, per_million)
