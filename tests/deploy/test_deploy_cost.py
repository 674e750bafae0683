"""`cost` with botocore's Stubber (moto has no Pricing backend), answering like the real Price List
API: describe_services names the attributes, get_products returns price-list JSON strings (one per
product: Hosting, Training, Batch Transform, ... for the same instance type)."""

from __future__ import annotations

import hashlib
import json

import pytest

from deploy import pricing
from tests.support.aws import not_in_policy, write_state

ATTRIBUTES = [
    "productFamily",
    "vCpu",
    "locationType",
    "usagetype",
    "instanceName",
    "memory",
    "gpu",
    "component",
    "regionCode",
    "servicecode",
    "instanceType",
    "location",
    "servicename",
    "operation",
    "computeType",
]
LOCATIONS = {"us-east-1": ("USE1", "US East (N. Virginia)"), "eu-west-1": ("EU", "EU (Ireland)")}
# (usage type infix, component, operation, USD per hour) for ml.m5.xlarge in us-east-1
M5_XLARGE = [
    ("Host", "Hosting", "RunInstance", "0.2300000000"),
    ("Train", "Training", "RunInstance", "0.2300000000"),
    ("Tsform", "Batch Transform", "RunInstance", "0.2300000000"),
    ("Notebk", "Notebook", "RunInstance", "0.2300000000"),
    ("AsyncInf", "AsyncInference", "RunInstance", "0.2300000000"),
]


def price_item(region: str, instance: str, infix: str, component: str, operation: str, usd: str):
    """One entry of GetProducts' PriceList, as the API sends it: a JSON string."""
    code, location = LOCATIONS[region]
    sku = hashlib.sha256(f"{region}{instance}{infix}".encode()).hexdigest()[:16].upper()
    term = f"{sku}.JRTCKXETXF"
    return json.dumps(
        {
            "product": {
                "productFamily": "ML Instance",
                "attributes": {
                    "regionCode": region,
                    "servicecode": "AmazonSageMaker",
                    "usagetype": f"{code}-{infix}:{instance}",
                    "locationType": "AWS Region",
                    "location": location,
                    "servicename": "Amazon SageMaker",
                    "instanceName": instance,
                    "operation": operation,
                    "component": component,
                    "vCpu": "4",
                    "memory": "16 GiB",
                    "gpu": "0",
                    "computeType": "CPU",
                },
                "sku": sku,
            },
            "serviceCode": "AmazonSageMaker",
            "terms": {
                "OnDemand": {
                    term: {
                        "priceDimensions": {
                            f"{term}.6YS6EN2CT7": {
                                "unit": "Hrs",
                                "endRange": "Inf",
                                "description": f"${float(usd):.3f} per {component} "
                                f"{instance} hour in {location}",
                                "appliesTo": [],
                                "rateCode": f"{term}.6YS6EN2CT7",
                                "beginRange": "0",
                                "pricePerUnit": {"USD": usd},
                            }
                        },
                        "sku": sku,
                        "effectiveDate": "2025-11-01T00:00:00Z",
                        "offerTermCode": "JRTCKXETXF",
                        "termAttributes": {},
                    }
                }
            },
            "version": "20251120201523",
            "publicationDate": "2025-11-20T20:15:23Z",
        }
    )


def expect_price_list(stubbed, region: str, instance: str, items: list[str]):
    client = stubbed.stub("pricing", region="us-east-1")
    client.add_response(
        "describe_services",
        {
            "Services": [{"ServiceCode": "AmazonSageMaker", "AttributeNames": ATTRIBUTES}],
            "FormatVersion": "aws_v1",
        },
        {"ServiceCode": "AmazonSageMaker", "FormatVersion": "aws_v1"},
    )
    client.add_response(
        "get_products",
        {"FormatVersion": "aws_v1", "PriceList": items},
        {
            "ServiceCode": "AmazonSageMaker",
            "Filters": [
                {"Type": "TERM_MATCH", "Field": "regionCode", "Value": region},
                {"Type": "TERM_MATCH", "Field": "instanceName", "Value": instance},
            ],
            "FormatVersion": "aws_v1",
        },
    )
    return client


@pytest.fixture
def us_east(moto, stubbed):
    stubbed.region = "us-east-1"
    return stubbed


def test_cost_prices_the_hosting_product_and_a_million_images(cli, us_east, api_calls):
    items = [price_item("us-east-1", "ml.m5.xlarge", *row) for row in reversed(M5_XLARGE)]
    expect_price_list(us_east, "us-east-1", "ml.m5.xlarge", items)
    result = cli(
        "cost", "--instance-type", "ml.m5.xlarge", "--throughput", "20", "--region", "us-east-1",
        aws=us_east,
    )  # fmt: skip
    assert result.code == 0, result.err
    us_east.verify()
    lines = result.out.splitlines()
    assert lines[0] == (
        "ml.m5.xlarge in us-east-1, hosting, on-demand: $0.2300 per hour (USE1-Host:ml.m5.xlarge)"
    )
    assert lines[1] == "1 instance, 730 h/month: $167.90 per month"
    # $0.23 / (20 img/s x 3600 s) x 1e6 = $3.19
    assert lines[2] == "at 20 images/s per instance, kept busy: $3.19 per million images"
    assert not_in_policy(api_calls) == []


