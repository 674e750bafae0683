"""A runtime is declared once, in serve/runtimes: the image's build arguments derive from it, and
the Dockerfile's defaults (a bare `docker build .`) are the default runtime's."""

from __future__ import annotations

import re

from container.engine import REPO
from container.image import runtime_build_args
from serve.runtimes import DEFAULT_RUNTIME, RUNTIMES


def dockerfile_defaults() -> dict[str, str]:
    text = (REPO / "Dockerfile").read_text()
    return {
        name: value.strip('"')
        for name, value in re.findall(r"^ARG (RUNTIME\w*)=(.*)$", text, re.MULTILINE)
    }


def test_the_dockerfiles_defaults_are_the_default_runtimes_build_arguments():
    derived = dict(pair.split("=", 1) for pair in runtime_build_args(DEFAULT_RUNTIME))
    assert dockerfile_defaults() == derived


def test_every_runtimes_requirement_file_reaches_the_build_context():
    ignore = (REPO / ".dockerignore").read_text().splitlines()
    assert "!requirements-*.txt" in ignore
    for spec in RUNTIMES.values():
        assert re.fullmatch(r"requirements-[\w-]+\.txt", spec.requirements), spec.name
        assert (REPO / spec.requirements).is_file(), spec.requirements
