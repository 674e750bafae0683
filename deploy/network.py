"""`--vpc-subnets` / `--security-groups`: checked against EC2 before anything is created.

SageMaker accepts any ids in VpcConfig and only fails later, when it creates the network
interfaces (minutes into `up`); a subnet in another VPC than its security groups is a classic
cause. Here each id must exist and all of them must share one VPC, or the command stops with one
line before the first resource is made.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from botocore.exceptions import ClientError

from deploy.errors import UserError

SUBNET_PREFIX = "subnet-"
GROUP_PREFIX = "sg-"
MAX_SUBNETS = 16  # SageMaker's VpcConfig limits
MAX_GROUPS = 5


def parse_ids(text: str | None, option: str, prefix: str) -> list[str]:
    """`subnet-a,subnet-b` as a list (None or "" -> []), each id shaped like an EC2 id."""
    if not text:
        return []
    ids = [part.strip() for part in text.split(",") if part.strip()]
    for found in ids:
        if not found.startswith(prefix) or not found[len(prefix) :].isalnum():
            raise UserError(f"{option} {found!r} is not an id like {prefix}0123abcd")
    if len(set(ids)) != len(ids):
        raise UserError(f"{option} names an id twice")
    return ids


def check_shape(subnets: list[str], groups: list[str]) -> None:
    """What can be said without AWS: both or neither, and within SageMaker's limits."""
    if bool(subnets) != bool(groups):
        given, missing = (
            ("--vpc-subnets", "--security-groups")
            if subnets
            else ("--security-groups", "--vpc-subnets")
        )
        raise UserError(f"{given} needs {missing}", "SageMaker's VpcConfig takes both")
    if len(subnets) > MAX_SUBNETS:
        raise UserError(
            f"--vpc-subnets names {len(subnets)} subnets; SageMaker allows {MAX_SUBNETS}"
        )
    if len(groups) > MAX_GROUPS:
        raise UserError(
            f"--security-groups names {len(groups)} groups; SageMaker allows {MAX_GROUPS}"
        )


def vpc_config(subnets: list[str], groups: list[str]) -> dict[str, Any]:
    """SageMaker's VpcConfig ({} when no VPC was asked for)."""
    if not subnets:
        return {}
    return {"Subnets": list(subnets), "SecurityGroupIds": list(groups)}


def check(ec2: Any, subnets: list[str], groups: list[str]) -> str | None:
    """The one VPC that every subnet and security group belongs to (None without a VPC).

    UserError when an id does not exist or they span more than one VPC."""
    check_shape(subnets, groups)
    if not subnets:
        return None
    subnet_vpcs = _vpcs_of(ec2, "describe_subnets", "SubnetIds", "Subnets", "SubnetId", subnets)
    group_vpcs = _vpcs_of(
        ec2, "describe_security_groups", "GroupIds", "SecurityGroups", "GroupId", groups
    )
    owners = {**subnet_vpcs, **group_vpcs}
    vpcs = sorted(set(owners.values()))
    if len(vpcs) > 1:
        first = owners[subnets[0]]
        stray = next(name for name, vpc in owners.items() if vpc != first)
        raise UserError(
            f"{stray} is in {owners[stray]} but {subnets[0]} is in {first}",
            "the subnets and security groups of one endpoint must share one VPC",
        )
    return vpcs[0]


def _vpcs_of(
    ec2: Any, operation: str, id_param: str, result_key: str, id_key: str, ids: Iterable[str]
) -> dict[str, str]:
    """{id: its VpcId} for every id; UserError naming the first one EC2 does not know."""
    wanted = list(ids)
    try:
        found = getattr(ec2, operation)(**{id_param: wanted})[result_key]
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code.endswith(".NotFound") or code.endswith(".Malformed"):
            raise UserError(_missing(wanted, code, str(exc)), _hint(id_param)) from None
        raise
    owners = {item[id_key]: item["VpcId"] for item in found}
    missing = [name for name in wanted if name not in owners]
    if missing:
        raise UserError(f"{missing[0]} does not exist in this account and region", _hint(id_param))
    return owners


def _missing(wanted: list[str], code: str, text: str) -> str:
    named = next((name for name in wanted if name in text), ", ".join(wanted))
    return f"{named} does not exist in this account and region ({code})"


def _hint(id_param: str) -> str:
    what = "subnets" if id_param == "SubnetIds" else "security groups"
    return f"list them with `aws ec2 describe-{what.replace(' ', '-')}`"
