"""`make run`: start every service (migrating each database first), print the docs URLs, the development
API key and the console's URL and first admin, and stop them all on Ctrl-C (or SIGTERM) or when one of
them dies.

Each service listens on its `<SERVICE>_PORT` (CASE_API_PORT..., OPS_CONSOLE_PORT; the simulator's
PAYOUT_SIMULATOR_PORT)."""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DEFAULT_PORTS = {
    "case-api": 8000,
    "logistics-watcher": 8001,
    "payout-worker": 8002,
    "ops-console": 8003,
    "payout-simulator": 8009,
}


def port_variable(name: str) -> str:
    return name.upper().replace("-", "_") + "_PORT"


def ports(env: dict[str, str]) -> dict[str, int]:
    return {name: int(env.get(port_variable(name), default)) for name, default in DEFAULT_PORTS.items()}


def dev_key(data_dir: Path) -> str:
    """DEV_API_KEY if set, else a key made once for this data folder and kept beside it."""
    if key := os.environ.get("DEV_API_KEY"):
        return key
    path = data_dir / "dev-api-key"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        path.write_text("dev_" + secrets.token_urlsafe(24))
        path.chmod(0o600)
    return path.read_text().strip()


def approval_keys(env: dict[str, str]) -> None:
    """payout-worker pays only approvals signed by case-api, and case-api applies only payout results
    signed by payout-worker: for each pair (aftersales_shared.signing.PAIRS) whose private key is set and
    whose public keys are not, give the reader that key's public half. With neither, both services use the
    pair in DATA_DIR."""
    from aftersales_shared.signing import PAIRS, parse_private_key, public_text

    for pair in ("approval", "payout-result"):
        private_setting, public_setting = PAIRS[pair]
        private = env.get(private_setting)
        if private and not env.get(public_setting):
            env[public_setting] = public_text(parse_private_key(private).public_key())


def staff_token_keys(env: dict[str, str], data_dir: Path) -> None:
    """The services accept the staff tokens ops-console signs: give them the public half of the console's
    key (OPS_CONSOLE_TOKEN_SIGNING_KEY, or the pair the console keeps in DATA_DIR), unless
    STAFF_TOKEN_PUBLIC_KEYS is set already."""
    if env.get("STAFF_TOKEN_PUBLIC_KEYS"):
        return
    from aftersales_shared.signing import dev_key, parse_private_key, public_text
    from ops_console.tokens import DEV_PRIVATE_FILE, DEV_PUBLIC_FILE

    private = env.get("OPS_CONSOLE_TOKEN_SIGNING_KEY")
    key = parse_private_key(private) if private else dev_key(data_dir, DEV_PRIVATE_FILE, DEV_PUBLIC_FILE)
    env["STAFF_TOKEN_PUBLIC_KEYS"] = public_text(key.public_key())


def dev_admin_password(data_dir: Path) -> str:
    """DEV_ADMIN_PASSWORD if set, else a password made once for this data folder and kept beside it: the
    console's first admin (`admin`) gets it when the console has no account yet."""
    if password := os.environ.get("DEV_ADMIN_PASSWORD"):
        return password
    path = data_dir / "dev-admin-password"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(12))
        path.chmod(0o600)
    return path.read_text().strip()


def wait_healthy(port: int, proc: subprocess.Popen[bytes], timeout: float = 120) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                return True
        except OSError:
            time.sleep(0.2)
    return False


def kafka_credentials_note(env: dict[str, str]) -> str | None:
    """A hint when Kafka is named without any security settings (the broker of `make kafka-up` wants SASL)."""
    if env.get("KAFKA_BOOTSTRAP_SERVERS") and not env.get("KAFKA_SECURITY_PROTOCOL"):
        return (
            "note: KAFKA_SECURITY_PROTOCOL is not set: the services connect without credentials, which "
            'the broker of `make kafka-up` refuses; eval "$(infra/kafka/kafka.sh env)" first'
        )
    return None


CONSOLE_WEB = ROOT / "services" / "ops-console" / "web"
CONSOLE_SOURCES = (
    "package.json",
    "package-lock.json",
    "index.html",
    "vite.config.ts",
    "tsconfig.json",
    "src",
    "public",
)


