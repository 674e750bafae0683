"""After `push`: a CycloneDX SBOM (JSON, spec 1.6) of the Python packages in the pushed image.

The package list comes from the image itself: its /opt/venv interpreter (the Dockerfile's; the
serving code runs from it) is run once with the same container CLI, without network, and lists
its installed distributions through importlib.metadata (pip may be pruned from the image). The
SBOM is written beside the state file (`state.json` -> `state.sbom.cdx.json`: `.cdx.json` is
CycloneDX's recognised suffix) and names the image by digest. It describes the image that the
state records, so the next push replaces it. A failure to list the packages costs the SBOM only,
never the push: one warning line, the state records `sbom: null` and a stale file is removed.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cyclonedx.model.bom import Bom, BomMetaData
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.model.tool import ToolRepository
from cyclonedx.output.json import JsonV1Dot6
from packageurl import PackageURL

from deploy import __version__, config
from deploy.context import Context

VENV_PYTHON = "/opt/venv/bin/python"  # the Dockerfile's runtime environment
LIST_PACKAGES = (
    "import importlib.metadata as m, json; "
    "print(json.dumps(sorted({(d.metadata['Name'], d.version) for d in m.distributions() "
    "if d.metadata['Name']})))"
)
RUN_TIMEOUT_S = 300
SUFFIX = ".sbom.cdx.json"


@dataclass(frozen=True)
class Pushed:
    cli: str  # docker or podman: the one that built and pushed
    local_image: str  # REPO:TAG as built locally
    image_uri: str  # as pushed (by tag)
    digest: str | None  # as ECR holds it
    platform: str | None


class ListingFailed(Exception):
    """The image's packages could not be listed (the reason, in words)."""


def path_for(state_path: Path) -> Path:
    """`.deploy/state.json` -> `.deploy/state.sbom.cdx.json`."""
    return state_path.with_name(state_path.stem + SUFFIX)


def for_push(ctx: Context, pushed: Pushed, run: Callable[..., Any] = subprocess.run) -> Path | None:
    """Write the SBOM of the pushed image beside the state; None (and one warning) on failure."""
    target = path_for(ctx.store.path)
    try:
        packages = list_packages(pushed, run)
    except ListingFailed as failed:
        target.unlink(missing_ok=True)  # it described an earlier image
        ctx.log(f"warning: no SBOM written: the image's packages could not be listed ({failed})")
        return None
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render(pushed, packages))
    ctx.log(f"wrote {target}: CycloneDX SBOM of {len(packages)} Python packages")
    return target


def list_packages(
    pushed: Pushed, run: Callable[..., Any] = subprocess.run
) -> list[tuple[str, str]]:
    """(name, version) of every distribution in the image's /opt/venv."""
    argv = [pushed.cli, "run", "--rm", "--network", "none", "--entrypoint", VENV_PYTHON]
    if pushed.platform:
        argv += ["--platform", pushed.platform]
    argv += [pushed.local_image, "-c", LIST_PACKAGES]
    try:
        done = run(argv, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ListingFailed(f"{pushed.cli} run: {exc}") from exc
    if done.returncode != 0:
        last = (done.stderr or done.stdout or "no output").strip().splitlines()
        raise ListingFailed(f"{pushed.cli} run exited with {done.returncode}: {last[-1][:200]}")
    lines = (done.stdout or "").strip().splitlines()
    try:
        listed = json.loads(lines[-1])
    except (IndexError, ValueError) as exc:
        raise ListingFailed("its output is not a package list") from exc
    if not isinstance(listed, list) or not all(
        isinstance(item, list) and len(item) == 2 and all(isinstance(v, str) for v in item)
        for item in listed
    ):
        raise ListingFailed("its output is not a package list")
    if not listed:
        raise ListingFailed(f"no Python packages in {VENV_PYTHON}'s environment")
    return [(name, version) for name, version in listed]


def render(pushed: Pushed, packages: list[tuple[str, str]]) -> str:
    """The SBOM as CycloneDX 1.6 JSON: the image (by digest) depends on each package (a purl)."""
    repository, _, tag = pushed.image_uri.rpartition(":")
    qualifiers = {"repository_url": repository, "tag": tag}
    image = Component(
        type=ComponentType.CONTAINER,
        name=repository.rpartition("/")[2],
        version=pushed.digest or tag,
        bom_ref=pushed.image_uri,
        purl=PackageURL(
            "oci", name=repository.rpartition("/")[2], version=pushed.digest, qualifiers=qualifiers
        ),
    )
    components = [
        Component(
            type=ComponentType.LIBRARY,
            name=name,
            version=version,
            purl=(purl := PackageURL("pypi", name=normalised(name), version=version)),
            bom_ref=purl.to_string(),
        )
        for name, version in sorted(set(packages), key=lambda p: (normalised(p[0]), p[1]))
    ]
    tool = Component(type=ComponentType.APPLICATION, name=config.TOOL, version=__version__)
    bom = Bom(
        components=components,
        metadata=BomMetaData(component=image, tools=ToolRepository(components=[tool])),
    )
    bom.register_dependency(image, components)
    text: str = JsonV1Dot6(bom).output_as_string(indent=2)
    return text + "\n"


def normalised(name: str) -> str:
    """A distribution's name as PEP 503 and the pypi purl type write it."""
    return re.sub(r"[-_.]+", "-", name).lower()
