"""What runs the pipelines beyond one machine, checked where it cannot be run here (no Docker
engine, no Kubernetes, no second GPU): the image installs through the Makefile's one recipe, the
compose file's pools are the pipelines' pools, the work-pool job templates declare every value
they use, and the accelerate configs load with accelerate's own reader."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
INFRA = REPO / "infra"


def test_the_image_installs_with_the_makefile_recipe_and_its_pins():
    docker = (INFRA / "Dockerfile").read_text()
    make = (REPO / "Makefile").read_text()
    assert re.search(r"^RUN make install ", docker, re.M)  # the same steps as `make install`, not a copy
    pinned = re.search(r"^TORCH_SPEC \?= (\S+)", make, re.M).group(1)
    assert f"ARG TORCH_SPEC={pinned}" in docker
    assert "opencv-contrib-python==4.11.0.86" in make  # the OpenCV fix-up the image gets through make
    ignored = (REPO / ".dockerignore").read_text().split()
    assert ".venv" in ignored and "data" in ignored


def test_compose_runs_a_postgres_backed_server_and_a_worker_per_pipeline_pool():
    compose = yaml.safe_load((INFRA / "compose.yaml").read_text())
    services = compose["services"]
    assert {"postgres", "prefect-server", "worker-cpu", "worker-gpu", "deploy"} <= set(services)
    db_url = services["prefect-server"]["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"]
    pg = services["postgres"]["environment"]
    assert db_url == (f"postgresql+asyncpg://{pg['POSTGRES_USER']}:{pg['POSTGRES_PASSWORD']}@postgres:5432/"
                      f"{pg['POSTGRES_DB']}")
    from animate_anyone.config import load_file

    pools = set(load_file(REPO / "pipelines.yaml").pipelines["demo"].deploy.pools)
    worker_pools = {s["command"][s["command"].index("--pool") + 1] for n, s in services.items() if n.startswith("worker-")}
    assert worker_pools == pools == {"cpu", "gpu"}
    gpu = services["worker-gpu"]
    assert gpu["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    assert gpu["build"]["args"]["TORCH_INDEX"].endswith("/cu128")
    for name in ("worker-cpu", "worker-gpu", "deploy"):
        assert services[name]["environment"]["PREFECT_API_URL"] == "http://prefect-server:4200/api"
    assert services["deploy"]["command"][:2] == ["animate-anyone", "deploy"]


@pytest.mark.parametrize("name", ["docker.json", "kubernetes.json"])
def test_a_job_template_declares_every_value_it_uses(name):
    from prefect.utilities.templating import apply_values, find_placeholders

    template = json.loads((INFRA / "prefect" / name).read_text())
    declared = template["variables"]["properties"]
    used = {p.name for p in find_placeholders(template["job_configuration"])}
    assert used and used <= set(declared), used - set(declared)
    defaults = {k: v["default"] for k, v in declared.items() if v.get("default") is not None}
    job = apply_values(template["job_configuration"], defaults)
    if name == "kubernetes.json":
        container = job["job_manifest"]["spec"]["template"]["spec"]["containers"][0]
        assert container["resources"]["limits"]["nvidia.com/gpu"] == 1 and container["image"] == "animate-anyone:cuda"
    else:
        assert job["container_create_kwargs"]["device_requests"][0]["Capabilities"] == [["gpu"]]
        assert job["volumes"] == ["animate-anyone_data:/data"]


@pytest.mark.parametrize("name", ["1gpu.yaml", "8gpu.yaml", "multinode.yaml", "deepspeed_zero2.yaml"])
def test_accelerate_configs_load_with_accelerates_reader(name):
    from accelerate.commands.config.config_args import ClusterConfig

    cfg = ClusterConfig.from_yaml_file(INFRA / "accelerate" / name)
    expected = {"1gpu.yaml": 1, "8gpu.yaml": 8, "multinode.yaml": 16}
    if name in expected:
        assert cfg.num_processes == expected[name]
    else:
        assert cfg.distributed_type.value == "DEEPSPEED" and cfg.deepspeed_config["zero_stage"] == 2
