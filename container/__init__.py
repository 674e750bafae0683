"""Build, run and measure the SageMaker serving image (see docs/container.md)."""
