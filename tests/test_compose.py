"""The production wiring (docker-compose.yml and services/<name>/Dockerfile) checked without a Docker engine:
the services, their health checks and start order, the images' users, packages and commands, and that the
environment the containers get is what the services' settings read. `docker compose config` runs too where
the compose plugin is installed."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import uvicorn
import yaml
from aftersales_shared import cli as shared_cli
from aftersales_shared import topics as shared_topics
from aftersales_shared.settings import ServiceSettings
from aftersales_shared.signing import private_text, public_text
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import AliasChoices
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
# services/<name>: one image each
SERVICES = ("case-api", "logistics-watcher", "payout-worker", "ops-console")
BUS_SERVICES = SERVICES[:3]  # on Kafka; ops-console has no event bus
MIGRATE_STEPS = {f"{name}-migrate": name for name in SERVICES}  # one-shot step -> the service it migrates
SIMULATOR = "payout-simulator"  # runs from the payout-worker image
ACLS_STEP = "kafka-acls"  # one-shot, from the case-api image: the Kafka ACLs, before the services start
IMAGE_OF = {
    **{name: name for name in SERVICES},
    **MIGRATE_STEPS,
    SIMULATOR: "payout-worker",
    ACLS_STEP: "case-api",
}
EXPECTED_SERVICES = {"postgres", "kafka", *SERVICES, *MIGRATE_STEPS, SIMULATOR}
PASSWORD = "compose-test-password"
_APPROVAL_KEY = Ed25519PrivateKey.generate()
_RESULT_KEY = Ed25519PrivateKey.generate()
_STAFF_TOKEN_KEY = Ed25519PrivateKey.generate()
# What the operator of a production deployment chooses besides the passwords (docs/operations.md): case-api's
# approval key, payout-worker's result key and their public halves, and Alipay in certificate mode (read
# when payout-worker starts).
OPERATOR = {
    "CASE_API_APPROVAL_SIGNING_KEY": private_text(_APPROVAL_KEY),
    "PAYOUT_WORKER_APPROVAL_PUBLIC_KEYS": public_text(_APPROVAL_KEY.public_key()),
    "PAYOUT_WORKER_RESULT_SIGNING_KEY": private_text(_RESULT_KEY),
    "CASE_API_PAYOUT_RESULT_PUBLIC_KEYS": public_text(_RESULT_KEY.public_key()),
    "OPS_CONSOLE_TOKEN_SIGNING_KEY": private_text(_STAFF_TOKEN_KEY),
    "STAFF_TOKEN_PUBLIC_KEYS": public_text(_STAFF_TOKEN_KEY.public_key()),
    "PAYOUT_WORKER_ALIPAY_APP_ID": "2021000000000001",
    "PAYOUT_WORKER_ALIPAY_PRIVATE_KEY": "-----BEGIN PRIVATE KEY-----\n(the app's RSA2 key)\n-----END...",
    "PAYOUT_WORKER_ALIPAY_APP_CERT": "/run/secrets/appCertPublicKey_2021000000000001.crt",
    "PAYOUT_WORKER_ALIPAY_PUBLIC_CERT": "/run/secrets/alipayCertPublicKey_RSA2.crt",
    "PAYOUT_WORKER_ALIPAY_ROOT_CERT": "/run/secrets/alipayRootCert.crt",
}
ALIPAY_SETTINGS = [name for name in OPERATOR if name.startswith("PAYOUT_WORKER_ALIPAY_")]
# The Kafka users' passwords: the broker's SCRAM users and the services' (or the ACL step's) credentials.
KAFKA_PASSWORDS = {
    "KAFKA_ADMIN_PASSWORD": "admin",
    **{
        f"{env_name}_KAFKA_PASSWORD": name
        for name, env_name in (
            ("case-api", "CASE_API"),
            ("logistics-watcher", "LOGISTICS_WATCHER"),
            ("payout-worker", "PAYOUT_WORKER"),
        )
    },
    "KAFKA_WAREHOUSE_PASSWORD": "warehouse",
}
# Every variable the compose file reads, with its documented default (`:-`) or error (`:?`).
EXPECTED_VARIABLES = {
    "POSTGRES_PASSWORD": {(":?", "set POSTGRES_PASSWORD")},
    **{variable: {(":?", f"set {variable}")} for variable in KAFKA_PASSWORDS},
    "LOG_LEVEL": {(":-", "INFO")},
    "KAFKA_TOPIC_PARTITIONS": {(":-", "6")},
    "KAFKA_TOPIC_PREFIX": {(":-", "")},
    "KAFKA_REPLICATION_FACTOR": {(":-", "1")},
    "EVENT_RETENTION_DAYS": {(":-", "14")},
    "ENVIRONMENT": {(":-", "production")},
    "CASE_API_APPROVAL_SIGNING_KEY": {(":?", "set CASE_API_APPROVAL_SIGNING_KEY")},
    "PAYOUT_WORKER_APPROVAL_PUBLIC_KEYS": {(":?", "set PAYOUT_WORKER_APPROVAL_PUBLIC_KEYS")},
    "PAYOUT_WORKER_RESULT_SIGNING_KEY": {(":?", "set PAYOUT_WORKER_RESULT_SIGNING_KEY")},
    "CASE_API_PAYOUT_RESULT_PUBLIC_KEYS": {(":?", "set CASE_API_PAYOUT_RESULT_PUBLIC_KEYS")},
    "OPS_CONSOLE_TOKEN_SIGNING_KEY": {(":?", "set OPS_CONSOLE_TOKEN_SIGNING_KEY")},
    "STAFF_TOKEN_PUBLIC_KEYS": {(":?", "set STAFF_TOKEN_PUBLIC_KEYS")},
    "PAYOUT_WORKER_PROVIDER": {(":-", "alipay")},
    "PAYOUT_WORKER_CUTOFF": {(":-", "17:30")},
    "PAYOUT_WORKER_ALIPAY_APP_ID": {(":-", "")},
    "PAYOUT_WORKER_ALIPAY_PRIVATE_KEY": {(":-", "")},
    "PAYOUT_WORKER_ALIPAY_PUBLIC_KEY": {(":-", "")},
    "PAYOUT_WORKER_ALIPAY_APP_CERT": {(":-", "")},
    "PAYOUT_WORKER_ALIPAY_PUBLIC_CERT": {(":-", "")},
    "PAYOUT_WORKER_ALIPAY_ROOT_CERT": {(":-", "")},
}
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


@functools.cache
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))  # resolves the `<<:` merge keys
    assert isinstance(loaded, dict)
    return loaded


def service(name: str) -> dict[str, Any]:
    spec = compose()["services"][name]
    assert isinstance(spec, dict), name
    return spec


def interpolate(value: object, env: dict[str, str]) -> str:
    """Compose's `${VAR}`, `${VAR:-default}` and `${VAR:?error}` against `env`."""

    def one(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3) or ""
        current = env.get(name)
        if op == ":?" and not current:
            raise AssertionError(f"{name}: {arg}")
        if op == ":-" and not current:
            return arg
        return current or ""

    return _VARIABLE.sub(one, str(value)).replace("$$", "$")


