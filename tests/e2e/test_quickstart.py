"""README's quickstart, run as written against a stack `make run` starts (scripts/run.py, embedded)."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

from aftersales_testing import free_port

from .harness import ROOT, running_stack


def quickstart() -> str:
    """The bash block of README's Quickstart section."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1, "one block to copy"
    return blocks[0]


async def test_the_quickstart_runs_as_written(tmp_path: Path) -> None:
    async with running_stack("embedded", tmp_path) as stack:
        api = stack.clients["case-api"]
        key = api.headers["Authorization"].removeprefix("Bearer ")
        work = tmp_path / "work"
        work.mkdir()
        (work / "scripts").symlink_to(ROOT / "scripts")
        process = await asyncio.create_subprocess_exec(
            "bash",
            "-euo",
            "pipefail",
            "-c",
            quickstart(),
            cwd=work,
            env={
                "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
                "KEY": key,
                "API": str(api.base_url).rstrip("/"),
                "RECEIVER_PORT": str(free_port()),
            },
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await asyncio.wait_for(process.communicate(), timeout=120)
        text = output.decode()
        assert process.returncode == 0, f"{text}\n{stack.tail()}"
        assert '"remedy":"return_refund"' in text and '"eligible":true' in text, text
        assert {"approved", "awaiting_return"} & set(text.splitlines()), text  # the status step 5 printed
        deliveries = (work / "webhook.log").read_text().splitlines()
        kinds = {line.split()[2] for line in deliveries if line.startswith("verified ")}
        assert kinds == {"aftersales.case.opened.v1", "aftersales.case.approved.v1"}, deliveries
        assert not any(line.startswith("REFUSED") for line in deliveries), deliveries
        assert stack.server_errors == []
