"""`push`: build the serving image, make sure its ECR repository exists, log in, tag and push.

`--platform linux/amd64,linux/arm64` pushes both architectures as two single-platform v2s2 images,
TAG-amd64 and TAG-arm64 (SageMaker's CreateModel documents v2s2 single manifests; a manifest list is
not known to be accepted, so none is made), and records each by architecture in the state, where
`up` and `update` pick the one that matches the instance family (`for_instance`).

The registry password (from ecr:GetAuthorizationToken) goes to `login --password-stdin` on the
child's stdin: never on a command line, never printed, and scrubbed from any output we relay.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from deploy import config, encryption, errors, names, sbom
from deploy.aws.not_found import is_not_found
from deploy.context import Context
from deploy.errors import CommandFailed, UserError
from deploy.schema import ImageRecord
from deploy.state import now_iso

CLIS = ("docker", "podman")
# SageMaker's CreateModel accepts Docker image manifest v2 schema 2 only: an OCI manifest, or the
# OCI index that buildx makes for its provenance attestation, is refused ("Unsupported manifest
# media type"). These flags make each CLI build and push a single-platform v2s2 manifest; a test
# pushes the real image to a real registry with them and reads the stored media type back.
FORMAT_FLAGS = {
    "docker": (
        "--provenance=false",
        "--sbom=false",
        "--output",
        "type=docker,oci-mediatypes=false",
    ),
    "podman": ("--format", "docker"),
}
PUSH_FORMAT_FLAGS = {"docker": (), "podman": ("--format", "v2s2")}
REPOSITORY = r"^(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*$"
# A new repository's lifecycle policy: untagged images (left by interrupted pushes) expire after
# UNTAGGED_DAYS; of all images, the newest KEEP_IMAGES stay. An endpoint that runs an older one
# keeps running, but could no longer pull it to add an instance: see docs/deploy.md.
UNTAGGED_DAYS = 7
KEEP_IMAGES = 30
# What docker / podman print when ECR refuses to overwrite a tag in an immutable repository.
IMMUTABLE_REFUSAL = ("immutable", "ImageTagAlreadyExists")


@dataclass
class Command:
    argv: list[str]
    stdin_secret: bool = False  # the registry password is written to stdin

    def shown(self) -> str:
        text = shlex.join(self.argv)
        return f"{text} < (ECR password on stdin)" if self.stdin_secret else text


@dataclass
class PushPlan:
    cli: str
    repository: str
    repository_uri: str
    registry: str
    tag: str
    local_image: str
    image_uri: str
    commands: list[Command] = field(default_factory=list)


def split_platforms(platform: str | None) -> list[str]:
    """`--platform` as a list: one or several (comma-separated), each linux/ARCH, no repeats."""
    if not platform:
        return []
    found = [part.strip() for part in platform.split(",") if part.strip()]
    for one in found:
        if not re.match(r"^linux/(amd64|arm64)$", one):
            raise UserError(f"--platform {one!r} is not linux/amd64 or linux/arm64")
    if len(set(found)) != len(found):
        raise UserError(f"--platform {platform!r} names a platform twice")
    return found


def architecture(platform: str) -> str:
    return platform.rsplit("/", 1)[-1]


def for_instance(recorded: ImageRecord, instance_type: str | None) -> str | None:
    """The image `push` recorded for this instance's architecture (serverless: amd64), else the
    last one pushed: the preflight then refuses a mismatch with one line."""
    from deploy.preflight import X86, architecture_of  # preflight needs no image module

    wanted = architecture_of(instance_type) if instance_type else X86
    by_arch = recorded.get("architectures") or {}
    return (by_arch.get(wanted) if wanted else None) or recorded.get("uri")


def pick_cli(explicit: str | None = None, run: Callable[..., Any] = subprocess.run) -> str:
    """--cli, else DEPLOY_CONTAINER_CLI, else docker where its engine answers, else podman."""
    chosen = explicit or config.container_cli_from_env()
    if chosen:
        if chosen not in CLIS:
            raise UserError(f"unknown container CLI {chosen!r}", "use docker or podman")
        if not shutil.which(chosen):
            raise UserError(f"{chosen} is not on PATH", "install it or pick the other with --cli")
        return chosen
    docker, podman = shutil.which("docker"), shutil.which("podman")
    if docker:
        try:
            answered = run([docker, "info"], capture_output=True, timeout=30).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            answered = False
        if answered:
            return "docker"
    if podman:
        return "podman"
    if docker:
        raise UserError(
            "docker is installed but its engine does not answer (`docker info` failed) and "
            "podman is not installed",
            "start the Docker engine or install podman",
        )
    raise UserError("neither docker nor podman was found", "install one of them")


def decode_token(authorization: dict[str, Any]) -> tuple[str, str, str]:
    """ECR's authorizationToken is base64("AWS:password"); returns registry, user, password."""
    try:
        raw = base64.b64decode(authorization["authorizationToken"]).decode("utf-8")
        user, password = raw.split(":", 1)
    except (KeyError, ValueError) as exc:
        raise CommandFailed("ECR returned an authorization token that cannot be decoded") from exc
    registry = authorization["proxyEndpoint"].removeprefix("https://").removeprefix("http://")
    return registry.rstrip("/"), user, password