def pyproject(folder: str) -> dict[str, Any]:
    with (ROOT / "services" / folder / "pyproject.toml").open("rb") as f:
        return tomllib.load(f)


def scripts(folder: str) -> dict[str, str]:
    declared = pyproject(folder)["project"].get("scripts", {})
    assert isinstance(declared, dict)
    return declared


def settings_class(folder: str) -> type[ServiceSettings]:
    cls = importlib.import_module(folder.replace("-", "_") + ".config").Settings
    assert issubclass(cls, ServiceSettings)
    return cls


def env_prefix(folder: str) -> str:
    return folder.upper().replace("-", "_") + "_"


def default_port(folder: str) -> int:
    port = settings_class(folder).model_fields["port"].default
    assert isinstance(port, int)
    return port


def published_ports(name: str) -> list[tuple[int, int]]:
    """(host port, container port) for each `ports:` entry ("8000:8000", "127.0.0.1:8009:8009")."""
    pairs = []
    for entry in service(name).get("ports", []):
        parts = str(entry).split("/")[0].split(":")
        pairs.append((int(parts[-2]), int(parts[-1])))
    return pairs


def healthcheck_command(name: str) -> str:
    test = service(name).get("healthcheck", {}).get("test", [])
    return " ".join(test) if isinstance(test, list) else str(test)


