"""Cost per million images at an instance's hourly price, from a measured throughput.

The default price is an assumption, not a measurement: ml.c6i.xlarge (4 vCPUs, the deploy
default), SageMaker real-time inference on demand in us-east-1, USD 0.204 per hour as we know the
list price on 2026-12-01 (not fetched in the run; `python -m deploy cost --instance-type
ml.c6i.xlarge` asks AWS's Price List API). The throughput measured on this machine's CPUs is
scaled linearly to the instance's vCPUs, which is also an assumption (the server runs one process
whose threads use every CPU; the measured machine is not that instance's CPU).
"""

from __future__ import annotations

DEFAULT_INSTANCE = "ml.c6i.xlarge"
DEFAULT_PRICE_PER_HOUR = 0.204
DEFAULT_INSTANCE_VCPUS = 4
PRICE_DATE = "2026-12-01"


def per_million(throughput_rps: float, price_per_hour: float, scale: float) -> float:
    """USD per million images at `throughput_rps` x `scale` images per second, fully busy."""
    per_second = throughput_rps * scale
    if per_second <= 0:
        return float("inf")
    return price_per_hour / (per_second * 3600) * 1e6
