"""What every command works with: the AWS session (made on first use), the state, a log."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field

from deploy import aws as aws_module
from deploy import config
from deploy.state import State, StateFile, check_region


def stderr_log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


@dataclass
class Context:
    store: StateFile
    state: State
    region: str | None = None
    profile: str | None = None
    assume_role: str | None = None
    external_id: str | None = None
    duration: int | None = None  # --duration: the assumed role's credentials' lifetime
    prefix: str | None = None
    log: Callable[[str], None] = stderr_log
    _aws: aws_module.Aws | None = field(default=None, repr=False)

    @property
    def aws(self) -> aws_module.Aws:
        """The session, made on first use: region from --region, the state, or boto3's chain."""
        if self._aws is None:
            self._aws = aws_module.connect(
                region=self.region,
                profile=self.profile,
                assume_role=self.assume_role,
                external_id=self.external_id,
                duration=self.duration,
                default_region=self.state.get("region"),
            )
            check_region(self.state, self._aws.region)
            if self._aws.assumed_role:
                self.log(f"assumed role: {self._aws.assumed_role['arn']}")
        return self._aws

    def use_aws(self, aws: aws_module.Aws) -> None:
        """Hand in a ready session (tests use this for botocore Stubber clients)."""
        check_region(self.state, aws.region)
        self._aws = aws

    @property
    def name_prefix(self) -> str:
        return self.prefix or self.state.get("prefix") or config.DEFAULT_PREFIX

    def save(self) -> None:
        """Record the region and prefix with every write, then write the file."""
        if self._aws is not None:
            self.state["region"] = self._aws.region
        self.state.setdefault("prefix", self.name_prefix)
        self.store.save(self.state)