def test_cost_json_for_batch_transform_and_several_instances(cli, us_east):
    rows = [("Host", "Hosting", "RunInstance", "0.2300000000")]
    rows.append(("Tsform", "Batch Transform", "RunInstance", "0.2100000000"))
    items = [price_item("us-east-1", "ml.m5.xlarge", *row) for row in rows]
    expect_price_list(us_east, "us-east-1", "ml.m5.xlarge", items)
    result = cli(
        "cost", "--instance-type", "ml.m5.xlarge", "--instance-count", "3", "--usage",
        "transform", "--throughput", "12.5", "--json", aws=us_east,
    )  # fmt: skip
    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert data["usagetype"] == "USE1-Tsform:ml.m5.xlarge"
    assert data["usd_per_hour"] == 0.21
    assert data["usd_per_month"] == round(0.21 * 730 * 3, 2)
    assert data["usd_per_million_images"] == round(0.21 / (12.5 * 3600) * 1e6, 4)


def test_cost_of_an_unknown_instance_type_suggests_the_close_ones(cli, us_east):
    client = expect_price_list(us_east, "us-east-1", "ml.m5.xlarg", [])
    client.add_response(
        "get_attribute_values",
        {
            "AttributeValues": [
                {"Value": v}
                for v in ("ml.m5.large", "ml.m5.xlarge", "ml.c5.xlarge", "ml.p3.2xlarge")
            ]
        },
        {"ServiceCode": "AmazonSageMaker", "AttributeName": "instanceName"},
    )
    result = cli("cost", "--instance-type", "ml.m5.xlarg", aws=us_east)
    assert result.code == 2
    line = result.error_line()
    assert "no on-demand hosting price for ml.m5.xlarg in us-east-1" in line
    assert "Did you mean ml.m5.xlarge" in line


def test_cost_defaults_to_the_deployed_instance_type_and_count(moto, cli, stubbed, tmp_path):
    write_state(
        tmp_path,
        region="eu-west-1",
        endpoint={"name": "yolov7-x", "instance_type": "ml.m5.xlarge", "instance_count": 2},
    )
    rows = [("Host", "Hosting", "RunInstance", "0.2560000000")]
    expect_price_list(
        stubbed, "eu-west-1", "ml.m5.xlarge", [price_item("eu-west-1", "ml.m5.xlarge", *rows[0])]
    )
    result = cli("cost", aws=stubbed)
    assert result.code == 0, result.err
    assert "EU-Host:ml.m5.xlarge" in result.out
    assert "2 instances, 730 h/month: $373.76 per month" in result.out


def test_price_list_without_the_expected_attributes_is_an_aws_failure(stubbed):
    client = stubbed.stub("pricing", region="us-east-1")
    client.add_response(
        "describe_services",
        {"Services": [{"ServiceCode": "AmazonSageMaker", "AttributeNames": ["location"]}]},
    )
    with pytest.raises(pricing.AwsError, match="no longer describes AmazonSageMaker"):
        pricing.hourly_price(stubbed.client("pricing", "us-east-1"), "us-east-1", "ml.m5.xlarge")


def test_cost_of_a_graviton_instance_says_its_speed_is_not_measured(cli, us_east):
    rows = [("Host", "Hosting", "RunInstance", "0.1700000000")]  # the value is the stub's own
    items = [price_item("us-east-1", "ml.c7g.xlarge", *row) for row in rows]
    expect_price_list(us_east, "us-east-1", "ml.c7g.xlarge", items)
    result = cli("cost", "--instance-type", "ml.c7g.xlarge", "--region", "us-east-1", aws=us_east)
    assert result.code == 0, result.err
    assert "$0.1700 per hour" in result.out
    assert result.out.splitlines()[-1].startswith("Graviton (arm64): speed not measured")
    expect_price_list(us_east, "us-east-1", "ml.c7g.xlarge", items)
    data = json.loads(
        cli(
            "cost", "--instance-type", "ml.c7g.xlarge", "--region", "us-east-1", "--json",
            aws=us_east,
        ).out
    )  # fmt: skip
    assert (data["architecture"], data["speed_measured"]) == ("arm64", False)


def test_cost_compares_n_models_on_one_endpoint_with_one_endpoint_each(cli, us_east):
    items = [price_item("us-east-1", "ml.m5.xlarge", *row) for row in reversed(M5_XLARGE)]
    expect_price_list(us_east, "us-east-1", "ml.m5.xlarge", items)
    result = cli(
        "cost", "--instance-type", "ml.m5.xlarge", "--models", "20", "--region", "us-east-1",
        aws=us_east,
    )  # fmt: skip
    assert result.code == 0, result.err
    # $167.90 a month for one endpoint; twenty of them: $3,358.00, $3,190.10 more (95 %)
    assert result.out.splitlines()[-1] == (
        "20 models: one multi-model endpoint $167.90 per month, one endpoint each $3,358.00: "
        "saves $3,190.10 (95%) while the models fit in its memory (docs/multi-model.md)"
    )
    expect_price_list(us_east, "us-east-1", "ml.m5.xlarge", items)
    shown = cli(
        "cost", "--instance-type", "ml.m5.xlarge", "--models", "3", "--json",
        "--region", "us-east-1", aws=us_east,
    )  # fmt: skip
    figures = json.loads(shown.out)
    assert figures["models"] == 3 and figures["usd_saved_per_month"] == round(2 * 167.9, 2)
    bad = cli("cost", "--models", "0", "--region", "us-east-1", aws=us_east)
    assert bad.code == 2 and "--models" in bad.error_line()
