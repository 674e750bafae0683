"""SageMaker's UpdateEndpoint, which moto leaves out (its server answers HTTP 500).

`UpdatingSageMaker` adds the handler inside the moto server the tests run (ThreadedMotoServer, in
this process), acting on moto's own records: it checks the endpoint and the config exist, answers
with the endpoint's ARN and leaves the endpoint `Updating` on its old config, as the service does.
The test then plays SageMaker's side: `finish` switches the endpoint to the new config (InService),
`roll_back` returns it to InService on the old one with a FailureReason. `refuse` makes the call
fail with an AWS error code instead; `at_once` finishes every accepted update immediately.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from tests.support.aws import ACCOUNT, REGION


def _error(code: str, message: str):
    # moto's dispatcher takes the status from the headers, not from the tuple.
    headers = {"status": 400, "x-amzn-ErrorType": code}
    return 400, headers, json.dumps({"__type": code, "message": message})


@dataclass
class UpdatingSageMaker:
    refuse: tuple[str, str] | None = None  # (code, message) for every UpdateEndpoint
    at_once: bool = False
    pending: dict[str, str] = field(default_factory=dict)  # endpoint -> config being rolled out
    requests: list[dict[str, str]] = field(default_factory=list)

    def install(self, monkeypatch) -> UpdatingSageMaker:
        from moto.sagemaker.responses import SageMakerResponse

        double = self

        def update_endpoint(response):
            return double.accept(
                response._get_param("EndpointName"), response._get_param("EndpointConfigName")
            )

        monkeypatch.setattr(SageMakerResponse, "update_endpoint", update_endpoint, raising=False)
        return self

    @staticmethod
    def _backend():
        from moto.sagemaker.models import sagemaker_backends

        return sagemaker_backends[ACCOUNT][REGION]

    def accept(self, endpoint_name: str, config_name: str):
        self.requests.append({"endpoint": endpoint_name, "config": config_name})
        if self.refuse:
            return _error(*self.refuse)
        backend = self._backend()
        endpoint = backend.endpoints.get(endpoint_name)
        if endpoint is None:
            return _error("ValidationException", f"Could not find endpoint {endpoint_name}.")
        if config_name not in backend.endpoint_configs:
            return _error("ValidationException", f"Could not find config {config_name}.")
        if endpoint.endpoint_status != "InService":
            return _error(
                "ValidationException",
                f"Cannot update in-progress endpoint {endpoint.arn}.",
            )
        endpoint.endpoint_status = "Updating"
        endpoint.failure_reason = None
        self.pending[endpoint_name] = config_name
        if self.at_once:
            self.finish(endpoint_name)
        return 200, {"status": 200}, json.dumps({"EndpointArn": endpoint.arn})

    def finish(self, endpoint_name: str) -> None:
        """SageMaker completed the update: the endpoint runs the new config."""
        backend = self._backend()
        endpoint = backend.endpoints[endpoint_name]
        config = backend.endpoint_configs[self.pending.pop(endpoint_name)]
        endpoint.endpoint_config_name = config.endpoint_config_name
        endpoint.production_variants = endpoint._process_production_variants(
            config.production_variants
        )
        endpoint.endpoint_status = "InService"

    def roll_back(self, endpoint_name: str, reason: str) -> None:
        """SageMaker gave up on the update: the endpoint runs its old config again."""
        endpoint = self._backend().endpoints[endpoint_name]
        del self.pending[endpoint_name]
        endpoint.endpoint_status = "InService"
        endpoint.failure_reason = reason