def digest(web: Path, names: tuple[str, ...]) -> str:
    """One hash over the named files and folders of the web app (paths and contents)."""
    sha = hashlib.sha256()
    for name in names:
        top = web / name
        for path in sorted([top] if top.is_file() else top.rglob("*") if top.is_dir() else []):
            if path.is_file():
                sha.update(path.relative_to(web).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return sha.hexdigest()


def build_console(web: Path = CONSOLE_WEB) -> bool:
    """Build the console's web app (`npm ci` from the committed lockfile, then `npm run build`) when its
    sources changed since the last build; npm ci only when the lockfile did. False when it could not."""
    stamp, built = web / "dist" / ".sources-sha256", digest(web, CONSOLE_SOURCES)
    if stamp.exists() and stamp.read_text() == built:
        return True
    npm = shutil.which("npm")
    if npm is None:
        print(
            "ops-console: npm not found (install Node.js 20); the console's web app is not built",
            file=sys.stderr,
        )
        return False
    installed, lock = web / "node_modules" / ".lock-sha256", digest(web, ("package-lock.json",))
    steps = (
        []
        if installed.exists() and installed.read_text() == lock
        else [[npm, "ci", "--no-audit", "--no-fund"]]
    )
    print("ops-console: building the web app (its sources changed)", file=sys.stderr, flush=True)
    for step in [*steps, [npm, "run", "build"]]:
        if subprocess.run(step, cwd=web, stdout=2).returncode != 0:  # npm's output on stderr
            print(f"ops-console: `{' '.join(step[1:])}` failed; the web app is not built", file=sys.stderr)
            return False
        if step[1] == "ci":
            installed.parent.mkdir(exist_ok=True)
            installed.write_text(lock)
    stamp.write_text(built)
    return True


def main() -> int:
    env = dict(os.environ)
    data_dir = Path(env.setdefault("DATA_DIR", str(ROOT / ".data"))).resolve()
    env["DATA_DIR"] = str(data_dir)
    env["DEV_API_KEY"] = dev_key(data_dir)
    approval_keys(env)
    staff_token_keys(env, data_dir)
    env["DEV_ADMIN_PASSWORD"] = dev_admin_password(data_dir)
    build_console()  # when it fails the console says how to build it; the services run all the same
    if note := kafka_credentials_note(env):
        print(note, file=sys.stderr)
    services = ports(env)
    env.setdefault("PAYOUT_WORKER_SIMULATOR_URL", f"http://127.0.0.1:{services['payout-simulator']}")
    for service in ("case-api", "logistics-watcher", "payout-worker"):  # the console's proxy
        env.setdefault(
            f"OPS_CONSOLE_{service.upper().replace('-', '_')}_URL", f"http://127.0.0.1:{services[service]}"
        )
    procs: list[subprocess.Popen[bytes]] = []

    def stop(*_: object) -> None:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()

    signal.signal(signal.SIGTERM, lambda *_: (stop(), sys.exit(0)))
    try:
        for name, port in services.items():
            procs.append(
                subprocess.Popen(
                    [str(BIN / name), "serve"], env={**env, port_variable(name): str(port)}, cwd=ROOT
                )
            )
        for (name, port), proc in zip(services.items(), procs, strict=True):
            if not wait_healthy(port, proc):
                print(f"{name} did not start; see its log above", file=sys.stderr)
                stop()
                return 1
        mode = (
            "Kafka at " + env["KAFKA_BOOTSTRAP_SERVERS"]
            if env.get("KAFKA_BOOTSTRAP_SERVERS")
            else f"the embedded event log in {data_dir}"
        )
        database = "PostgreSQL" if env.get("DATABASE_URL") else f"SQLite in {data_dir}"
        print(
            "\n".join(
                [
                    "",
                    "After-sales platform is up:",
                    *(
                        f"  {name:<18} http://127.0.0.1:{port}/docs"
                        for name, port in services.items()
                        if name != "ops-console"
                    ),
                    f"  ops-console        http://127.0.0.1:{services['ops-console']}/   (support workbench)",
                    f"  database           {database}",
                    f"  events             {mode}",
                    f"  dev API key        {env['DEV_API_KEY']}   (Authorization: Bearer <key>)",
                    f"  console sign-in    admin / {env['DEV_ADMIN_PASSWORD']}   (the first admin, made "
                    "while the console has no account)",
                    "Ctrl-C stops everything.",
                    "",
                ]
            ),
            flush=True,
        )
        while all(proc.poll() is None for proc in procs):
            time.sleep(0.5)
        print("a service stopped; stopping the others", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        stop()


if __name__ == "__main__":
    if sys.argv[1:] == ["build-console"]:
        raise SystemExit(0 if build_console() else 1)
    raise SystemExit(main())