def dockerfile_path(name: str) -> Path:
    build = service(name)["build"]
    assert isinstance(build, dict), f"{name}: build needs a context and a dockerfile"
    return ROOT / build["context"] / build["dockerfile"]


@functools.cache
def dockerfile_stages(path: Path) -> list[list[tuple[str, str]]]:
    """The instructions (KEYWORD, arguments) of each stage, continuation lines joined, comments dropped."""
    stages: list[list[tuple[str, str]]] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, arguments = (pending + line).partition(" ")
        pending = ""
        if keyword.upper() == "FROM":
            stages.append([])
        assert stages, f"{path}: an instruction before the first FROM"
        stages[-1].append((keyword.upper(), arguments.strip()))
    return stages


def runtime_stage(folder: str) -> list[tuple[str, str]]:
    return dockerfile_stages(ROOT / "services" / folder / "Dockerfile")[-1]


def instructions(stage: list[tuple[str, str]], keyword: str) -> list[str]:
    return [arguments for kw, arguments in stage if kw == keyword]


def image_cmd(folder: str) -> list[str]:
    cmds = instructions(runtime_stage(folder), "CMD")
    assert cmds, f"services/{folder}/Dockerfile has no CMD"
    command = json.loads(cmds[-1])  # the exec form: no shell between Docker and the service
    assert isinstance(command, list)
    return command


def image_env(folder: str) -> dict[str, str]:
    env: dict[str, str] = {}
    for arguments in instructions(runtime_stage(folder), "ENV"):
        for pair in arguments.split():
            key, _, value = pair.partition("=")
            if "$" not in value:
                env[key] = value
    return env


def environment_of(name: str, **changes: str | None) -> dict[str, str]:
    """The service's `environment:`, its variables given (every password set, and the OPERATOR's choices;
    `changes` to them, None unsetting one)."""
    given = {"POSTGRES_PASSWORD": PASSWORD, **{v: f"{v.lower()}-value" for v in KAFKA_PASSWORDS}}
    given = {k: v for k, v in {**given, **OPERATOR, **changes}.items() if v is not None}
    environment = service(name).get("environment", {})
    assert isinstance(environment, dict), f"{name}: environment as a mapping"
    return {k: interpolate(v, given) for k, v in environment.items()}


def container_env(name: str, **changes: str | None) -> dict[str, str]:
    """What the container's process sees: the image's ENV, then the service's `environment:`."""
    return image_env(IMAGE_OF[name]) | environment_of(name, **changes)


def use_only(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for key in list(os.environ):
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)


def entry_point(folder: str, script: str) -> Callable[..., Any]:
    module, _, attribute = scripts(folder)[script].partition(":")
    function = getattr(importlib.import_module(module), attribute)
    assert callable(function)
    return function


def long_running() -> list[str]:
    return [name for name in compose()["services"] if name not in MIGRATE_STEPS]


def test_the_expected_services_exist() -> None:
    assert "version" not in compose(), "the compose spec has no version key"
    missing = EXPECTED_SERVICES - set(compose()["services"])
    assert not missing, f"missing services: {sorted(missing)}"


@pytest.mark.parametrize("name", sorted(EXPECTED_SERVICES - set(MIGRATE_STEPS)))
def test_every_long_running_service_has_a_healthcheck(name: str) -> None:
    healthcheck = service(name).get("healthcheck")
    assert healthcheck, f"{name} has no healthcheck"
    assert not healthcheck.get("disable"), f"{name} disables its healthcheck"
    assert healthcheck.get("test"), f"{name}: a healthcheck without a test"
    assert service(name).get("restart") in ("always", "unless-stopped"), f"{name} is not restarted"


@pytest.mark.parametrize("name", [*SERVICES, SIMULATOR])
def test_http_services_check_readyz_on_their_own_port(name: str) -> None:
    ports = {container for _, container in published_ports(name)}
    assert len(ports) == 1, f"{name} publishes {ports}"
    assert f"127.0.0.1:{ports.pop()}/readyz" in healthcheck_command(name)


