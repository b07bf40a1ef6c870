"""scripts/run.py's `build_console`: `make run` builds the console's web app only when its sources changed,
and runs `npm ci` only when the lockfile did."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from .test_run_script import run_script

NPM = """#!/bin/sh
echo "$@" >> "$NPM_CALLS"
if [ "$1 $2" = "run build" ]; then mkdir -p dist && echo built > dist/index.html; fi
exit "${NPM_EXIT:-0}"
"""


@pytest.fixture
def web(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A web app folder and an `npm` on PATH that records what it is asked."""
    app = tmp_path / "web"
    (app / "src").mkdir(parents=True)
    (app / "package.json").write_text("{}")
    (app / "package-lock.json").write_text('{"lockfileVersion": 3}')
    (app / "src" / "main.tsx").write_text("export {};")
    tools = tmp_path / "bin"
    tools.mkdir()
    npm = tools / "npm"
    npm.write_text(NPM)
    npm.chmod(npm.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tools}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("NPM_CALLS", str(tmp_path / "calls"))
    return app


def calls(web: Path) -> list[str]:
    path = web.parent / "calls"
    lines = path.read_text().splitlines() if path.exists() else []
    path.unlink(missing_ok=True)
    return lines


class TestBuildConsole:
    def test_builds_once_and_again_only_when_a_source_changes(self, web: Path) -> None:
        build = run_script().build_console
        assert build(web)
        assert calls(web) == ["ci --no-audit --no-fund", "run build"]
        assert (web / "dist" / "index.html").exists()
        assert build(web)
        assert calls(web) == []
        (web / "dist" / "assets").mkdir()  # what a build writes is not a source
        (web / "node_modules" / "x").mkdir(parents=True)
        assert build(web)
        assert calls(web) == []
        (web / "src" / "main.tsx").write_text("export const changed = 1;")
        assert build(web)
        assert calls(web) == ["run build"]
        (web / "src" / "new.ts").write_text("export {};")
        assert build(web)
        assert calls(web) == ["run build"]

    def test_a_changed_lockfile_installs_again(self, web: Path) -> None:
        build = run_script().build_console
        assert build(web)
        calls(web)
        (web / "package-lock.json").write_text('{"lockfileVersion": 3, "packages": {}}')
        assert build(web)
        assert calls(web) == ["ci --no-audit --no-fund", "run build"]

    def test_a_failed_build_is_tried_again_next_time(
        self, web: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        build = run_script().build_console
        monkeypatch.setenv("NPM_EXIT", "1")
        assert not build(web)
        assert "`ci --no-audit --no-fund` failed" in capsys.readouterr().err
        assert calls(web) == ["ci --no-audit --no-fund"]
        monkeypatch.delenv("NPM_EXIT")
        assert build(web)
        assert calls(web) == ["ci --no-audit --no-fund", "run build"]

    def test_without_npm_it_says_what_to_install(
        self, web: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        monkeypatch.setenv("PATH", str(web))  # no npm there
        assert not run_script().build_console(web)
        assert "npm not found (install Node.js 20)" in capsys.readouterr().err
