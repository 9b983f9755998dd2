"""The deployment files say what they promise: a hardened systemd unit, a non-root image, a compose file that
publishes on loopback only, and an env example that documents every setting and only real ones."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from service.config import Settings

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
UNIT = DEPLOY / "nijifeed.service"
DOCKERFILE = DEPLOY / "Dockerfile"
COMPOSE = DEPLOY / "compose.yaml"
ENV_EXAMPLE = ROOT / "config" / "nijifeed.env.example"

#: Environment variables that are not settings but that the service reads.
OTHER_KEYS = {"NIJIFEED_CONFIG"}
SETTINGS_KEYS = {f"NIJIFEED_{name.upper()}" for name in Settings.model_fields}
KNOWN_KEYS = SETTINGS_KEYS | OTHER_KEYS


# ------------------------------------------------------------------------------------------------ systemd


def parse_unit(text: str) -> dict[str, list[tuple[str, str]]]:
    """A unit file as {section: [(key, value), ...]}: like configparser, but keys may repeat (systemd
    accumulates SystemCallFilter=, Environment=, ...) and an empty value is an assignment too."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        assert current is not None, f"line {number}: a setting outside any section"
        assert "=" in line, f"line {number}: not KEY=VALUE: {raw!r}"
        assert not line.endswith("\\"), f"line {number}: keep settings on one line"
        key, value = line.split("=", 1)
        current.append((key.strip(), value.strip()))
    return sections


def values(section: list[tuple[str, str]], key: str) -> list[str]:
    return [v for k, v in section if k == key]


def one(section: list[tuple[str, str]], key: str) -> str:
    found = values(section, key)
    assert found, f"{key}= is missing"
    return found[-1]  # the last assignment wins for single-valued settings


def yes(value: str) -> bool:
    return value.lower() in ("yes", "true", "1", "on")


@pytest.fixture(scope="module")
def unit() -> dict[str, list[tuple[str, str]]]:
    return parse_unit(UNIT.read_text())


def test_unit_runs_the_daemon_with_the_env_file(unit):
    service = unit["Service"]
    assert one(service, "ExecStart") == "/opt/nijifeed/.venv/bin/nijifeed run"
    assert one(service, "EnvironmentFile") == "/etc/nijifeed/nijifeed.env"
    assert one(service, "Restart") == "on-failure"
    assert one(service, "RestartSec")
    assert one(service, "TimeoutStopSec") == "20"
    assert one(service, "KillSignal") == "SIGTERM"
    assert one(service, "StateDirectory") == "nijifeed"
    assert "multi-user.target" in one(unit["Install"], "WantedBy")
    assert "network-online.target" in one(unit["Unit"], "After")
    for assignment in values(service, "Environment"):
        key = assignment.split("=", 1)[0]
        assert key in KNOWN_KEYS or not key.startswith("NIJIFEED_"), f"unknown setting {key} in the unit"


def test_unit_is_hardened(unit):
    service = unit["Service"]
    dynamic = yes(values(service, "DynamicUser")[-1]) if values(service, "DynamicUser") else False
    user = values(service, "User")
    assert dynamic or (user and user[-1] not in ("root", "0")), "runs as root: set User= or DynamicUser=yes"
    assert one(service, "ProtectSystem") == "strict"
    for key in ("ProtectHome", "PrivateTmp", "NoNewPrivileges", "PrivateDevices", "RestrictSUIDSGID"):
        assert yes(one(service, key)), f"{key}= should be yes"
    assert "/var/lib/nijifeed" in one(service, "ReadWritePaths").split()
    assert set(one(service, "RestrictAddressFamilies").split()) == {"AF_INET", "AF_INET6", "AF_UNIX"}
    assert values(service, "CapabilityBoundingSet") and all(v == "" for v in values(service, "CapabilityBoundingSet"))
    filters = " ".join(values(service, "SystemCallFilter")).split()
    assert "@system-service" in filters