def test_every_dependency_names_a_condition_its_target_can_meet() -> None:
    services = compose()["services"]
    for name, spec in services.items():
        depends_on = spec.get("depends_on")
        if depends_on is None:
            continue
        assert isinstance(depends_on, dict), f"{name}: depends_on as a mapping with conditions"
        for target, how in depends_on.items():
            assert target in services, f"{name} depends on an unknown {target}"
            condition = (how or {}).get("condition")
            if condition == "service_healthy":
                healthcheck = services[target].get("healthcheck") or {}
                assert healthcheck.get("test") and not healthcheck.get("disable"), (
                    f"{name} waits for {target} to be healthy, but it has no healthcheck"
                )
            elif condition == "service_completed_successfully":
                assert target in {*MIGRATE_STEPS, ACLS_STEP}, (
                    f"{name} waits for {target} to exit, but it keeps running"
                )
            else:
                pytest.fail(f"{name} -> {target}: condition {condition!r}")


@pytest.mark.parametrize("name", SERVICES)
def test_each_service_waits_for_its_migration_and_the_broker(name: str) -> None:
    depends_on = service(name).get("depends_on", {})
    assert depends_on.get(f"{name}-migrate") == {"condition": "service_completed_successfully"}
    if name in BUS_SERVICES:
        assert depends_on.get("kafka") == {"condition": "service_healthy"}
    else:
        assert not any(key.startswith("KAFKA_") for key in service(name)["environment"]), "no bus here"


@pytest.mark.parametrize("name", BUS_SERVICES)
def test_the_console_reaches_each_service_which_trusts_its_staff_tokens(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its proxy calls the service by its compose name and port; the service accepts the tokens it signs."""
    from aftersales_shared.staff_tokens import staff_token_verifier
    from ops_console.tokens import signing_key

    use_only(monkeypatch, container_env("ops-console"))
    console = settings_class("ops-console")()
    url = urlsplit(console.service_urls()[name])  # type: ignore[attr-defined]
    assert (url.hostname, url.port) == (name, default_port(name))
    use_only(monkeypatch, container_env(name))
    verifier = staff_token_verifier(settings_class(name)().staff_token_public_keys)
    assert verifier is not None, f"{name} accepts no staff token"
    assert public_text(signing_key(console).public_key()) in container_env(name)["STAFF_TOKEN_PUBLIC_KEYS"]


def test_the_payout_worker_waits_for_the_simulator_it_pays_through() -> None:
    assert service("payout-worker")["depends_on"].get(SIMULATOR) == {"condition": "service_healthy"}
    url = urlsplit(container_env("payout-worker")["PAYOUT_WORKER_SIMULATOR_URL"])
    assert url.hostname == SIMULATOR
    assert url.port in {container for _, container in published_ports(SIMULATOR)}


@pytest.mark.parametrize("step", sorted(MIGRATE_STEPS))
def test_each_migrate_step_runs_migrate_wait_once(step: str) -> None:
    name = MIGRATE_STEPS[step]
    spec = service(step)
    command = spec.get("command")
    assert isinstance(command, list) and command[:2] == [name, "migrate"], command
    assert "--wait" in command, f"{step} does not wait for the database"
    assert int(command[command.index("--wait") + 1]) > 0
    assert spec.get("restart") == "no"
    assert spec.get("depends_on", {}).get("postgres") == {"condition": "service_healthy"}
    assert not spec.get("ports"), f"{step} publishes ports"
    # The same image, and the same environment: the production settings are validated by `migrate` too.
    assert (spec.get("build"), spec.get("image")) == (service(name)["build"], service(name).get("image"))
    assert container_env(step) == container_env(name)


@pytest.mark.parametrize("step", sorted(MIGRATE_STEPS))
def test_each_migrate_command_waits_for_the_database_then_upgrades(
    step: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The step's command, run with the database calls stubbed out."""
    calls: list[str] = []

    async def wait_for_database(url: str, seconds: float, *args: object) -> None:
        assert make_url(url).host == "postgres" and seconds > 0
        calls.append("wait")

    async def upgrade(service_dir: Path, url: str, *args: object) -> None:
        assert (service_dir / "alembic.ini").is_file() and (service_dir / "migrations").is_dir()
        calls.append("upgrade")

    monkeypatch.setattr(shared_cli, "wait_for_database", wait_for_database)
    monkeypatch.setattr(shared_cli, "upgrade", upgrade)
    use_only(monkeypatch, container_env(step))
    command = service(step)["command"]
    assert entry_point(IMAGE_OF[step], command[0])(command[1:]) == 0
    assert calls == ["wait", "upgrade"]


@pytest.mark.parametrize("name", sorted(EXPECTED_SERVICES - {"postgres", "kafka"}))
def test_each_build_names_its_service_dockerfile(name: str) -> None:
    assert (ROOT / service(name)["build"]["context"]).resolve() == ROOT, "the build context is the root"
    path = dockerfile_path(name)
    assert path.is_file(), path
    assert path.resolve() == ROOT / "services" / IMAGE_OF[name] / "Dockerfile"


@pytest.mark.parametrize("folder", SERVICES)
def test_the_dockerfile_builds_a_slim_non_root_image_of_its_package(folder: str) -> None:
    path = ROOT / "services" / folder / "Dockerfile"
    stages = dockerfile_stages(path)
    assert len(stages) >= 2, "a build stage and a runtime stage"
    for stage in stages:
        image = stage[0][1].split()[0]
        assert image.partition(":")[2].endswith("-slim"), f"{path}: FROM {image}"
    runtime = stages[-1]
    users = instructions(runtime, "USER")
    assert users, f"{path} runs as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0") and user.isdigit(), f"USER {user}: a numeric, non-root uid"
    sync = [a for stage in stages for a in instructions(stage, "RUN") if "uv sync" in a]
    assert len(sync) == 1, sync
    package = re.search(r"--package\s+(\S+)", sync[0])
    assert package and package.group(1) == pyproject(folder)["project"]["name"]
    assert "--frozen" in sync[0] and "--no-dev" in sync[0] and "--no-editable" in sync[0]
    # DATA_DIR is writable by that user (case-api keeps evidence there; a named volume takes its owner).
    data_dir = image_env(folder)["DATA_DIR"]
    assert any(
        re.search(rf"chown (-R )?{user}(:\d+)? {re.escape(data_dir)}\b", a)
        for a in instructions(runtime, "RUN")
    )
    # `migrate` needs alembic.ini and migrations/ at run time: they ship inside the package.
    home = ROOT / "services" / folder / "src" / folder.replace("-", "_")
    assert (home / "alembic.ini").is_file() and (home / "migrations" / "versions").is_dir()