def find_repository(ecr: Any, name: str) -> dict[str, Any] | None:
    try:
        found: dict[str, Any] = ecr.describe_repositories(repositoryNames=[name])["repositories"][0]
    except ClientError as exc:
        if is_not_found(exc):
            return None
        raise
    return found


def lifecycle_policy() -> dict[str, Any]:
    """ECR lifecycle rules: untagged images expire, and only the newest images are kept."""
    return {
        "rules": [
            {
                "rulePriority": 1,
                "description": f"untagged images expire after {UNTAGGED_DAYS} days",
                "selection": {
                    "tagStatus": "untagged",
                    "countType": "sinceImagePushed",
                    "countUnit": "days",
                    "countNumber": UNTAGGED_DAYS,
                },
                "action": {"type": "expire"},
            },
            {
                "rulePriority": 2,
                "description": f"keep the newest {KEEP_IMAGES} images",
                "selection": {
                    "tagStatus": "any",
                    "countType": "imageCountMoreThan",
                    "countNumber": KEEP_IMAGES,
                },
                "action": {"type": "expire"},
            },
        ]
    }


def create_repository(
    ecr: Any, name: str, tags: dict[str, str], kms_key: str | None = None
) -> dict[str, Any]:
    """A new repository: scan on push, immutable tags (a pushed tag always names the image that
    was scanned), encrypted with `kms_key` (customer-managed) or else AES256, and the lifecycle
    policy. Should the policy fail, the repository is deleted again: nothing half-made stays."""
    encrypted = {"encryptionType": "KMS", "kmsKey": kms_key} if kms_key else None
    created: dict[str, Any] = ecr.create_repository(
        repositoryName=name,
        imageTagMutability="IMMUTABLE",
        imageScanningConfiguration={"scanOnPush": True},
        encryptionConfiguration=encrypted or {"encryptionType": "AES256"},
        tags=names.as_aws(tags),
    )["repository"]
    try:
        ecr.put_lifecycle_policy(
            repositoryName=name, lifecyclePolicyText=json.dumps(lifecycle_policy())
        )
    except BaseException as failure:
        errors.undo_then_raise(
            f"ECR repository {name}",
            "repository",
            lambda: ecr.delete_repository(repositoryName=name),
            failure,
        )
    return created


def tag_taken(ecr: Any, repository: dict[str, Any], tag: str) -> bool:
    """Whether `tag` already names an image in an immutable repository (a push would fail)."""
    if not str(repository.get("imageTagMutability", "MUTABLE")).startswith("IMMUTABLE"):
        return False
    try:
        ecr.describe_images(
            repositoryName=repository["repositoryName"], imageIds=[{"imageTag": tag}]
        )
    except ClientError as exc:
        if is_not_found(exc):
            return False
        raise
    return True


def target_list(tag: str, platforms: list[str]) -> list[tuple[str | None, str]]:
    """(platform, tag) per image: one platform keeps TAG as given; several get TAG-ARCH each,
    one single-platform image per tag (SageMaker takes no manifest list)."""
    if len(platforms) <= 1:
        return [(platforms[0] if platforms else None, tag)]
    return [(one, f"{tag}-{architecture(one)}") for one in platforms]


def target_tags(tag: str, platforms: list[str]) -> list[str]:
    return [target_tag for _, target_tag in target_list(tag, platforms)]


def pushed_digest(ecr: Any, repository: str, tag: str) -> str | None:
    """The digest ECR holds for the tag just pushed (None, with no harm done, if unreadable)."""
    try:
        found = ecr.describe_images(repositoryName=repository, imageIds=[{"imageTag": tag}])
    except ClientError:
        return None
    digest: str | None = found["imageDetails"][0].get("imageDigest")
    return digest


