"""Names and tags: the prefix, the UTC stamp, and our tag over a user's."""

from __future__ import annotations

import pytest

from deploy import names
from deploy.errors import UserError


def test_names_carry_the_prefix_and_a_utc_stamp():
    from datetime import UTC, datetime

    when = names.stamp(datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC))
    assert when == "20300102-030405"
    found = names.deployment("yolov7", when)
    assert (found.model, found.config, found.endpoint) == (
        "yolov7-model-20300102-030405",
        "yolov7-config-20300102-030405",
        "yolov7-20300102-030405",
    )
    with pytest.raises(UserError):
        names.check_prefix("bad_prefix!")


def test_our_tag_wins_over_a_user_tag_of_the_same_key():
    tags = names.tags_for("yolov7", names.parse_tags(["managed-by=me", "team=vision"]))
    assert tags["managed-by"] == "yolov7-sagemaker-deploy" and tags["team"] == "vision"
    with pytest.raises(UserError):
        names.parse_tags(["aws:reserved=x"])