def test_unit_passes_systemd_analyze_verify(tmp_path):
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip(
            "systemd-analyze is not installed on this machine; the unit's content is still checked by the other "
            "unit tests (this is not a missing feature)"
        )
    # The unit names /opt/nijifeed/.venv/bin/nijifeed, which `verify` requires to exist; on a machine where
    # nijifeed is not installed there, verify a copy whose ExecStart names an executable that does exist.
    text = UNIT.read_text()
    if not Path("/opt/nijifeed/.venv/bin/nijifeed").exists():
        text = text.replace("ExecStart=/opt/nijifeed/.venv/bin/nijifeed run", f"ExecStart={sys.executable} -V")
    copy = tmp_path / "nijifeed.service"
    copy.write_text(text)
    done = subprocess.run([tool, "verify", str(copy)], capture_output=True, text=True, timeout=60)
    output = done.stdout + done.stderr
    ours = [line for line in output.splitlines() if "nijifeed.service" in line]
    if done.returncode != 0 and not ours:
        pytest.skip(f"systemd-analyze cannot run here (not a problem of the unit): {output.strip()[:300]}")
    assert done.returncode == 0 and not ours, output

    # The exposure score, where this systemd can compute it offline (systemd 252+).
    done = subprocess.run(
        [tool, "security", "--offline=yes", "--no-pager", str(copy)], capture_output=True, text=True, timeout=60
    )
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+)", done.stdout + done.stderr)
    if match:
        assert float(match.group(1)) <= 3.0, done.stdout[-2000:]


# ------------------------------------------------------------------------------------------------ Dockerfile


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        name, _, args = full.partition(" ")
        instructions.append((name.upper(), args.strip()))
    assert not pending, "the Dockerfile ends inside a continued line"
    return instructions


def test_dockerfile_base_image_is_pinned():
    bases = [
        next(token for token in args.split() if not token.startswith("--"))
        for name, args in dockerfile_instructions()
        if name == "FROM"
    ]
    assert bases, "no FROM"
    for base in bases:
        image = base.split("@")[0]
        last = image.rsplit("/", 1)[-1]
        tag = last.split(":", 1)[1] if ":" in last else ""
        assert tag and tag != "latest", f"base image {base!r} must name a tag other than latest"
    assert bases[0].startswith("python:3.11-slim")


def test_dockerfile_runs_as_non_root():
    instructions = dockerfile_instructions()
    users = [args for name, args in instructions if name == "USER"]
    assert users, "no USER: the container would run as root"
    assert users[-1].split(":")[0] not in ("root", "0")
    last_user = max(i for i, (name, _) in enumerate(instructions) if name == "USER")
    cmd = [i for i, (name, _) in enumerate(instructions) if name in ("CMD", "ENTRYPOINT")]
    assert cmd and min(cmd) > last_user, "CMD/ENTRYPOINT should come after the last USER"


def test_dockerfile_layout():
    instructions = dockerfile_instructions()
    by_name: dict[str, list[str]] = {}
    for name, args in instructions:
        by_name.setdefault(name, []).append(args)
    assert json.loads(by_name["CMD"][-1]) == ["nijifeed", "run"]
    assert "8000" in " ".join(by_name["EXPOSE"]).split()
    volumes = json.loads(by_name["VOLUME"][-1])
    assert {"/data", "/models"} <= set(volumes)
    assert any("pip install" in args and " ." in args for args in by_name["RUN"])
    env = " ".join(by_name["ENV"])
    assert "NIJIFEED_DATA_DIR=/data" in env
    for key in re.findall(r"\b(NIJIFEED_[A-Z0-9_]+)=", env):
        assert key in KNOWN_KEYS, f"unknown setting {key} in the Dockerfile"
    assert "/healthz" in " ".join(by_name.get("HEALTHCHECK", []))
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text()
    assert "**" in ignore.split() and "!service/" in ignore.split()  # only what `pip install .` needs


