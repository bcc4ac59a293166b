"""deploy/k8s played by podman (``podman kube play``) on the image the Dockerfile builds: the
claim becomes a volume, the training Job's pod template fills it, then the Deployment with its
ConfigMap serves: its probe paths answer, it serves /generate, it runs as uid 10001 on a
read-only root, and it stops within its grace period.

Debian's podman 4.3 plays Pods, Deployments, PersistentVolumeClaims and ConfigMaps, not Jobs:
the Job's pod template is played as a Pod. The copies played differ from the files users apply
only where podman needs it: the GPU requests set aside, as docker-compose.cpu.yml does for
compose; one replica, on a free host port, since podman publishes each pod's container port on
the host's (the test reaches the pod at its own address). Podman does not run probes without
systemd (its healthcheck from an httpGet probe calls curl, which the image lacks), nor the
preStop hook, nor does it take the grace period from the pod: the test asks the probe paths
itself and stops the pod as the kubelet does. Skipped without podman or the base image, unless
``UNCONV_REQUIRE_CONTAINER=1``."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml

from tests.podman import ARTEFACTS, ROOT, build_image, podman, wait_ready
from tests.servers import free_port

pytestmark = [pytest.mark.container, pytest.mark.timeout(2400)]

K8S = ROOT / "deploy" / "k8s"
GPU = "nvidia.com/gpu"


def _manifest(name: str) -> dict:
    return yaml.safe_load((K8S / name).read_text())


def _on_the_cpu(pod: dict) -> dict:
    """The pod spec without its GPU requests (docker-compose.cpu.yml's ``deploy: !reset``)."""
    for container in pod["containers"]:
        for amounts in container.get("resources", {}).values():
            amounts.pop(GPU, None)
    return pod


def _train_pod() -> dict:
    """The training Job's pod template as a Pod of the Job's name."""
    job = _manifest("training-job.yaml")
    spec = _on_the_cpu(job["spec"]["template"]["spec"])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": job["metadata"], "spec": spec}


def _deployment() -> dict:
    """One replica of the Deployment, on the CPU, its port published on a free one."""
    deployment = _manifest("deployment.yaml")
    deployment["spec"]["replicas"] = 1
    pod = _on_the_cpu(deployment["spec"]["template"]["spec"])
    for port in pod["containers"][0]["ports"]:
        port["hostPort"] = free_port()
    return deployment


def _play(document: dict, directory: Path, *options: str) -> None:
    path = directory / f"{document['metadata']['name']}.yaml"
    path.write_text(yaml.safe_dump(document))
    podman("kube", "play", *options, str(path), timeout=300)


def _remove(names: dict[str, str]) -> None:
    for pod in (names["train"], names["api"]):
        podman("pod", "rm", "--force", pod, check=False)
    podman("volume", "rm", "--force", names["claim"], check=False)


def _address(pod: str) -> str:
    """The pod's address on podman's bridge network (kube play publishes no port)."""
    infra = podman("pod", "inspect", "--format", "{{.InfraContainerID}}", pod).stdout.strip()
    networks = json.loads(podman("inspect", "--format", "{{json .NetworkSettings.Networks}}",
                                 infra).stdout)  # fmt: skip
    (network,) = networks.values()
    return network["IPAddress"]


@pytest.fixture(scope="module")
def played(tmp_path_factory):
    """The claim, the training pod run to its end, then the Deployment ready; yields the
    api container's name, its URL and the pod's name."""
    build_image()
    directory = tmp_path_factory.mktemp("kube")
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    claim = _manifest("checkpoints-pvc.yaml")["metadata"]["name"]
    train, deployment = _train_pod(), _deployment()
    names = {
        "claim": claim,
        "train": train["metadata"]["name"],
        "api": f"{deployment['metadata']['name']}-pod-0",
    }
    _remove(names)  # a previous run's leftovers
    try:
        podman("kube", "play", str(K8S / "checkpoints-pvc.yaml"))
        start = time.monotonic()
        _play(train, directory)
        trainer = f"{names['train']}-{train['spec']['containers'][0]['name']}"
        exit_code = podman("wait", trainer, timeout=1800).stdout.strip()
        logs = podman("logs", trainer, check=False)
        (ARTEFACTS / "kube-train.log").write_text(logs.stdout + logs.stderr)
        assert exit_code == "0", logs.stderr[-3000:]
        podman("pod", "rm", "--force", names["train"])
        _play(deployment, directory, "--configmap", str(K8S / "configmap.yaml"))
        api = f"{names['api']}-{deployment['spec']['template']['spec']['containers'][0]['name']}"
        url = f"http://{_address(names['api'])}:8000"
        wait_ready(url, 300, lambda: podman("logs", api, check=False).stderr)
        (ARTEFACTS / "kube-figures.json").write_text(
            json.dumps({"train_to_ready_s": round(time.monotonic() - start, 1)}) + "\n"
        )
        yield api, url, names["api"]
    finally:
        _remove(names)


def test_the_probe_paths_answer(played):
    _, url, _ = played
    container = _manifest("deployment.yaml")["spec"]["template"]["spec"]["containers"][0]
    probes = [container[p]["httpGet"] for p in ("startupProbe", "livenessProbe", "readinessProbe")]
    for probe in probes:
        assert probe["port"] == container["ports"][0]["name"]  # the 8000 of the URL
        assert httpx.get(f"{url}{probe['path']}", timeout=10).status_code == 200, probe


def test_it_serves_generate_from_the_checkpoints_the_training_pod_wrote(played):
    _, url, _ = played
    models = {m["name"]: m for m in httpx.get(f"{url}/models", timeout=30).json()["models"]}
    assert all(models[name]["available"] for name in ("ae", "vae", "cnn")), models
    response = httpx.post(f"{url}/generate", json={"n": 4, "label": 7, "format": "npy"}, timeout=60)
    assert response.status_code == 200, response.text
    images = np.load(io.BytesIO(response.content))
    assert images.shape == (4, 1, 28, 28) and 0 <= images.min() <= images.max() <= 1


def test_it_runs_as_uid_10001_on_a_read_only_root(played):
    api, _, _ = played
    assert podman("exec", api, "id", "-u").stdout.strip() == "10001"
    assert json.loads(podman("inspect", api).stdout)[0]["HostConfig"]["ReadonlyRootfs"] is True
    denied = podman("exec", api, "touch", "/app/x", check=False)
    assert denied.returncode != 0 and "Read-only file system" in denied.stderr
    assert podman("exec", api, "touch", "/tmp/x").returncode == 0  # the emptyDir


def test_it_stops_within_its_grace_period(played):
    """Last: the pod stopped as the kubelet stops it, SIGTERM then SIGKILL once the grace
    period is over; the service drains and exits 0 within what the preStop hook leaves."""
    api, _, pod = played
    spec = _manifest("deployment.yaml")["spec"]["template"]["spec"]
    grace = spec["terminationGracePeriodSeconds"]
    pre_stop = spec["containers"][0]["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    start = time.monotonic()
    podman("pod", "stop", "--time", str(grace), pod, timeout=grace + 60)
    stopped_s = time.monotonic() - start
    state = json.loads(podman("inspect", api).stdout)[0]["State"]
    assert state["ExitCode"] == 0, state  # not killed: 137
    left = grace - float(pre_stop[1])
    assert stopped_s < left, f"took {stopped_s:.1f} s of the {left:g} s the preStop hook leaves"
