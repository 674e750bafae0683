"""The image `push` sends is stored as a Docker v2 schema 2 manifest, the only kind SageMaker's
CreateModel accepts, proven against a real registry.

Debian's docker-registry (the Distribution registry) serves the registry HTTP API on 127.0.0.1 with
htpasswd authentication. The real image (conftest's `image`, built with `push`'s build command)
goes there through the tag, `login --password-stdin` and push command lines that `deploy push`
runs, and the stored manifest is read back over `/v2/`.
"""

from __future__ import annotations

import base64
import json
import secrets
import shutil
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import bcrypt
import pytest

from container.engine import REPO, Engine
from deploy import images
from tests.support.containers import unavailable
from tests.support.server import free_port

SYSTEM_DIRS = "/usr/sbin:/usr/bin:/sbin:/bin"
DOCKER_V2S2 = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
# Every manifest type a registry can hold: the registry answers with the one it stored.
ANY_MANIFEST = ", ".join(
    (
        DOCKER_V2S2,
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
    )
)
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class Registry:
    host: str  # 127.0.0.1:PORT
    user: str
    password: str

    def get(self, path: str, accept: str = "*/*", auth: bool = True) -> tuple[str, bytes]:
        headers = {"Accept": accept}
        if auth:
            token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        request = urllib.request.Request(f"http://{self.host}/v2/{path}", headers=headers)
        with DIRECT.open(request, timeout=30) as answer:
            return answer.headers.get("Content-Type", ""), answer.read()


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> Iterator[Registry]:
    binary = shutil.which("docker-registry", path=SYSTEM_DIRS)
    if binary is None:
        unavailable("no docker-registry (Debian's package docker-registry)")
    root = tmp_path_factory.mktemp("registry")
    user, password = "AWS", secrets.token_urlsafe(18)  # ECR's user name; a fresh password
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=6))
    (root / "htpasswd").write_bytes(f"{user}:".encode() + hashed + b"\n")
    port = free_port()
    (root / "config.yml").write_text(
        json.dumps(  # YAML is a superset of JSON
            {
                "version": 0.1,
                "log": {"level": "warn"},
                "storage": {"filesystem": {"rootdirectory": str(root / "data")}},
                "http": {"addr": f"127.0.0.1:{port}", "secret": secrets.token_hex(16)},
                "auth": {"htpasswd": {"realm": "test", "path": str(root / "htpasswd")}},
            }
        )
    )
    log = (root / "registry.log").open("wb")
    process = subprocess.Popen(
        [binary, "serve", str(root / "config.yml")], stdout=log, stderr=subprocess.STDOUT
    )
    served = Registry(f"127.0.0.1:{port}", user, password)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                served.get("", auth=False)
            except urllib.error.HTTPError as answer:
                if answer.code == 401:  # up, and asking for credentials
                    break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"docker-registry did not start: {(root / 'registry.log').read_text()}")
            time.sleep(0.1)
        yield served
    finally:
        process.terminate()
        process.wait(10)
        log.close()


@pytest.fixture
def trusting_registry(registry: Registry, tmp_path: Path, monkeypatch) -> Registry:
    """Let podman talk plain HTTP to this one registry (docker does so for 127.0.0.0/8 already),
    and keep the credentials of `login` out of the machine's own auth files."""
    conf = tmp_path / "registries.conf"
    conf.write_text(f'[[registry]]\nlocation = "{registry.host}"\ninsecure = true\n')
    monkeypatch.setenv("CONTAINERS_REGISTRIES_CONF", str(conf))
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(tmp_path / "auth.json"))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))
    return registry


def push_and_read_back(engine: Engine, image: str, registry: Registry) -> tuple[dict, dict]:
    """`image` pushed with `deploy push --no-build`'s command lines; the stored manifest (checked
    to be a single-platform Docker v2s2 one) and its image config, read back over /v2/."""
    repository, tag = "yolov7-serve", f"t{uuid.uuid4().hex[:10]}"
    local = f"{repository}:{tag}"
    engine("tag", image, local)  # `push --no-build --tag` pushes this local name
    plan = images.plan(
        engine.name,
        repository,
        f"{registry.host}/{repository}",
        registry.host,
        registry.user,
        tag,
        REPO,
        None,
        [],
        None,
        build=False,
    )
    shown: list[str] = []
    try:
        images.run_plan(plan, registry.password, log=shown.append)
    finally:
        subprocess.run([*engine.prefix, "rmi", local, plan.image_uri], capture_output=True)
    assert [c.argv[1] for c in plan.commands] == ["tag", "login", "push"]
    assert registry.password not in "\n".join(shown)

    with pytest.raises(urllib.error.HTTPError) as refused:
        registry.get(f"{repository}/manifests/{tag}", ANY_MANIFEST, auth=False)
    assert refused.value.code == 401  # the push really went through `login`

    media_type, body = registry.get(f"{repository}/manifests/{tag}", ANY_MANIFEST)
    manifest = json.loads(body)
    assert media_type == DOCKER_V2S2, f"stored as {media_type}: SageMaker refuses it"
    assert manifest["mediaType"] == DOCKER_V2S2 and manifest["schemaVersion"] == 2
    assert manifest["config"]["mediaType"] == DOCKER_CONFIG
    assert {layer["mediaType"] for layer in manifest["layers"]} == {DOCKER_LAYER}
    _, config_blob = registry.get(f"{repository}/blobs/{manifest['config']['digest']}")
    config = json.loads(config_blob)
    assert config["config"]["Labels"][
        "com.amazonaws.sagemaker.capabilities.accept-bind-to-port"
    ] == ("true")
    return manifest, config


def test_push_stores_a_single_platform_docker_v2s2_manifest(
    engine: Engine, image: str, trusting_registry: Registry
):
    manifest, config = push_and_read_back(engine, image, trusting_registry)
    assert config["os"] == "linux" and config["architecture"] in ("amd64", "arm64")
    pushed_bytes = sum(layer["size"] for layer in manifest["layers"])
    assert pushed_bytes < 1e9, f"{pushed_bytes / 1e6:.0f} MB pushed: not the slim image"