@pytest.mark.parametrize("folder", SERVICES)
def test_the_image_exposes_checks_and_serves_the_service_port(folder: str) -> None:
    runtime = runtime_stage(folder)
    port = default_port(folder)
    exposed = {int(p.split("/")[0]) for a in instructions(runtime, "EXPOSE") for p in a.split()}
    assert port in exposed
    healthcheck = instructions(runtime, "HEALTHCHECK")
    assert healthcheck and "/healthz" in healthcheck[-1] and str(port) in healthcheck[-1]
    assert image_cmd(folder) == [folder, "serve", "--no-migrate"], "migrations run in the migrate step"


@pytest.mark.parametrize("name", sorted(EXPECTED_SERVICES - {"postgres", "kafka"}))
def test_commands_are_console_scripts_of_the_image(name: str) -> None:
    folder = IMAGE_OF[name]
    command = service(name).get("command") or image_cmd(folder)
    assert isinstance(command, list), f"{name}: the exec form"
    assert command[0] in scripts(folder), f"{command[0]} is not in services/{folder} [project.scripts]"
    assert image_cmd(folder)[0] in scripts(folder)


@pytest.mark.parametrize("name", [*SERVICES, *MIGRATE_STEPS])
def test_environment_names_are_settings_the_service_reads(name: str) -> None:
    folder = IMAGE_OF[name]
    settings = settings_class(folder)
    prefix = env_prefix(folder)
    assert settings.model_config.get("env_prefix") == prefix
    fields = settings.model_fields
    aliases: set[str] = set()
    for field in fields.values():
        alias = field.validation_alias
        if isinstance(alias, str):
            aliases.add(alias)
        elif isinstance(alias, AliasChoices):
            aliases.update(c for c in alias.choices if isinstance(c, str))
    for key in service(name)["environment"]:
        if key.startswith(prefix):
            field_name = key.removeprefix(prefix).lower()
            assert field_name in fields, f"{name}: {key} is no {settings.__module__}.Settings field"
            assert fields[field_name].validation_alias is None, f"{key}: that field is read unprefixed"
        else:
            assert key in aliases, f"{name}: no setting reads {key}"
    assert "host" in fields and "port" in fields
    if name in SERVICES:
        assert service(name)["environment"].get(f"{prefix}HOST") == "0.0.0.0", f"{name} listens on localhost"


