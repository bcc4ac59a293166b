"""Deployment files: compose against the Compose specification, Kubernetes manifests and the
Dockerfile against the service's real settings, port and health routes."""

import asyncio
import json
import re
from importlib import resources
from pathlib import Path

import httpx
import jsonschema
import pytest
import yaml

from service.api import app
from service.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {f"UNCONV_{name.upper()}" for name in Settings.model_fields}
PORT = Settings.model_fields["port"].default
HEALTH = set(app.openapi()["paths"]) | {"/v2/health/live", "/v2/health/ready"}


class _ComposeLoader(yaml.SafeLoader):
    """YAML with Compose's ``!reset`` / ``!override`` merge tags."""


_ComposeLoader.add_constructor("!reset", lambda loader, node: None)
_ComposeLoader.add_constructor("!override", lambda loader, node: loader.construct_mapping(node))


def _compose(name: str) -> dict:
    return yaml.load((ROOT / name).read_text(), Loader=_ComposeLoader)


@pytest.fixture(scope="module")
def compose_schema():
    vendor = resources.files("check_jsonschema.builtin_schemas.vendor")
    return json.loads((vendor / "compose-spec.json").read_text())


@pytest.mark.parametrize("name", ["docker-compose.yml", "docker-compose.cpu.yml"])
def test_compose_files_follow_the_compose_specification(compose_schema, name):
    jsonschema.validate(_compose(name), compose_schema)


def test_compose_trains_first_then_serves_on_the_gpu():
    services = _compose("docker-compose.yml")["services"]
    train, api = services["train"], services["api"]
    assert train["command"][:4] == ["python", "-m", "training", "defaults"]
    assert train["command"][train["command"].index("--out") + 1] == "/checkpoints"
    assert api["depends_on"]["train"]["condition"] == "service_completed_successfully"
    for service in (train, api):
        devices = service["deploy"]["resources"]["reservations"]["devices"]
        assert devices[0]["capabilities"] == ["gpu"]
    assert api["ports"][0].endswith(f":{PORT}")
    assert "/readyz" in " ".join(api["healthcheck"]["test"])
    assert set(api["environment"]) <= SETTINGS
    assert api["volumes"] == ["checkpoints:/checkpoints:ro"]


def _documents() -> list[dict]:
    paths = sorted((ROOT / "deploy" / "k8s").glob("*.yaml"))
    return [document for path in paths for document in yaml.safe_load_all(path.read_text())]


def _manifests() -> dict[str, dict]:
    """The first manifest of each kind (the Service that clients call: the headless one for
    Prometheus comes second)."""
    documents = {}
    for document in _documents():
        documents.setdefault(document["kind"], document)
    return documents