def plan(
    cli: str,
    repository: str,
    repository_uri: str,
    registry: str,
    user: str,
    tag: str,
    context: Path,
    dockerfile: Path | None,
    build_args: list[str],
    platform: str | None,
    build: bool,
) -> PushPlan:
    """The exact command lines: build, tag, login (password on stdin), push."""
    local = f"{repository}:{tag}"
    remote = f"{repository_uri}:{tag}"
    commands = []
    if build:
        argv = build_command(cli, local, context, dockerfile, platform, build_args)
        commands.append(Command(argv))
    commands.append(Command([cli, "tag", local, remote]))
    commands.append(Command([cli, "login", "--username", user, "--password-stdin", registry], True))
    commands.append(Command([cli, "push", *PUSH_FORMAT_FLAGS[cli], remote]))
    return PushPlan(cli, repository, repository_uri, registry, tag, local, remote, commands)


def build_command(
    cli: str,
    tag: str,
    context: Path,
    dockerfile: Path | None = None,
    platform: str | None = config.DEFAULT_PLATFORM,
    build_args: list[str] | tuple[str, ...] = (),
) -> list[str]:
    """The build that `push` and `make image` run: one platform, a manifest SageMaker accepts.

    docker goes through buildx (the default builder since Docker 23) so that its output is
    stated, not left to whichever image store the engine uses.
    """
    argv = [cli, "buildx", "build"] if cli == "docker" else [cli, "build"]
    argv += [*FORMAT_FLAGS[cli], "-t", tag]
    if dockerfile:
        argv += ["-f", str(dockerfile)]
    if platform:
        argv += ["--platform", platform]
    for pair in build_args:
        argv += ["--build-arg", pair]
    argv.append(str(context))
    return argv


