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


async def test_an_idle_connection_stays_open_longer_than_clients_keep_theirs(tmp_path: Path) -> None:
    """A client (httpx: 5 s) or load balancer reuses an idle connection until its own keep-alive ends; a
    server that closed it first would reset the request sent on it. The services keep it 75 s."""
    async with running_stack("embedded", tmp_path) as stack:
        url = stack.clients["case-api"].base_url
        reader, writer = await asyncio.open_connection(url.host, url.port)
        request = f"GET /healthz HTTP/1.1\r\nHost: {url.host}\r\n\r\n".encode()
        try:
            for pause in (0, 6):  # uvicorn's own default closes after 5 s idle
                await asyncio.sleep(pause)
                writer.write(request)
                await writer.drain()
                status = await asyncio.wait_for(reader.readline(), timeout=10)
                assert status.startswith(b"HTTP/1.1 200"), (pause, status)
                length = 0
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                await reader.readexactly(length)
        finally:
            writer.close()
