"""CPU threads per model worker: from the cgroup CPU quota when the container has one, set in
the manifests anyway, and every variable the server reads documented in docs/deployment.md."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml

from letterwise.serve import config
from letterwise.serve.__main__ import MULTIPROC_ENV
from letterwise.serve.engine import cgroup_cpu_quota, usable_cores, worker_threads
from tests.conftest import REPO_ROOT

WORKERS = 3  # one model worker per task endpoint: spelling, position, count


def cgroup_v2(root: Path, text: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "cpu.max").write_text(text)
    return root


def cgroup_v1(root: Path, quota: str, period: str = "100000\n") -> Path:
    (root / "cpu").mkdir(parents=True)
    (root / "cpu" / "cpu.cfs_quota_us").write_text(quota)
    (root / "cpu" / "cpu.cfs_period_us").write_text(period)
    return root


def test_the_cgroup_quota_in_cpus(tmp_path: Path) -> None:
    assert cgroup_cpu_quota(cgroup_v2(tmp_path / "a", "200000 100000\n")) == 2.0
    assert cgroup_cpu_quota(cgroup_v2(tmp_path / "b", "150000 100000\n")) == 1.5
    assert cgroup_cpu_quota(cgroup_v2(tmp_path / "c", "max 100000\n")) is None
    assert cgroup_cpu_quota(cgroup_v1(tmp_path / "d", "400000\n")) == 4.0
    assert cgroup_cpu_quota(cgroup_v1(tmp_path / "e", "-1\n")) is None
    assert cgroup_cpu_quota(tmp_path / "no-cgroup") is None
    assert cgroup_cpu_quota(cgroup_v2(tmp_path / "f", "garbage\n")) is None


def test_usable_cores_are_capped_by_the_quota(tmp_path: Path) -> None:
    affinity = len(os.sched_getaffinity(0))
    assert usable_cores(tmp_path / "no-cgroup") == affinity
    assert usable_cores(cgroup_v2(tmp_path / "one", "100000 100000")) == 1
    assert usable_cores(cgroup_v2(tmp_path / "half", "50000 100000")) == 1  # never 0
    assert usable_cores(cgroup_v2(tmp_path / "many", "6400000 100000")) == affinity  # 64 CPUs


def test_threads_per_worker() -> None:
    # A 64-core node, a container limited to 4 CPUs: 4 // 3 workers, not 64 // 3.
    assert worker_threads(WORKERS, cores=4) == 1
    assert worker_threads(WORKERS, cores=64) == 21
    assert worker_threads(WORKERS, cores=2) == 1  # at least one thread each
    assert worker_threads(WORKERS) >= 1


def k8s_limit_cpus() -> float:
    deployment = yaml.safe_load((REPO_ROOT / "deployment/k8s/cpu/deployment.yaml").read_text())
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return float(container["resources"]["limits"]["cpu"])


def test_the_manifests_set_threads_that_fit_their_cpu_limit() -> None:
    configmap = yaml.safe_load((REPO_ROOT / "deployment/k8s/common/configmap.yaml").read_text())
    k8s_threads = int(configmap["data"]["LETTERWISE_CPU_THREADS"])
    assert 1 <= k8s_threads and k8s_threads * WORKERS <= k8s_limit_cpus()
    compose = yaml.safe_load((REPO_ROOT / "deployment/docker-compose.yml").read_text())
    api = compose["services"]["api"]
    compose_threads = int(api["environment"]["LETTERWISE_CPU_THREADS"])
    cpus = float(api["deploy"]["resources"]["limits"]["cpus"])
    assert 1 <= compose_threads and compose_threads * WORKERS <= cpus


@pytest.mark.parametrize("doc", ["docs/deployment.md", "docs/api.md"])
def test_every_variable_the_server_reads_is_documented(doc: str) -> None:
    read = {env for env, *_ in config.OPTIONS.values()} | {config.TOKEN_ENV}
    if doc == "docs/deployment.md":
        read |= {MULTIPROC_ENV}
    text = (REPO_ROOT / doc).read_text()
    rows = [line for line in text.splitlines() if line.startswith("|")]
    table_rows = {name for row in rows for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", row)}
    assert read <= table_rows, f"{doc} has no table row for {sorted(read - table_rows)}"