def run_plan(
    push_plan: PushPlan,
    password: str,
    log: Callable[[str], None] | None = None,
    popen: Callable[..., Any] = subprocess.Popen,
) -> None:
    """Run each command, relaying its output to stderr (stdout stays for the image URI)."""
    say = log or (lambda text: print(text, file=sys.stderr, flush=True))
    for command in push_plan.commands:
        say(f"$ {command.shown()}")
        try:
            child = popen(
                command.argv,
                stdin=subprocess.PIPE if command.stdin_secret else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        except OSError as exc:
            raise CommandFailed(f"could not start {command.argv[0]}: {exc}") from exc
        if command.stdin_secret:
            child.stdin.write(password + "\n")
            child.stdin.close()
        tail: list[str] = []
        for line in child.stdout:
            clean = scrub(line.rstrip("\n"), password)
            tail = [*tail[-4:], clean]
            say(f"  {clean}")
        code = child.wait()
        if code != 0:
            what = " ".join(itertools.takewhile(lambda arg: not arg.startswith("-"), command.argv))
            raise CommandFailed(
                f"`{what}` exited with {code}: {tail[-1] if tail else 'no output'}",
                "read the output above",
            )


def scrub(text: str, secret: str) -> str:
    return text.replace(secret, "***") if secret else text


@dataclass
class PushResult:
    image_uri: str
    repository: str
    repository_created: bool
    plan: PushPlan
    dry_run: bool
    image_uris: list[str] = field(default_factory=list)  # one per platform pushed


def push(
    ctx: Context,
    *,
    repository: str | None = None,
    tag: str | None = None,
    context: Path = Path("."),
    dockerfile: Path | None = None,
    build_args: list[str] | None = None,
    platform: str | None = config.DEFAULT_PLATFORM,
    build: bool = True,
    cli: str | None = None,
    dry_run: bool = False,
    kms_key: str | None = None,
) -> PushResult:
    """`kms_key`: a repository this push creates is encrypted with it (an existing one keeps its
    encryption: ECR sets it only at creation)."""
    repository = repository or f"{ctx.name_prefix}-serve".lower()
    if not re.match(REPOSITORY, repository) or len(repository) > 256:
        raise UserError(f"{repository!r} is not a valid ECR repository name", "use lowercase")
    if not build and not tag:
        raise UserError("--no-build pushes an existing local image", "name its tag with --tag")
    tag = tag or names.stamp()
    if not re.match(r"^[\w][\w.-]{0,121}$", tag):
        raise UserError(f"--tag {tag!r} is not a valid image tag")
    platforms = split_platforms(platform)
    for pair in build_args or []:
        if "=" not in pair:
            raise UserError(f"--build-arg {pair!r} is not KEY=VALUE")
    if build:
        if not context.is_dir():
            raise UserError(f"the build context {context} is not a directory")
        file = dockerfile or context / "Dockerfile"
        if not file.is_file():
            raise UserError(f"no Dockerfile at {file}", "pass --dockerfile or --context")
    cli = pick_cli(cli)

    ecr = ctx.aws.client("ecr")
    tags = names.tags_for(ctx.name_prefix)
    if kms_key:
        kms_key = encryption.resolve(ctx.aws.client("kms"), kms_key, ctx.aws.region)
    repo = find_repository(ecr, repository)
    if repo and kms_key and (repo.get("encryptionConfiguration") or {}).get("kmsKey") != kms_key:
        ctx.log(f"ECR repository {repository} exists: it keeps its encryption (set at creation)")
    taken = [one for one in target_tags(tag, platforms) if repo and tag_taken(ecr, repo, one)]
    if taken:
        raise UserError(
            f"tag {taken[0]} already exists in ECR repository {repository}, whose tags are "
            "immutable",
            "push under a new --tag (without --tag, push uses a fresh timestamp)",
        )
    created = False
    if repo is None and dry_run:
        ctx.log(f"would create ECR repository {repository} (tagged {config.TAG_KEY})")
    elif repo is None:
        repo = create_repository(ecr, repository, tags, kms_key)
        created = True
        ctx.log(f"created ECR repository {repo['repositoryUri']}")
        ctx.state["image"] = {
            "repository": repository,
            "repository_arn": repo["repositoryArn"],
            "repository_created": True,
        }
        if kms_key:
            ctx.state["image"]["kms_key"] = kms_key
        ctx.save()
    authorization = ecr.get_authorization_token()["authorizationData"][0]
    registry, user, password = decode_token(authorization)
    repository_uri = repo["repositoryUri"] if repo else f"{registry}/{repository}"
    targets = target_list(tag, platforms)
    plans = [
        plan(
            cli,
            repository,
            repository_uri,
            registry,
            user,
            target_tag,
            context,
            dockerfile,
            build_args or [],
            target_platform,
            build,
        )
        for target_platform, target_tag in targets
    ]
    push_plan = plans[0]
    for later in plans[1:]:  # one login is enough for every push
        push_plan.commands += [c for c in later.commands if not c.stdin_secret]
    uris = [p.image_uri for p in plans]
    if dry_run:
        return PushResult(push_plan.image_uri, repository, False, push_plan, True, uris)

    assert repo is not None  # found or created above; only --dry-run goes on without one
    try:
        run_plan(push_plan, password, log=ctx.log)
    except CommandFailed as failed:
        if any(word.lower() in failed.message.lower() for word in IMMUTABLE_REFUSAL):
            raise UserError(
                f"ECR refused tag {tag}: it exists already in {repository}, whose tags are "
                "immutable",
                "push under a new --tag (without --tag, push uses a fresh timestamp)",
            ) from None
        raise
    # The state's `uri` is the first target's: its digest pins it, its packages make the SBOM.
    digest = pushed_digest(ecr, repository, push_plan.tag)
    written = sbom.for_push(
        ctx, sbom.Pushed(cli, push_plan.local_image, push_plan.image_uri, digest, targets[0][0])
    )
    previous = ctx.state.get("image") or {}
    same_repository = previous.get("repository") == repository
    was_ours = same_repository and previous.get("repository_created")
    # Each architecture's latest image in this repository: `up`/`update` pick by instance family.
    by_arch = dict(previous.get("architectures") or {}) if same_repository else {}
    for (target_platform, _), uri in zip(targets, uris, strict=True):
        if build and target_platform:
            by_arch[architecture(target_platform)] = uri
    ctx.state["image"] = {
        "uri": push_plan.image_uri,
        "repository": repository,
        "repository_arn": repo["repositoryArn"],
        "repository_created": bool(created or was_ours),
        "pushed_at": now_iso(),
        "sbom": written.name if written else None,  # beside the state file
    }
    if digest:
        ctx.state["image"]["digest"] = digest
    if build and targets[0][0]:
        # what the preflight checks instances against
        ctx.state["image"]["platform"] = targets[0][0]
    if by_arch:
        ctx.state["image"]["architectures"] = by_arch
    repository_key = (repo.get("encryptionConfiguration") or {}).get("kmsKey")
    if repository_key:
        ctx.state["image"]["kms_key"] = repository_key  # as ECR holds it, not as asked
    ctx.save()
    return PushResult(push_plan.image_uri, repository, created, push_plan, False, uris)
