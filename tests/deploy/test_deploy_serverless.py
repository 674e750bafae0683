"""Serverless `up`: no instances, no autoscaling, only the allowed memory sizes."""

from __future__ import annotations

from tests.support.aws import IMAGE, state


def test_serverless_up_has_no_instances_and_cannot_autoscale(moto, cli, tmp_path):
    made = cli(
        "up", "--image", IMAGE, "--serverless-memory", "2048", "--serverless-concurrency", "4",
        "--poll", "0",
    )  # fmt: skip
    assert made.code == 0, made.err
    recorded = state(tmp_path)["endpoint"]
    config = moto.client("sagemaker").describe_endpoint_config(
        EndpointConfigName=recorded["config"]
    )
    variant = config["ProductionVariants"][0]
    assert variant["ServerlessConfig"] == {"MemorySizeInMB": 2048, "MaxConcurrency": 4}
    assert "InstanceType" not in variant
    assert "ContainerStartupHealthCheckTimeoutInSeconds" not in variant
    refused = cli("autoscale", "--min", "1", "--max", "2")
    assert refused.code == 2
    assert "a serverless endpoint scales by itself" in refused.error_line()


def test_serverless_memory_outside_the_allowed_steps_is_refused(moto, cli):
    result = cli("up", "--image", IMAGE, "--serverless-memory", "1500")
    assert result.code == 2
    assert "--serverless-memory 1500 is not allowed" in result.error_line()
