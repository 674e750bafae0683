"""How images and answers are laid out in S3, shared by `transform` and `up --async`.

One folder per deployment's data, next to each other:

    s3://BUCKET/PATH/input/NAME          the images (`invoke --async` uploads them here)
    s3://BUCKET/PATH/output/...          the answers (async: <id>.out; batch: NAME.out)
    s3://BUCKET/PATH/failure/...         async failures (<id>-error.out)

`up --async --output s3://BUCKET/PATH/output` puts the inputs in the sibling `input/` folder, so
`transform --input s3://BUCKET/PATH/input/` runs a batch job over exactly what was sent
asynchronously (and the other way round: a batch input folder can be an async input prefix).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deploy.aws import buckets
from deploy.errors import UserError

INPUT = "input"
OUTPUT = "output"
FAILURE = "failure"


@dataclass(frozen=True)
class S3Uri:
    bucket: str
    key: str

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def folder(self) -> S3Uri:
        """The same location as a folder: its key ends in '/' (or is empty: the bucket)."""
        key = self.key if not self.key or self.key.endswith("/") else self.key + "/"
        return S3Uri(self.bucket, key)

    def child(self, name: str) -> S3Uri:
        return S3Uri(self.bucket, self.folder().key + name)

    def sibling(self, name: str) -> S3Uri:
        """`s3://b/a/output` -> `s3://b/a/NAME/`: the folder next to this one."""
        parent = self.key.rstrip("/").rpartition("/")[0]
        return S3Uri(self.bucket, f"{parent}/{name}/" if parent else f"{name}/")


def parse(uri: str, option: str) -> S3Uri:
    """An s3://bucket[/key] URI, or one `error:` line naming the option."""
    if not isinstance(uri, str) or not uri.startswith("s3://"):
        raise UserError(f"{option} {uri!r} is not an s3:// URI", f"e.g. {option} s3://BUCKET/PATH/")
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not bucket or "//" in key:
        raise UserError(f"{option} {uri!r} is not an s3://BUCKET/PATH URI")
    return S3Uri(bucket, key)


@dataclass(frozen=True)
class Layout:
    """The three folders of one deployment's data."""

    input: S3Uri
    output: S3Uri
    failure: S3Uri

    @classmethod
    def around(
        cls, output: S3Uri, failure: S3Uri | None = None, inputs: S3Uri | None = None
    ) -> Layout:
        """The layout for an output folder: inputs and failures in its sibling folders."""
        return cls(
            input=(inputs or output.sibling(INPUT)).folder(),
            output=output.folder(),
            failure=(failure or output.sibling(FAILURE)).folder(),
        )

    def check(self) -> Layout:
        folders = {"input": self.input, "output": self.output, "failure": self.failure}
        for name, folder in folders.items():
            for other_name, other in folders.items():
                if name != other_name and str(folder).startswith(str(other)):
                    raise UserError(
                        f"the {name} folder {folder} lies inside the {other_name} folder {other}",
                        "give the output a folder of its own, e.g. s3://BUCKET/PATH/output/",
                    )
        return self


def input_key(prefix: S3Uri, path: Path) -> S3Uri:
    """Where an image file goes: the input folder, under its own file name."""
    return prefix.folder().child(path.name)


def check_bucket(s3: Any, uri: S3Uri, option: str, account: str) -> None:
    """The bucket must exist and be `account`'s: nothing is created in a missing one, and
    nothing is sent to (or read from) one that another account owns."""
    if not buckets.exists(s3, uri.bucket, account):
        raise UserError(
            f"{option}: the S3 bucket {uri.bucket} does not exist",
            f"create it first (aws s3 mb s3://{uri.bucket}), in the endpoint's region",
        )