# ------------------------------------------------------------------------------------------------ compose


def test_compose_publishes_on_loopback_only_text():
    """Without PyYAML: every published port line binds 127.0.0.1."""
    text = COMPOSE.read_text()
    ports = re.findall(r'^\s*-\s*"?(\S+?:\d+:\d+)"?\s*(?:#.*)?$', text, re.MULTILINE)
    assert ports, "no published ports found"
    assert all(p.startswith("127.0.0.1:") for p in ports), ports


def test_compose_file():
    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed (pip install pyyaml): compose not parsed")
    compose = yaml.safe_load(COMPOSE.read_text())
    service = compose["services"]["nijifeed"]
    assert service["restart"] == "unless-stopped"
    assert service["env_file"], "settings must come from an env file"
    env_files = service["env_file"] if isinstance(service["env_file"], list) else [service["env_file"]]
    assert all(not str(f).endswith(".example") for f in env_files), "point env_file at the private copy"
    build = service["build"]
    assert (COMPOSE.parent / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE

    ports = service["ports"]
    for port in ports:
        spec = port if isinstance(port, str) else f"{port.get('host_ip')}:{port.get('published')}:{port['target']}"
        assert spec.startswith("127.0.0.1:"), f"port {port!r} is published beyond this machine"

    volumes = {}
    for volume in service["volumes"]:  # SOURCE:TARGET[:MODE]; SOURCE may be ${VAR:-default}, colons and all
        mode: list[str] = []
        if volume.rsplit(":", 1)[-1] in ("ro", "rw"):
            volume, flag = volume.rsplit(":", 1)
            mode = [flag]
        source, target = volume.rsplit(":", 1)
        volumes[target] = (source, mode)
    assert "/data" in volumes and volumes["/data"][1] == []
    assert "/models" in volumes and volumes["/models"][1] == ["ro"], "models must be mounted read-only"
    for key in service.get("environment", {}):
        assert key in KNOWN_KEYS, f"unknown setting {key} in compose"
    assert service.get("security_opt") and "no-new-privileges:true" in service["security_opt"]


# ------------------------------------------------------------------------------------------------ env example


def env_example() -> list[tuple[str, str, bool]]:
    """(KEY, value, active) for each NIJIFEED_ line, commented out (`# KEY=value`) or not."""
    entries = []
    for raw in ENV_EXAMPLE.read_text().splitlines():
        match = re.match(r"^(#\s*)?(NIJIFEED_[A-Z0-9_]+)=(.*)$", raw.strip())
        if match:
            entries.append((match.group(2), match.group(3), match.group(1) is None))
    return entries


def test_env_example_keys_are_real_settings():
    keys = [key for key, _, _ in env_example()]
    assert len(keys) == len(set(keys)), "a key appears twice"
    unknown = sorted(set(keys) - KNOWN_KEYS)
    assert not unknown, f"not a Settings field nor a planned setting: {unknown}"


def test_env_example_documents_every_setting():
    keys = {key for key, _, _ in env_example()}
    missing = sorted(SETTINGS_KEYS - keys)
    assert not missing, f"document these in config/nijifeed.env.example: {missing}"


def from_env(monkeypatch, key: str, value: str) -> Settings:
    """Settings as the service builds them with this one line of the env file in its environment."""
    with monkeypatch.context() as patch:
        patch.setenv(key, value)
        return Settings()


def test_env_example_values_are_valid_and_portable(monkeypatch):
    for key, value, _active in env_example():
        assert value == value.strip() and value, f"{key}: give an example value"
        assert not (value[0] in "\"'" or value[-1] in "\"'"), f"{key}: no quotes (systemd and Docker differ)"
        assert " #" not in value, f"{key}: no trailing comments (systemd keeps them in the value)"
        if key in SETTINGS_KEYS:  # the value shown must be accepted by the setting it documents
            from_env(monkeypatch, key, value)
    for raw in ENV_EXAMPLE.read_text().splitlines():
        assert not raw.lstrip("# ").startswith("export "), "no `export` (systemd's EnvironmentFile rejects it)"


def test_env_example_shows_defaults_where_settings_have_them(monkeypatch):
    """A commented-out line shows the default, so uncommenting it alone changes nothing."""
    for key, value, active in env_example():
        if active or key not in SETTINGS_KEYS:
            continue
        field = key.removeprefix("NIJIFEED_").lower()
        info = Settings.model_fields[field]
        if info.default is None or info.default_factory is not None:
            continue  # optional paths and computed defaults show an example instead
        assert from_env(monkeypatch, key, value).model_dump()[field] == Settings().model_dump()[field], key


# ------------------------------------------------------------------------------------------------ issue 10: the token


class Unset(Exception):
    """What compose does for ``${VAR:?message}`` when VAR is unset or empty: refuse, with the message."""


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's interpolation of ``$$``, ``$VAR``, ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``,
    ``${VAR:?message}`` and ``${VAR?message}`` (the compose specification's forms), on the file's text."""

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group("name") or match.group("bare")
        op, arg = match.group("op") or "", match.group("arg") or ""
        value = env.get(name)
        missing = value is None or (op.startswith(":") and value == "")
        if op.endswith("?") and missing:
            raise Unset(f"required variable {name} is missing a value: {arg}")
        if op.endswith("-") and missing:
            return arg
        return value or ""

    pattern = r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}|\$(?P<bare>[A-Za-z_]\w*)"
    return re.sub(pattern, one, text)


def env_file(text: str) -> dict[str, str]:
    """KEY=value lines, as compose's --env-file and env_file: read them."""
    pairs = (line.split("=", 1) for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


def container_settings(compose_text: str, env_text: str, monkeypatch) -> Settings:
    """The Settings nijifeed builds inside the container: the env file, then compose's ``environment:``."""
    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed (pip install pyyaml): compose not parsed")
    compose = yaml.safe_load(interpolate(compose_text, env_file(env_text)))
    environment = {**env_file(env_text), **{k: str(v) for k, v in compose["services"]["nijifeed"]["environment"].items()}}
    with monkeypatch.context() as patch:
        for key, value in environment.items():
            patch.setenv(key, value)
        return Settings()


def test_compose_requires_the_web_token_with_a_message():
    """Issue 10: compose as documented crash-looped (0.0.0.0 inside, no token, nijifeed refusing to start). Now
    compose itself refuses at `up` time, with a message saying where to set it."""
    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed (pip install pyyaml): compose not parsed")
    text = COMPOSE.read_text()
    environment = yaml.safe_load(text)["services"]["nijifeed"]["environment"]
    match = re.fullmatch(r"\$\{NIJIFEED_WEB_TOKEN:\?(?P<message>[^}]+)\}", str(environment.get("NIJIFEED_WEB_TOKEN")))
    assert match, "NIJIFEED_WEB_TOKEN must be ${NIJIFEED_WEB_TOKEN:?message} (`:?` refuses an empty value too)"
    message = match.group("message")
    assert "deploy/nijifeed.env" in message and "--env-file" in message and "README" in message, message

    example = ENV_EXAMPLE.read_text()
    for env in ({}, env_file(example), {"NIJIFEED_WEB_TOKEN": ""}):  # unset, the example as copied, left empty
        with pytest.raises(Unset, match="set NIJIFEED_WEB_TOKEN in deploy/nijifeed.env"):
            interpolate(text, env)
    resolved = yaml.safe_load(interpolate(text, {"NIJIFEED_WEB_TOKEN": "0123abcd" * 8}))
    assert resolved["services"]["nijifeed"]["environment"]["NIJIFEED_WEB_TOKEN"] == "0123abcd" * 8
    # The documented command passes the env file to compose itself, or the token in it is not seen.
    readme = (DEPLOY / "README.md").read_text()
    commands = re.findall(r"docker compose[^\n`]*", readme)
    assert commands and all("--env-file deploy/nijifeed.env" in c for c in commands), commands
    assert all("--env-file deploy/nijifeed.env" in line for line in text.splitlines() if "docker compose" in line)


def test_compose_with_the_token_starts_and_without_it_would_crash_loop(monkeypatch):
    """What the container's nijifeed sees: with the token in the env file, it may bind 0.0.0.0; the same file
    with compose's token line removed reproduces the refusal that made the container restart forever."""
    from service.config import ConfigError
    from service.web.security import check_exposure

    token_line = "NIJIFEED_WEB_TOKEN=" + "f00d" * 16
    env_text = ENV_EXAMPLE.read_text() + "\n" + token_line + "\n"
    settings = container_settings(COMPOSE.read_text(), env_text, monkeypatch)
    assert settings.web_host == "0.0.0.0" and settings.data_dir == Path("/data")
    check_exposure(settings)  # no error: the daemon starts

    old = re.sub(r"^\s*NIJIFEED_WEB_TOKEN:.*$", "", COMPOSE.read_text(), flags=re.MULTILINE)
    settings = container_settings(old, ENV_EXAMPLE.read_text(), monkeypatch)
    with pytest.raises(ConfigError, match="NIJIFEED_WEB_TOKEN"):
        check_exposure(settings)


def test_compose_requires_a_token_whenever_it_binds_beyond_loopback():
    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed (pip install pyyaml): compose not parsed")
    from service.web.security import is_loopback

    environment = yaml.safe_load(COMPOSE.read_text())["services"]["nijifeed"]["environment"]
    if not is_loopback(str(environment.get("NIJIFEED_WEB_HOST", "127.0.0.1"))):
        assert ":?" in str(environment.get("NIJIFEED_WEB_TOKEN", "")), "a non-loopback bind needs a required token"


# ------------------------------------------------------------------------------------------------ issue 10: README


def test_unit_runs_doctor_first_or_the_readme_says_why_not(unit):
    pre = " ".join(values(unit["Service"], "ExecStartPre"))
    readme = (DEPLOY / "README.md").read_text()
    if "doctor" not in pre:
        assert re.search(r"[Ww]hy the unit does not run `doctor`", readme) and "ExecStartPre=" in readme
        assert "ExecStartPre" in UNIT.read_text(), "say in the unit too why doctor is not run before start"


def test_deploy_readme_walks_from_zero():
    """Developer portal (Project, App, permissions, callback URL, read credits), then init, doctor, the unit."""
    readme = (DEPLOY / "README.md").read_text()
    for needed in ("Project", "App", "App permissions", "Read and write", "Callback URI", "read credits",
                   "NIJIFEED_X_CLIENT_ID", "NIJIFEED_WEB_TOKEN", "/?token=", "/feed.atom?token="):
        assert needed in readme, needed
    if "x_redirect_uri" in Settings.model_fields:  # the callback URL registered must be the one login sends
        default = Settings.model_fields["x_redirect_uri"].default
        assert f"`{default}`" in readme, f"the callback URL to register should be NIJIFEED_X_REDIRECT_URI's {default}"
    systemd = readme[readme.index("## 2a. systemd"):readme.index("## 2b.")]
    steps = [systemd.index(step) for step in ("nf init", "nf doctor", "systemctl enable --now nijifeed")]
    assert steps == sorted(steps), "init, then doctor, then enable the unit"
    compose = readme[readme.index("## 2b."):]
    steps = [compose.index(step) for step in ("NIJIFEED_WEB_TOKEN=", "nijifeed init", "nijifeed doctor", "nfc up -d")]
    assert steps == sorted(steps), "the token, init, doctor, then up"
    alias = re.search(r"alias nfc='([^']+)'", readme)
    assert alias and "--env-file deploy/nijifeed.env" in alias.group(1) and "-f deploy/compose.yaml" in alias.group(1)
