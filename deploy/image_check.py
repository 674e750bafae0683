"""Before `up` or `update` creates anything: is the image in ECR, in a form SageMaker can run?

SageMaker's CreateModel accepts a Docker image manifest v2 schema 2 only. An OCI manifest (what
podman builds by default) or an OCI index (what buildx makes when it attaches its provenance
attestation) is accepted by ECR but refused by SageMaker, and an image over its size limit fails
only when the instance pulls it, minutes later. ECR's DescribeImages says both up front.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from botocore.exceptions import ClientError

from deploy.aws.not_found import is_not_found
from deploy.context import Context
from deploy.errors import UserError

DOCKER_V2S2 = "application/vnd.docker.distribution.manifest.v2+json"
KINDS = {
    "application/vnd.oci.image.manifest.v1+json": "an OCI manifest",
    "application/vnd.oci.image.index.v1+json": "an OCI image index (multi-platform or attested)",
    "application/vnd.docker.distribution.manifest.list.v2+json": "a multi-platform manifest list",
    "application/vnd.docker.distribution.manifest.v1+prettyjws": "a schema 1 manifest",
}
# SageMaker's limit on an inference container image (the size ECR reports: compressed layers).
MAX_IMAGE_BYTES = 10 * 1000**3
REBUILD = (
    "rebuild and push it with `python -m deploy push`, which makes a single-platform Docker v2 "
    "manifest (podman: build --format docker, push --format v2s2; docker: buildx build "
    "--provenance=false --output type=docker)"
)
ECR_IMAGE = re.compile(
    r"^(?P<account>\d{12})\.dkr\.ecr(?:-fips)?\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?"
    r"/(?P<repository>[a-z0-9._/-]+?)(?::(?P<tag>[\w.-]+)|@(?P<digest>sha256:[0-9a-f]{64}))$"
)


@dataclass(frozen=True)
class EcrImage:
    account: str
    region: str
    repository: str
    tag: str | None
    digest: str | None

    @property
    def image_id(self) -> dict[str, str]:
        return {"imageDigest": self.digest} if self.digest else {"imageTag": self.tag or ""}


def parse(uri: str) -> EcrImage:
    match = ECR_IMAGE.match(uri)
    if not match:
        raise UserError(
            f"image {uri} is not in Amazon ECR, and SageMaker endpoints pull their image from ECR",
            "push it with `python -m deploy push` and deploy the URI it prints",
        )
    return EcrImage(**match.groupdict())


def pinned(uri: str, digest: str) -> str:
    """`uri` naming its image by `digest` (REPO@sha256:...) instead of by tag."""
    head, _, last = uri.rpartition("/")
    name = last.split("@", 1)[0].split(":", 1)[0]
    return f"{head}/{name}@{digest}"


def check(ctx: Context, uri: str) -> str | None:
    """Refuse (UserError, nothing created) an image SageMaker would refuse or fail to pull.
    Returns the image's digest as ECR holds it, or None where ECR cannot be read."""
    image = parse(uri)
    if image.region != ctx.aws.region:
        raise UserError(
            f"image {uri} is in ECR of {image.region}, but the endpoint would be in "
            f"{ctx.aws.region}, and SageMaker pulls only from its own region",
            f"push it with `python -m deploy --region {ctx.aws.region} push`",
        )
    ecr = ctx.aws.client("ecr")
    try:
        details = ecr.describe_images(
            registryId=image.account, repositoryName=image.repository, imageIds=[image.image_id]
        )["imageDetails"][0]
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if is_not_found(exc):
            raise UserError(
                f"image {uri} is not in ECR ({code})", "run `python -m deploy push` first"
            ) from None
        if code in ("AccessDeniedException", "AccessDenied"):
            # An image in another account may be pullable by SageMaker's role and still not
            # describable by the operator: say what was not checked, and go on.
            ctx.log(f"warning: cannot read {uri} from ECR ({code}): its manifest is not checked")
            return image.digest
        raise
    media_type = details.get("imageManifestMediaType")
    if media_type != DOCKER_V2S2:
        kind = KINDS.get(media_type or "", "a manifest of an unknown type")
        raise UserError(
            f"image {uri} has {kind} ({media_type}), which SageMaker refuses: it accepts only "
            f"{DOCKER_V2S2}",
            REBUILD,
        )
    size = details.get("imageSizeInBytes") or 0
    if size > MAX_IMAGE_BYTES:
        raise UserError(
            f"image {uri} is {size / 1e9:.1f} GB, over SageMaker's "
            f"{MAX_IMAGE_BYTES / 1e9:.0f} GB limit for an inference image",
            "build the slim serving image (`make image`: no torch) and push that",
        )
    digest: str | None = details.get("imageDigest") or image.digest
    return digest
