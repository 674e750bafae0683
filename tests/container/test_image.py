"""The real image, built and run as SageMaker runs it (issue 4)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from container.engine import REPO, Engine, running
from tests.support.containers import SAMPLES, detect, hadolint_path, unavailable
from tests.support.server import free_port

SIGTERM_EXIT_SECONDS = 5.0
LABEL = "com.amazonaws.sagemaker.capabilities.accept-bind-to-port"
MULTI_MODEL_LABEL = "com.amazonaws.sagemaker.capabilities.multi-models"
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
    for label in (LABEL, MULTI_MODEL_LABEL):
        value = engine(
            "image", "inspect", "--format", f'{{{{index .Config.Labels "{label}"}}}}', image
        )
        assert value.strip() == "true", label
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


IMAGE_UID = 10001  # the Dockerfile's USER


def test_image_runs_as_its_non_root_user_on_a_read_only_root_and_writes_only_its_tmp_dir(
    engine: Engine, image: str, models: dict[str, Path], expected: dict, port_8080: int
):
    """As a locked-down account runs it: the image's own USER (no --user), the root file system
    and the model read-only, a tmpfs at /tmp and nowhere else writable."""
    mount = f"{models['mounted'].parent}:/opt/ml/model:ro"
    options = ("--read-only", "--read-only-tmpfs=false", "--tmpfs", "/tmp", "--volume", mount)
    with running(engine, image, port_8080, options=options) as container:
        status = engine("exec", container.name, "cat", "/proc/1/status")
        ids = {line.split(":")[0]: line.split()[1:] for line in status.splitlines()}
        assert ids["Uid"] == [str(IMAGE_UID)] * 4 and ids["Gid"] == [str(IMAGE_UID)] * 4, ids
        answers_match(container.url, expected["mounted"])
        # The server's private directory, mode 0700, empty after the requests: nothing else.
        listing = engine(
            "exec", container.name, "find", "/tmp", "-mindepth", "1", "-printf", "%p %m %U\n"
        )
        (entry,) = listing.splitlines()
        path, mode, owner = entry.split()
        assert path.startswith("/tmp/serve-") and (mode, owner) == ("700", str(IMAGE_UID))
        changed = {p for p in engine("diff", container.name).split() if p.startswith("/")}
        # The engine makes the volume's mount point (and its parents) in the container's layer.
        mount_point = {"/opt", "/opt/ml", "/opt/ml/model"}
        assert changed <= ENGINE_WRITES | mount_point, changed
        stops_promptly_with_code_0(container)