def test_kubernetes_manifests_match_the_service():
    manifests = _manifests()
    listed = set(manifests["Kustomization"]["resources"])
    assert listed == {p.name for p in (ROOT / "deploy" / "k8s").glob("*.yaml")} - {
        "kustomization.yaml"
    }
    config = manifests["ConfigMap"]["data"]
    assert set(config) <= SETTINGS and int(config["UNCONV_PORT"]) == PORT
    Settings(**{k.removeprefix("UNCONV_").lower(): v for k, v in config.items()})  # valid values

    pod = manifests["Deployment"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["ports"] == [{"name": "http", "containerPort": PORT}]
    for probe, path in (
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
        ("startupProbe", "/healthz"),
    ):
        assert container[probe]["httpGet"] == {"path": path, "port": "http"} and path in HEALTH
    assert {e["name"] for e in container["env"]} <= SETTINGS
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert pod["terminationGracePeriodSeconds"] > float(config["UNCONV_REQUEST_TIMEOUT_S"])
    mount = container["volumeMounts"][0]
    assert mount["mountPath"] == config["UNCONV_CHECKPOINT_DIR"] and mount["readOnly"]

    selector = manifests["Deployment"]["spec"]["selector"]["matchLabels"]
    assert manifests["Service"]["spec"]["selector"] == selector
    assert manifests["Service"]["spec"]["ports"][0]["targetPort"] == "http"
    target = manifests["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == (
        "Deployment",
        manifests["Deployment"]["metadata"]["name"],
    )

    job = manifests["Job"]["spec"]["template"]["spec"]["containers"][0]
    assert job["command"][:4] == ["python", "-m", "training", "defaults"]
    out = job["command"][job["command"].index("--out") + 1]
    assert out == job["volumeMounts"][0]["mountPath"] == config["UNCONV_CHECKPOINT_DIR"]
    claims = {
        v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "emptyDir" not in v
    }
    assert claims == {manifests["PersistentVolumeClaim"]["metadata"]["name"]}


def test_prometheus_finds_every_pod_through_the_headless_service():
    """deploy/prometheus/prometheus.yml resolves the pods' addresses by DNS (Debian's
    Prometheus has no Kubernetes discovery): a headless Service over the Deployment's pods,
    the unready ones included, on the port the pods serve /metrics on."""
    services = {d["metadata"]["name"]: d for d in _documents() if d["kind"] == "Service"}
    scrape = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    (job,) = scrape["scrape_configs"]
    (discovery,) = job["dns_sd_configs"]
    (name,) = discovery["names"]
    headless = services[name]["spec"]
    assert headless["clusterIP"] == "None" and headless["publishNotReadyAddresses"] is True
    deployment = _manifests()["Deployment"]
    assert headless["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert (discovery["type"], discovery["port"]) == ("A", PORT)
    assert job["metrics_path"] == "/metrics" and "/metrics" in HEALTH
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/path"] == job["metrics_path"]
    assert int(annotations["prometheus.io/port"]) == discovery["port"]


def test_dockerfile_runs_the_service_unprivileged_with_a_healthcheck():
    text = (ROOT / "Dockerfile").read_text()
    assert f"EXPOSE {PORT}" in text
    assert re.search(r"HEALTHCHECK .*\n.*/healthz", text)
    assert re.search(r"^USER 10001:10001$", text, re.M)
    assert 'CMD ["python", "-m", "service"]' in text
    assert set(re.findall(r"\b(UNCONV_[A-Z_]+)=", text)) <= SETTINGS
    assert "IMAGENET1K_V1" in text and "ARG VARIANT=cuda" in text
    # one stage: a builder's venv copied into a runtime stage stored PyTorch twice (CI ran out
    # of disk); the CUDA libraries in a layer of their own, before the rest of the lock
    assert len(re.findall(r"^FROM ", text, re.M)) == 1
    installs = re.findall(r"pip install --no-deps -r (\S+)", text)
    assert installs == ["/tmp/cuda.txt", "/tmp/rest.txt"]


def test_kubernetes_manifests_follow_the_kubernetes_schemas():
    """Each manifest against the real API schemas of the newest Kubernetes release the PyPI
    package bundles (offline), strictly: no field that Kubernetes does not know."""
    import kubernetes_validate

    version = kubernetes_validate.utils.latest_version()
    for manifest in _documents():
        if manifest["kind"] == "Kustomization":
            continue  # a kustomize file, not an API object: it has no schema
        kubernetes_validate.validate(manifest, version, strict=True)
    bad = _manifests()["Deployment"] | {"spek": {}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, version, strict=True)


def _inference_service() -> dict:
    return yaml.safe_load((ROOT / "deploy" / "kserve" / "inferenceservice.yaml").read_text())


async def _status(path: str) -> int:
    """The app's status for GET ``path``, its models not loaded (no lifespan)."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://unconv.test") as client:
        return (await client.get(path)).status_code


def test_the_kserve_inference_service_matches_the_service():
    """KServe's CRD schema is not to be had offline: its fields against the service's own
    settings, port, routes and the image's checkpoint directory."""
    service = _inference_service()
    assert (service["apiVersion"], service["kind"]) == (
        "serving.kserve.io/v1beta1",
        "InferenceService",
    )
    predictor = service["spec"]["predictor"]
    (container,) = predictor["containers"]  # a custom predictor: the image itself
    (port,) = container["ports"]  # Knative routes to one port, named for its protocol
    assert port["name"] in {"http1", "h2c"} and port["containerPort"] == PORT

    env = {e["name"]: e.get("value") for e in container["env"]}
    assert set(env) <= SETTINGS
    assert env["UNCONV_HOST"] == "0.0.0.0" and int(env["UNCONV_PORT"]) == PORT
    values = {k.removeprefix("UNCONV_").lower(): v for k, v in env.items() if v is not None}
    settings = Settings(**values)  # valid values
    assert predictor["timeout"] > settings.request_timeout_s

    # the probes' routes are the app's (anything but the 404 of a missing route)
    probes = {container[p]["httpGet"]["path"] for p in ("readinessProbe", "livenessProbe")}
    assert probes == {"/v2/health/ready", "/v2/health/live"}
    assert asyncio.run(_status("/v2/health/nonesuch")) == 404
    for path in probes:
        assert asyncio.run(_status(path)) != 404, path
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"].get("port", PORT) == PORT

    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    dockerfile = (ROOT / "Dockerfile").read_text()
    (checkpoint_dir,) = re.findall(r"UNCONV_CHECKPOINT_DIR=(\S+)", dockerfile)
    assert env["UNCONV_CHECKPOINT_DIR"] == checkpoint_dir
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["checkpoints"]["mountPath"] == checkpoint_dir
    assert mounts["checkpoints"]["readOnly"]
    volumes = {v["name"]: v for v in predictor["volumes"]}
    claim = volumes["checkpoints"]["persistentVolumeClaim"]["claimName"]
    assert claim == _manifests()["PersistentVolumeClaim"]["metadata"]["name"]
    assert predictor["minReplicas"] == 0  # scale to zero: what KServe adds over deploy/k8s
