"""The manifests agree with each other: names, ports, flags, mounts, RBAC and kustomizations."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from manifest_helpers import (
    MANIFESTS,
    REPO,
    Doc,
    container,
    container_port,
    docs_in,
    find,
    flag,
    load_docs,
    parse_flags,
    service_port,
)

GROUP = "inference.networking.x-k8s.io"
PICKER = "inference-gateway-ext-proc"
POOL = "vllm-llama2-7b-pool"
ROUTE = "test-httproute"

PICKER_DOCS = docs_in(MANIFESTS / "picker")
SCENARIO_DOCS = docs_in(MANIFESTS / "scenario")


def _picker_deployment() -> Doc:
    return find(PICKER_DOCS, "Deployment", PICKER)


def _picker_args() -> list[str]:
    args: list[str] = container(_picker_deployment())["args"]
    return args


def _service() -> Doc:
    return find(PICKER_DOCS, "Service", PICKER)


def _pool() -> Doc:
    return find(SCENARIO_DOCS, "InferencePool", POOL)


def _gpu_app() -> Doc:
    return find(SCENARIO_DOCS, "Deployment", POOL)


def _sim_app() -> Doc:
    return find(load_docs(MANIFESTS / "sim" / "vllm_sim.yaml"), "Deployment", POOL)


# --- picker: Service <-> container <-> flags ---------------------------------------------------

PORTS = [
    ("grpc", "--grpc-port", 9002),
    ("grpc-health", "--grpc-health-port", 9003),
    ("metrics", "--metrics-port", 9090),
]


@pytest.mark.parametrize(("port_name", "flag_name", "number"), PORTS, ids=[p[0] for p in PORTS])
def test_service_container_and_flag_ports_agree(
    port_name: str, flag_name: str, number: int
) -> None:
    c = container(_picker_deployment())
    svc_port = service_port(_service(), port_name)
    assert int(flag(_picker_args(), flag_name)) == number
    assert container_port(c, port_name) == number
    assert svc_port["port"] == number
    assert svc_port["targetPort"] in (number, port_name)


def test_grpc_port_speaks_h2c() -> None:
    assert service_port(_service(), "grpc")["appProtocol"] in ("kubernetes.io/h2c", "http2")


def test_service_selects_the_picker_pods() -> None:
    labels = _picker_deployment()["spec"]["template"]["metadata"]["labels"]
    assert _service()["spec"]["selector"].items() <= labels.items()


def test_pool_extension_ref_names_the_service() -> None:
    ref = _pool()["spec"]["extensionRef"]
    assert ref["name"] == _service()["metadata"]["name"]
    assert ref.get("kind", "Service") == "Service"
    assert ref.get("group", "") == ""
    assert ref.get("portNumber", 9002) == service_port(_service(), "grpc")["port"]
    assert _pool()["metadata"]["namespace"] == _service()["metadata"]["namespace"]


def test_picker_serves_the_scenario_pool() -> None:
    args = _picker_args()
    assert args[0] == "serve"
    assert flag(args, "--pool-name") == _pool()["metadata"]["name"]
    assert flag(args, "--pool-namespace") == _pool()["metadata"]["namespace"]
    assert flag(args, "-v") == "1"
    assert flag(args, "--secure-serving") == "false"  # h2c: see docs/kubernetes.md


PROBES = [("livenessProbe", "liveness"), ("readinessProbe", "readiness")]


@pytest.mark.parametrize(("probe", "service"), PROBES, ids=[p for p, _ in PROBES])
def test_probes_use_grpc_health(probe: str, service: str) -> None:
    c = container(_picker_deployment())
    grpc = c[probe]["grpc"]
    assert grpc["port"] == int(flag(_picker_args(), "--grpc-health-port"))
    assert grpc["service"] == service


def test_config_map_is_mounted_where_config_file_points() -> None:
    deployment = _picker_deployment()
    c = container(deployment)
    config_file = Path(flag(_picker_args(), "--config-file"))
    cm = find(PICKER_DOCS, "ConfigMap", "epp-config")
    volumes = deployment["spec"]["template"]["spec"]["volumes"]
    volume = next(v for v in volumes if v.get("configMap", {}).get("name") == "epp-config")
    mount = next(m for m in c["volumeMounts"] if m["name"] == volume["name"])
    items = {i["path"]: i["key"] for i in volume["configMap"].get("items", [])}
    relative = config_file.relative_to(mount["mountPath"]).as_posix()
    key = items.get(relative, relative)
    assert key in cm["data"]
    config = yaml.safe_load(cm["data"][key])
    assert config["apiVersion"] == f"{GROUP}/v1alpha1"
    assert config["kind"] == "EndpointPickerConfig"


def test_epp_config_profile() -> None:
    config = yaml.safe_load(find(PICKER_DOCS, "ConfigMap", "epp-config")["data"]["epp-config.yaml"])
    names = {p.get("name", p["type"]) for p in config["plugins"]}
    assert names == {
        "queue-scorer",
        "kv-cache-utilization-scorer",
        "prefix-cache-scorer",
        "lora-affinity-scorer",
        "max-score-picker",
    }
    (profile,) = config["schedulingProfiles"]
    assert profile["name"] == "default"
    refs = [(p["pluginRef"], p.get("weight")) for p in profile["plugins"]]
    assert refs == [
        ("queue-scorer", 2),
        ("kv-cache-utilization-scorer", 2),
        ("prefix-cache-scorer", 3),
        ("max-score-picker", None),
    ]
    assert {ref for ref, _ in refs} <= names


# --- picker: identity and RBAC ------------------------------------------------------------------


def test_service_account_exists_and_is_bound() -> None:
    sa_name = _picker_deployment()["spec"]["template"]["spec"]["serviceAccountName"]
    sa = find(PICKER_DOCS, "ServiceAccount", sa_name)
    binding = find(PICKER_DOCS, "RoleBinding", PICKER)
    role = find(PICKER_DOCS, "Role", binding["roleRef"]["name"])
    assert binding["roleRef"]["kind"] == "Role"
    assert {"kind": "ServiceAccount", "name": sa_name, "namespace": "default"} in binding[
        "subjects"
    ]
    namespaces = {d["metadata"]["namespace"] for d in (sa, binding, role)}
    assert namespaces == {_pool()["metadata"]["namespace"]}


EXPECTED_RBAC = {
    ("", "pods"): {"get", "list", "watch"},
    (GROUP, "inferencepools"): {"get", "list", "watch"},
    (GROUP, "inferencemodels"): {"get", "list", "watch"},
    ("coordination.k8s.io", "leases"): {"get", "create", "update"},
    ("gateway.envoyproxy.io", "backendtrafficpolicies"): {"get", "list", "watch"},
}


def test_rbac_is_exactly_least_privilege() -> None:
    granted: dict[tuple[str, str], set[str]] = {}
    for rule in find(PICKER_DOCS, "Role", PICKER)["rules"]:
        assert set(rule) == {"apiGroups", "resources", "verbs"}, "no resourceNames/nonResourceURLs"
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted.setdefault((group, resource), set()).update(rule["verbs"])
    assert granted == EXPECTED_RBAC
    assert not [
        d for d in docs_in(MANIFESTS) if d["kind"].startswith("Cluster") and "Role" in d["kind"]
    ]


# --- security and resources ---------------------------------------------------------------------

XDS_DOCS = docs_in(MANIFESTS / "xds")
# Workloads running our image (its user), and everything that must be hardened.
WORKLOADS = [
    ("picker", _picker_deployment()),
    ("sim", _sim_app()),
    ("xds", find(XDS_DOCS, "Deployment", "extproc-xds")),
]
HARDENED = [*WORKLOADS, ("envoy", find(XDS_DOCS, "Deployment", "inference-gateway-envoy"))]


@pytest.mark.parametrize("deployment", [d for _, d in HARDENED], ids=[i for i, _ in HARDENED])
def test_workloads_are_hardened(deployment: Doc) -> None:
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    for c in pod["containers"]:
        sc = c["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"]["drop"] == ["ALL"]
        assert {"cpu", "memory"} <= set(c["resources"]["requests"])
        assert {"cpu", "memory"} <= set(c["resources"]["limits"])


def test_dockerfile_matches_the_deployments() -> None:
    text = (REPO / "Dockerfile").read_text(encoding="utf-8")
    assert 'ENTRYPOINT ["extproc"]' in text
    assert 'CMD ["serve"]' in text
    users = re.findall(r"^USER (\d+)", text, flags=re.MULTILINE)
    assert users, "the image must run as a numeric non-root user"
    uid = int(users[-1])
    assert uid != 0
    for _, deployment in WORKLOADS:
        assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == uid
    assert container(_sim_app())["image"] == container(_picker_deployment())["image"]


# --- pool <-> model servers (GPU and simulated) -------------------------------------------------

APPS = [("gpu", _gpu_app()), ("sim", _sim_app())]


@pytest.mark.parametrize("app", [a for _, a in APPS], ids=[i for i, _ in APPS])
def test_pool_selects_the_model_servers(app: Doc) -> None:
    pool = _pool()["spec"]
    template_labels = app["spec"]["template"]["metadata"]["labels"]
    assert pool["selector"].items() <= template_labels.items()
    assert app["spec"]["selector"]["matchLabels"].items() <= template_labels.items()
    ports = [
        p["containerPort"]
        for c in app["spec"]["template"]["spec"]["containers"]
        for p in c["ports"]
    ]
    assert pool["targetPortNumber"] in ports
    annotations = app["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(pool["targetPortNumber"])
    assert annotations["prometheus.io/path"] == "/metrics"


def test_sim_mirrors_the_vllm_server() -> None:
    sim = _sim_app()
    args = container(sim)["args"]
    assert args[0] == "sim"
    assert sim["spec"]["replicas"] == 3
    assert int(flag(args, "--base-port")) == _pool()["spec"]["targetPortNumber"]
    assert flag(args, "--pods") == "1"
    assert flag(args, "--host") == "0.0.0.0"
    assert container(sim)["readinessProbe"]["httpGet"]["path"] == "/health"
    vllm_args: list[str] = container(_gpu_app(), "lora")["args"]
    assert flag(args, "--model") == flag(vllm_args, "--model")
    assert flag(args, "--max-loras") == flag(vllm_args, "--max-loras")
    # `--lora-modules a=/path b=/path ...`: the names up to the next flag.
    start = vllm_args.index("--lora-modules") + 1
    modules: list[str] = []
    for arg in vllm_args[start:]:
        if arg.startswith("-"):
            break
        modules.append(arg.split("=", 1)[0])
    assert parse_flags(args)["--lora"] == modules
    assert len(modules) == 10


def test_inference_model_points_at_the_pool() -> None:
    model = find(SCENARIO_DOCS, "InferenceModel", "inferencemodel-sample")["spec"]
    assert model["poolRef"]["name"] == POOL
    assert model["modelName"] == flag(container(_gpu_app(), "lora")["args"], "--model")


# --- gateway wiring -----------------------------------------------------------------------------


def test_route_targets_the_pool_through_the_gateway() -> None:
    route = find(SCENARIO_DOCS, "HTTPRoute", ROUTE)["spec"]
    gateway = find(SCENARIO_DOCS, "Gateway", route["parentRefs"][0]["name"])
    gateway_class = find(SCENARIO_DOCS, "GatewayClass", gateway["spec"]["gatewayClassName"])
    assert (
        gateway_class["spec"]["controllerName"] == "gateway.envoyproxy.io/gatewayclass-controller"
    )
    proxy_ref = gateway["spec"]["infrastructure"]["parametersRef"]
    proxy = find(SCENARIO_DOCS, proxy_ref["kind"], proxy_ref["name"])
    assert proxy["spec"]["provider"]["kubernetes"]["envoyService"]["type"] == "ClusterIP"
    assert [(lst["protocol"], lst["port"]) for lst in gateway["spec"]["listeners"]] == [
        ("HTTP", 80)
    ]
    assert route["hostnames"] == ["example.com"]
    (rule,) = route["rules"]
    assert rule["matches"] == [{"path": {"type": "PathPrefix", "value": "/"}}]
    (backend,) = rule["backendRefs"]
    assert (backend["group"], backend["kind"], backend["name"]) == (GROUP, "InferencePool", POOL)


POLICIES = [
    ("BackendTrafficPolicy", "circuitbreaker-for-route"),
    ("EnvoyExtensionPolicy", "ext-proc-for-route"),
]


@pytest.mark.parametrize(("kind", "name"), POLICIES, ids=[k for k, _ in POLICIES])
def test_policies_target_the_route(kind: str, name: str) -> None:
    policy = find(SCENARIO_DOCS, kind, name)
    (target,) = policy["spec"]["targetRefs"]
    assert target == {"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": ROUTE}
    assert policy["metadata"]["namespace"] == "default"


def test_circuit_breaker_allows_one_request() -> None:
    policy = find(SCENARIO_DOCS, "BackendTrafficPolicy", "circuitbreaker-for-route")
    assert policy["spec"]["circuitBreaker"] == {"maxPendingRequests": 1, "maxParallelRequests": 1}


def test_ext_proc_policy_calls_the_picker_service() -> None:
    policy = find(SCENARIO_DOCS, "EnvoyExtensionPolicy", "ext-proc-for-route")
    (ext_proc,) = policy["spec"]["extProc"]
    (backend,) = ext_proc["backendRefs"]
    assert backend.get("kind", "Service") == "Service"
    assert backend["name"] == _service()["metadata"]["name"]
    assert backend["port"] == service_port(_service(), "grpc")["port"]
    assert ext_proc["processingMode"]["request"] == {"body": "Buffered"}
    # The response body through the picker: usage metrics and the step clock need it.
    assert ext_proc["processingMode"]["response"] == {"body": "Streamed"}
    assert ext_proc["messageTimeout"] == "5s"


def test_everything_is_in_the_default_namespace() -> None:
    for doc in docs_in(MANIFESTS):
        if doc["kind"] in ("CustomResourceDefinition", "GatewayClass"):
            assert "namespace" not in doc["metadata"]
        else:
            assert doc["metadata"].get("namespace") == "default", doc["metadata"]["name"]


# --- kustomizations -----------------------------------------------------------------------------

KUSTOMIZATIONS = sorted(MANIFESTS.rglob("kustomization.yaml"))


def _listed(kustomization: Path) -> list[str]:
    k = load_docs(kustomization)[0]
    entries: list[str] = list(k.get("resources", []))
    entries += [p["path"] for p in k.get("patches", []) if "path" in p]
    return entries


@pytest.mark.parametrize(
    "kustomization", KUSTOMIZATIONS, ids=[str(k.parent.relative_to(REPO)) for k in KUSTOMIZATIONS]
)
def test_kustomization_lists_exactly_the_files(kustomization: Path) -> None:
    directory = kustomization.parent
    listed = _listed(kustomization)
    assert len(listed) == len(set(listed)), "duplicate entries"
    for entry in listed:
        target = (directory / entry).resolve()
        assert target.exists(), f"{entry} does not exist"
        if target.is_dir():
            assert (target / "kustomization.yaml").exists(), f"{entry} is not a kustomization"
    local = {p.name for p in directory.glob("*.yaml") if p.name != "kustomization.yaml"}
    assert local <= set(listed), f"not listed: {sorted(local - set(listed))}"
    subdirs = {p.name for p in directory.iterdir() if (p / "kustomization.yaml").exists()}
    if directory == MANIFESTS:  # variants applied on their own: the simulator, the standalone Envoy
        assert subdirs - {"sim", "xds"} <= set(listed)


def test_every_manifest_directory_has_a_kustomization() -> None:
    for directory in [MANIFESTS, *[p for p in MANIFESTS.rglob("*") if p.is_dir()]]:
        if any(directory.glob("*.yaml")):
            assert (directory / "kustomization.yaml").exists(), directory


BUILDS = ["manifests", "manifests/sim"]


@pytest.mark.skipif(
    shutil.which("kubectl") is None, reason="kubectl (built-in kustomize) not installed"
)
@pytest.mark.parametrize("target", BUILDS, ids=BUILDS)
def test_kustomize_build(target: str) -> None:
    result = subprocess.run(
        ["kubectl", "kustomize", str(REPO / target)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    built = [d for d in yaml.safe_load_all(result.stdout) if d]
    app = find(built, "Deployment", POOL)
    expected = _sim_app() if target.endswith("sim") else _gpu_app()
    assert (
        app["spec"]["template"]["spec"]["containers"]
        == expected["spec"]["template"]["spec"]["containers"]
    )
    assert app["spec"]["replicas"] == expected["spec"]["replicas"]
    config_maps = {d["metadata"]["name"] for d in built if d["kind"] == "ConfigMap"}
    assert ("chat-template" in config_maps) is not target.endswith("sim")
    kinds = {d["kind"] for d in built}
    assert {"CustomResourceDefinition", "InferencePool", "InferenceModel", "HTTPRoute"} <= kinds
    assert {"EnvoyExtensionPolicy", "BackendTrafficPolicy", "Role", "RoleBinding"} <= kinds
