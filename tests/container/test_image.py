"""The real image, built and run as SageMaker runs it (issue 4)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from container.engine import REPO, Engine, running
from tests.support.containers import SAMPLES, detect, hadolint_path, unavailable
from tests.support.server import free_port

SIGTERM_EXIT_SECONDS = 5.0
LABEL = "com.amazonaws.sagemaker.capabilities.accept-bind-to-port"
# What the engine itself writes into a container: name resolution files, its marker in /run.
ENGINE_WRITES = {
    "/etc",
    "/etc/hosts",
    "/etc/hostname",
    "/etc/resolv.conf",
    "/run",
    "/run/.containerenv",
}


def answers_match(url: str, expected: dict[str, dict]) -> None:
    for sample in SAMPLES:
        got = detect(url, sample)
        want = expected[sample.name]
        assert got["model"] == want["model"], sample.name
        assert got["detections"] == want["detections"], sample.name
    assert expected["shapes-00.png"]["detections"], "a sample with nothing found proves nothing"


def stops_promptly_with_code_0(container) -> None:
    code, seconds = container.stop_with_sigterm()
    assert code == 0, container.logs()
    assert seconds < SIGTERM_EXIT_SECONDS, container.logs()
    assert '"signal": "SIGTERM"' in container.logs()  # our handler ran, not the engine's SIGKILL


def test_hadolint_passes_on_the_dockerfile():
    hadolint = hadolint_path()
    if hadolint is None:
        unavailable("hadolint is not installed (pip install -r requirements-test.txt)")
    done = subprocess.run(
        [hadolint, str(REPO / "Dockerfile")], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_image_holds_only_the_server_and_is_labelled_for_sagemaker(engine: Engine, image: str):
    labels = engine(
        "image", "inspect", "--format", f'{{{{index .Config.Labels "{LABEL}"}}}}', image
    )
    assert labels.strip() == "true"
    probe = (
        "import importlib.util as u; "
        "print(*[m for m in ('torch', 'boto3', 'pip', 'setuptools', 'cv2', 'simplejpeg',"
        " 'onnxruntime')"
        " if u.find_spec(m)])"
    )
    found = engine("run", "--rm", *engine.limits, "--entrypoint", "python", image, "-c", probe)
    assert found.split() == ["cv2", "simplejpeg", "onnxruntime"]


def test_baked_model_serves_like_the_local_server_writes_nothing_and_stops_on_sigterm(
    engine: Engine, image: str, expected: dict, port_8080: int
):
    with running(engine, image, port_8080) as container:
        answers_match(container.url, expected["baked"])
        changed = {
            line.split(maxsplit=1)[1] for line in engine("diff", container.name).splitlines()
        }
        assert {p for p in changed if not p.startswith("/tmp")} <= ENGINE_WRITES, changed
        stops_promptly_with_code_0(container)


def test_model_mounted_read_only_wins_over_the_baked_one_even_for_a_non_root_user(
    engine: Engine, image: str, models: dict[str, Path], expected: dict, port_8080: int
):
    mount = f"{models['mounted'].parent}:/opt/ml/model:ro"
    options = ("--volume", mount, "--user", "65534:65534", "--read-only")
    with running(engine, image, port_8080, options=options) as container:
        answers_match(container.url, expected["mounted"])
        baked = expected["baked"]["bus.jpg"]["detections"]
        assert detect(container.url, SAMPLES[0])["detections"] != baked
        stops_promptly_with_code_0(container)


def test_bare_image_listens_on_sagemaker_bind_to_port(engine: Engine, image: str, expected: dict):
    port = free_port()
    env = {"SAGEMAKER_BIND_TO_PORT": str(port)}
    with running(engine, image, port, env=env, command=()) as container:
        answers_match(container.url, expected["baked"])
        stops_promptly_with_code_0(container)