@pytest.mark.parametrize("name", SERVICES)
def test_published_ports_are_the_settings_default_ports(name: str) -> None:
    port = default_port(name)
    assert published_ports(name) and all(pair == (port, port) for pair in published_ports(name))
    assert f"{env_prefix(name)}PORT" not in service(name)["environment"], "the port is the default one"


@pytest.mark.parametrize("name", [*SERVICES, *MIGRATE_STEPS])
def test_settings_accept_the_container_environment(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    use_only(monkeypatch, container_env(name))
    settings = settings_class(IMAGE_OF[name])()  # production: refuses to start without PostgreSQL and Kafka
    assert settings.environment == "production"
    url = make_url(settings.sqlalchemy_url)
    assert (url.get_backend_name(), url.host, url.database) == (
        "postgresql",
        "postgres",
        settings.database_name,
    )
    assert url.password == PASSWORD


@pytest.mark.parametrize("name", [*SERVICES, SIMULATOR])
def test_containers_listen_on_all_interfaces_at_the_published_port(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The container's command, run with uvicorn stubbed out: where would it listen?"""
    folder = IMAGE_OF[name]
    command = service(name).get("command") or image_cmd(folder)
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: calls.append(kwargs))
    use_only(monkeypatch, container_env(name))
    assert entry_point(folder, command[0])(command[1:]) == 0
    assert len(calls) == 1
    assert calls[0]["host"] == "0.0.0.0"
    assert {container for _, container in published_ports(name)} == {calls[0]["port"]}


@pytest.mark.parametrize("step", ["payout-worker", "payout-worker-migrate"])
def test_the_defaults_never_pay_production_through_the_simulator(
    step: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without Alipay configured, payout-worker (and its migrate step) refuses to start rather than run
    production through the simulator, which marks cashback paid and tells the buyer with no money moved."""
    unset: dict[str, str | None] = dict.fromkeys(ALIPAY_SETTINGS)
    use_only(monkeypatch, container_env(step, **unset))
    with pytest.raises(ValueError, match="the alipay provider needs"):
        settings_class("payout-worker")()
    use_only(monkeypatch, container_env(step, **unset, PAYOUT_WORKER_PROVIDER="simulator"))
    with pytest.raises(ValueError, match="production cannot pay through the simulator"):
        settings_class("payout-worker")()
    # A trial says so: development, and the simulator by name.
    trial = container_env(step, **unset, ENVIRONMENT="development", PAYOUT_WORKER_PROVIDER="simulator")
    use_only(monkeypatch, trial)
    settings = settings_class("payout-worker")()
    assert (settings.environment, getattr(settings, "provider", None)) == ("development", "simulator")


@pytest.mark.parametrize(
    ("name", "variable"),
    [
        ("case-api", "CASE_API_APPROVAL_SIGNING_KEY"),
        ("payout-worker", "PAYOUT_WORKER_APPROVAL_PUBLIC_KEYS"),
        ("payout-worker", "PAYOUT_WORKER_RESULT_SIGNING_KEY"),
        ("case-api", "CASE_API_PAYOUT_RESULT_PUBLIC_KEYS"),
    ],
)
def test_the_signing_keys_are_required(name: str, variable: str) -> None:
    with pytest.raises(AssertionError, match=f"set {variable}"):
        container_env(name, **{variable: None})


def test_postgres_creates_each_service_database() -> None:
    mounts = [str(v) for v in service("postgres").get("volumes", [])]
    init = [m.split(":")[0] for m in mounts if ":/docker-entrypoint-initdb.d/" in m]
    assert len(init) == 1, mounts
    sql = (ROOT / init[0]).read_text(encoding="utf-8")
    for folder in SERVICES:
        database_name = settings_class(folder).model_fields["database_name"].default
        assert re.search(rf"CREATE DATABASE {database_name}\s*;", sql), database_name
    assert "pg_isready" in healthcheck_command("postgres")


def test_case_api_keeps_evidence_in_a_named_volume() -> None:
    data_dir = image_env("case-api")["DATA_DIR"]
    volumes = [str(v) for v in service("case-api").get("volumes", [])]
    named = [v.split(":")[0] for v in volumes if v.split(":")[1] == data_dir]
    assert named and named[0] in (compose().get("volumes") or {}), volumes


def test_variables_have_their_documented_defaults() -> None:
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    found: dict[str, set[tuple[str, str]]] = {}
    for variable, op, arg in _VARIABLE.findall(text):
        found.setdefault(variable, set()).add((op, arg))
    assert found == EXPECTED_VARIABLES
    with pytest.raises(AssertionError, match="set POSTGRES_PASSWORD"):
        interpolate(service("postgres")["environment"]["POSTGRES_PASSWORD"], {})


def test_docker_compose_accepts_the_file() -> None:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker client on PATH")
    version = subprocess.run([docker, "compose", "version"], capture_output=True, text=True, check=False)
    if version.returncode != 0:
        pytest.skip(
            f"`docker compose version` exited {version.returncode}: the compose plugin is not installed"
        )
    env = {**os.environ, "POSTGRES_PASSWORD": PASSWORD, **OPERATOR}
    result = subprocess.run(
        [docker, "compose", "-f", str(COMPOSE_FILE), "config", "--quiet"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def scram_password(user: str) -> str:
    return environment_of("kafka")["SCRAM_PASSWORD_" + user.upper().replace("-", "_")]


@pytest.mark.parametrize("name", BUS_SERVICES)
def test_each_service_reaches_kafka_as_its_own_scram_user(name: str) -> None:
    env = container_env(name)
    prefix = env_prefix(name)
    assert (
        env["KAFKA_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT" and env["KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    )
    assert env[f"{prefix}KAFKA_USERNAME"] == name  # the principal its ACLs name (bus/acls.py)
    assert env[f"{prefix}KAFKA_PASSWORD"] == scram_password(name)
    assert service(name)["depends_on"].get(ACLS_STEP) == {"condition": "service_completed_successfully"}


def test_the_broker_knows_every_user_and_the_acl_step_runs_as_its_super_user() -> None:
    kafka = environment_of("kafka")
    assert set(kafka["SCRAM_USERS"].split()) == {"admin", *BUS_SERVICES, "warehouse"}
    assert service("kafka")["command"] == ["bash", "/opt/aftersales/compose-kafka.sh"]
    mounted = {v.split(":")[1]: v.split(":")[0] for v in service("kafka")["volumes"]}
    assert (
        ROOT / mounted["/opt/aftersales/compose-kafka.sh"]
    ).resolve() == ROOT / "infra/kafka/compose-kafka.sh"
    assert "--command-config" in healthcheck_command("kafka")
    step = service(ACLS_STEP)
    assert step["command"] == ["python", "-m", "aftersales_shared.bus.acls"] and step["restart"] == "no"
    assert step["depends_on"] == {"kafka": {"condition": "service_healthy"}}
    env = container_env(ACLS_STEP)
    assert (env["KAFKA_ADMIN_USERNAME"], env["KAFKA_ADMIN_PASSWORD"]) == ("admin", scram_password("admin"))
    for name in BUS_SERVICES:  # the same cluster and namespace as the services
        for key in ("KAFKA_BOOTSTRAP_SERVERS", "KAFKA_SECURITY_PROTOCOL", "KAFKA_TOPIC_PREFIX"):
            assert env[key] == container_env(name)[key], key


SASL = {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-512"}


async def until_the_broker_answers(
    servers: str, admin_password: str, broker: subprocess.Popen[bytes]
) -> None:
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.errors import KafkaError

    for _ in range(240):
        assert broker.poll() is None, "the broker exited"
        admin = AIOKafkaAdminClient(
            bootstrap_servers=servers,
            **SASL,
            sasl_plain_username="admin",
            sasl_plain_password=admin_password,
            request_timeout_ms=3000,
        )
        try:
            await admin.start()
            await admin.list_topics()
            return
        except KafkaError:
            await asyncio.sleep(0.5)
        finally:
            await admin.close()
    raise AssertionError("the compose broker did not answer")


async def services_on_the_broker(servers: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each service with compose's settings: its topics created and its events published as itself; the
    watcher refused a cashback approval; a client without credentials refused altogether."""
    from aftersales_shared.bus.factory import make_bus
    from aftersales_shared.bus.kafka import KafkaBus
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaConnectionError, TopicAuthorizationFailedError

    for name in BUS_SERVICES:
        # development: the same Kafka settings, without production's other requirements (keys, Alipay)
        env = container_env(name) | {"KAFKA_BOOTSTRAP_SERVERS": servers, "ENVIRONMENT": "development"}
        use_only(monkeypatch, env)
        bus = make_bus(settings_class(name)())
        assert isinstance(bus, KafkaBus) and bus.security.username == name
        try:
            await bus.ensure_topics()
            for topic in shared_topics.produced_by(name):
                await bus.publish(topic, "key", b"event")
        finally:
            await bus.stop()
    forger = AIOKafkaProducer(
        bootstrap_servers=servers,
        **SASL,
        sasl_plain_username="logistics-watcher",
        sasl_plain_password=container_env("logistics-watcher")["LOGISTICS_WATCHER_KAFKA_PASSWORD"],
        enable_idempotence=True,
    )
    await forger.start()
    try:
        with pytest.raises(TopicAuthorizationFailedError):
            await forger.send_and_wait(shared_topics.CASHBACK, b"a forged approval")
    finally:
        await forger.stop()
    anonymous = AIOKafkaProducer(bootstrap_servers=servers, request_timeout_ms=3000)
    with pytest.raises(KafkaConnectionError):
        await anonymous.start()
    await anonymous.stop()


@pytest.mark.kafka
def test_the_compose_broker_authenticates_and_the_acl_step_authorizes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """infra/kafka/compose-kafka.sh run here, the test broker's jars in place of the image's scripts, on free
    ports; then the `kafka-acls` step's command, and the services with the settings compose gives them."""
    from aftersales_testing import free_port, infra_missing

    lib = Path(os.environ.get("KAFKA_CACHE_DIR", ROOT / ".cache" / "kafka" / "lib"))
    if not shutil.which("java") or not list(lib.glob("kafka_2.13-*.jar")):
        infra_missing(
            "Java and the Kafka jars", "run `make kafka-up` once (infra/kafka/kafka.sh fetches them)"
        )
    shims = tmp_path / "bin"
    shims.mkdir()
    logging = f"-Dlog4j2.configurationFile={ROOT}/infra/kafka/log4j2.xml -Dkafka.log.level=WARN"
    for script, main_class, heap in (
        ("kafka-storage.sh", "kafka.tools.StorageTool", "256m"),
        ("kafka-server-start.sh", "kafka.Kafka", "512m"),
    ):
        (shims / script).write_text(
            f'#!/usr/bin/env bash\nexec java -Xmx{heap} -cp "{lib}/*" {logging} {main_class} "$@"\n'
        )
        (shims / script).chmod(0o755)
    port = free_port()
    servers = f"127.0.0.1:{port}"
    broker_env = environment_of("kafka") | {
        "PATH": os.environ["PATH"],
        "BROKER_BIN": str(shims),
        "BROKER_DATA": str(tmp_path / "data"),
        "BROKER_CONFIG": str(tmp_path / "config"),
        "ADVERTISED_HOST": "127.0.0.1",
        "BROKER_PORT": str(port),
        "CONTROLLER_PORT": str(free_port()),
    }
    log = tmp_path / "broker.log"
    with log.open("wb") as out:
        broker = subprocess.Popen(
            ["bash", str(ROOT / "infra" / "kafka" / "compose-kafka.sh")],
            env=broker_env,
            stdout=out,
            stderr=out,
            start_new_session=True,
        )
    try:
        acl_env = container_env(ACLS_STEP) | {"KAFKA_BOOTSTRAP_SERVERS": servers}
        try:
            asyncio.run(until_the_broker_answers(servers, acl_env["KAFKA_ADMIN_PASSWORD"], broker))
        except AssertionError as exc:
            raise AssertionError(f"{exc}:\n{log.read_text()[-3000:]}") from None
        command = service(ACLS_STEP)["command"]
        assert command[0] == "python"
        step = subprocess.run(
            [sys.executable, *command[1:]],
            env={**os.environ, **acl_env},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert step.returncode == 0, step.stderr
        asyncio.run(services_on_the_broker(servers, monkeypatch))
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(broker.pid, signal.SIGTERM)
        try:
            broker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(broker.pid, signal.SIGKILL)
            broker.wait()
