"""Nothing a file or a client sends runs as code; the API key guards the model routes only, and
in constant time; the containers run unprivileged on a read-only root filesystem."""

import hashlib
import os
import pickle
import re
import secrets
from pathlib import Path

import pytest
import torch
import yaml

from devkit.fake_weights import own_hash_published
from service.models import TORCHVISION_NETWORKS, torchvision_nets
from service.settings import Settings
from tests.helpers import png_bytes

ROOT = Path(__file__).resolve().parents[3]
PUBLISHED = torchvision_nets._published  # before conftest's stand-in replaces it


class _RunsCode:
    """Unpickling this calls ``os.system``, which leaves a marker file behind."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _plant(path: Path, marker: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # torch.save pickles it, as a tampered weights file would be
    torch.save({"features.0.weight": _RunsCode(marker)}, path)


@pytest.fixture
def planted_home(tmp_path, monkeypatch, torch_home):
    home = tmp_path / "torch_home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.setattr(torchvision_nets, "_published", PUBLISHED)
    marker = tmp_path / "code-ran"
    _plant(TORCHVISION_NETWORKS["alexnet"].weights_path, marker)
    return marker


async def _alexnet(make_client):
    client, _ = await make_client(networks=["alexnet"])
    models = {m["name"]: m for m in (await client.get("/models")).json()["models"]}
    return client, models["alexnet"]


async def test_weights_that_are_not_the_published_file_are_refused(planted_home, make_client):
    client, alexnet = await _alexnet(make_client)
    assert not alexnet["available"] and "is not the published file" in alexnet["reason"]
    assert not planted_home.exists()
    assert (await client.post("/generate", json={"n": 1})).status_code == 200  # the rest serve


async def test_weights_with_a_matching_hash_are_still_never_unpickled(
    planted_home, make_client, monkeypatch
):
    weights = TORCHVISION_NETWORKS["alexnet"].weights_path
    monkeypatch.setattr(torchvision_nets, "_published", own_hash_published(weights))
    _, alexnet = await _alexnet(make_client)
    assert not alexnet["available"] and "not a plain state dict" in alexnet["reason"]
    assert not planted_home.exists()


def test_the_published_prefix_is_the_one_in_torchvisions_file_name():
    for spec in TORCHVISION_NETWORKS.values():
        name = Path(spec.url).name  # e.g. alexnet-owt-7be5be79.pth
        assert PUBLISHED(spec.weights_path) == name.split("-")[-1][:-4]


def test_a_file_of_the_published_hash_is_read(tmp_path):
    state = {"weight": torch.arange(6.0).reshape(2, 3)}
    staging = tmp_path / "staging.pth"
    torch.save(state, staging)
    prefix = hashlib.sha256(staging.read_bytes()).hexdigest()[:8]
    path = staging.rename(tmp_path / f"net-{prefix}.pth")
    loaded = torchvision_nets.read_published_weights(path)
    assert torch.equal(loaded["weight"], state["weight"])


async def test_a_pickle_in_place_of_a_checkpoint_is_refused(
    tmp_path, checkpoint_dir, make_client, torch_home
):
    marker = tmp_path / "code-ran"
    directory = tmp_path / "checkpoints"
    directory.mkdir()
    (directory / "evil.json").write_text((checkpoint_dir / "ae.json").read_text())
    (directory / "evil.safetensors").write_bytes(pickle.dumps(_RunsCode(marker)))
    client, _ = await make_client(checkpoint_dir=directory)
    (evil,) = (await client.get("/models")).json()["models"]
    assert not evil["available"] and evil["reason"]
    assert not marker.exists()


MODEL_ROUTES = [
    ("POST", "/visualise"),
    ("POST", "/attribute"),
    ("POST", "/reconstruct"),
    ("POST", "/generate"),
    ("GET", "/models"),
    ("GET", "/atlas"),
    ("GET", "/v2/models/{name}"),
    ("GET", "/v2/models/{name}/versions/{version}"),
    ("GET", "/v2/models/{name}/ready"),
    ("GET", "/v2/models/{name}/versions/{version}/ready"),
    ("POST", "/v2/models/{name}/infer"),
    ("POST", "/v2/models/{name}/versions/{version}/infer"),
    ("POST", "/v2/repository/index"),
    ("POST", "/v2/repository/models/{name}/load"),
    ("POST", "/v2/repository/models/{name}/unload"),
]
OPEN_ROUTES = ["/healthz", "/readyz", "/v2/health/live", "/v2/health/ready", "/metrics"]
OPEN_ROUTES += ["/openapi.json", "/docs", "/v2"]


def _concrete(path: str) -> str:
    """The route as the ae's (the document names each model's infer route)."""
    path = path.replace("{name}", "ae").replace("{version}", "1")
    return re.sub(r"^/v2/models/[^/]+", "/v2/models/ae", path)


async def test_the_key_guards_exactly_the_model_routes(make_client):
    client, _ = await make_client(api_key="s3cret", model_control="explicit")
    keyed = {(method, _concrete(path)) for method, path in MODEL_ROUTES}
    for method, path in keyed:
        for headers in ({}, {"X-API-Key": "wrong"}, {"X-API-Key": ""}, {"X-API-Key": "s3cre"}):
            r = await client.request(method, path, headers=headers)
            code = r.json()["code" if path.startswith("/v2/") else "error"]  # the v2 form
            assert r.status_code == 401 and code == "unauthorized", (path, headers)
            assert r.headers["www-authenticate"] == "ApiKey"
    # every route of the document, as the ae's: only those above need the key
    documented = (await client.get("/openapi.json")).json()["paths"]
    operations = {(m.upper(), _concrete(p)) for p, ops in documented.items() for m in ops}
    assert keyed <= operations, keyed - operations
    for method, path in operations - keyed:
        assert (await client.request(method, path)).status_code != 401, (method, path)
    for path in OPEN_ROUTES:
        assert (await client.get(path)).status_code == 200, path
    r = await client.post("/generate", json={"n": 1}, headers={"X-API-Key": "s3cret"})
    assert r.status_code == 200


def test_the_key_setting_names_every_route_that_needs_it():
    """UNCONV_API_KEY's description (and so docs/settings.md's table, tests/test_readme.py)."""
    described = Settings.model_fields["api_key"].description
    for method, path in MODEL_ROUTES:
        if "/versions/" not in path:  # said once for all: "each also under /versions/{version}"
            assert f"{method} {path}" in described, (method, path)
    assert "/versions/{version}" in described
    for path in OPEN_ROUTES:
        assert f"`{path}`" in described or path.startswith("/v2/health/"), path


async def test_the_key_is_compared_in_constant_time(make_client, monkeypatch):
    """Whatever the key sent, the comparison sees two strings of one fixed length."""
    client, _ = await make_client(api_key="s3cret")
    lengths = []
    compare = secrets.compare_digest

    def recording(a, b):
        lengths.append((len(a), len(b)))
        return compare(a, b)

    monkeypatch.setattr(secrets, "compare_digest", recording)
    for key in (None, "", "s", "s3cret", "x" * 10_000):
        headers = {} if key is None else {"X-API-Key": key}
        await client.get("/models", headers=headers)
    assert len(lengths) == 5 and set(lengths) == {(32, 32)}


async def test_uploads_never_touch_the_disk_under_the_clients_name(make_client, tmp_path):
    client, _ = await make_client()
    target = tmp_path / "chosen-by-the-client.png"
    files = {"file": (str(target), png_bytes(), "image/png")}
    assert (await client.post("/reconstruct", files=files)).status_code == 200
    assert not target.exists() and list(tmp_path.iterdir()) == []


def _compose(name):
    return yaml.safe_load((ROOT / name).read_text())


def test_compose_runs_unprivileged_on_a_read_only_root():
    for name, service in _compose("docker-compose.yml")["services"].items():
        assert service["read_only"] is True, name
        assert service["user"].split(":")[0] != "0" and service["user"] != "root"
        assert service["cap_drop"] == ["ALL"] and "/tmp" in service["tmpfs"]
        assert "no-new-privileges:true" in service["security_opt"]


def test_kubernetes_pods_run_unprivileged_on_a_read_only_root():
    for file in ("deployment.yaml", "training-job.yaml"):
        document = yaml.safe_load((ROOT / "deploy" / "k8s" / file).read_text())
        pod = document["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"]
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] and not context["allowPrivilegeEscalation"]
            assert context["capabilities"]["drop"] == ["ALL"]
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            (tmp,) = (v for v in pod["volumes"] if v["name"] == mounts["/tmp"])
            assert "emptyDir" in tmp
