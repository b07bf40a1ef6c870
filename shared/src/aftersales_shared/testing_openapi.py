"""Test support for the OpenAPI contract: what every service's document must say, its self-hosted docs
pages, and a typed client generated from it (openapi-python-client) to run a flow with."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
from fastapi import FastAPI

from .openapi import STATUSES
from .problems import PROBLEM_JSON


def check_document(app: FastAPI) -> dict[str, Any]:
    """Assert what a client generator and a reader need, and return the document."""
    document = app.openapi()
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearer"] == {**schemes["bearer"], "type": "http", "scheme": "bearer"}
    assert "HTTPValidationError" not in json.dumps(document), "FastAPI's {detail} is never sent"
    ids = [op["operationId"] for path in document["paths"].values() for op in path.values()]
    assert len(ids) == len(set(ids)), "operation ids are unique"
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            where = f"{method.upper()} {path}"
            assert "authorization" not in {p["name"].lower() for p in operation.get("parameters", [])}, where
            for code, response in operation["responses"].items():
                if int(code) < 400:
                    continue
                assert int(code) in STATUSES, f"{where}: {code} is documented"
                assert list(response["content"]) == [PROBLEM_JSON], f"{where} {code}"
                examples = response["content"][PROBLEM_JSON]["examples"]
                assert all(e["value"]["status"] == int(code) for e in examples.values()), f"{where} {code}"
            if "requestBody" in operation:
                assert {"400", "413", "422"} <= set(operation["responses"]), where
            if operation.get("security"):
                assert {"401", "403"} <= set(operation["responses"]), where
    return document


async def check_docs_pages(client: httpx.AsyncClient) -> None:
    """/docs and /redoc load their scripts from the service, and the service serves them."""
    for page, assets in (
        ("/docs", ["swagger-ui-bundle.js", "swagger-ui.css"]),
        ("/redoc", ["redoc.standalone.js"]),
    ):
        html = (await client.get(page)).text
        for asset in assets:
            assert f'"/docs-assets/{asset}"' in html, (page, asset)
            served = await client.get(f"/docs-assets/{asset}")
            assert served.status_code == 200 and len(served.content) > 10_000, asset
        assert "cdn.jsdelivr.net" not in html and "fonts.googleapis.com" not in html, page


def generate_client(app: FastAPI, folder: Path, package: str) -> ModuleType:
    """Generate a typed client package from the app's document with openapi-python-client, and import it."""
    spec = folder / "openapi.json"
    spec.write_text(json.dumps(app.openapi()))
    config = folder / "generator.json"
    config.write_text(json.dumps({"package_name_override": package, "post_hooks": []}))
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "openapi-python-client"),
            "generate",
            "--path",
            str(spec),
            "--output-path",
            str(folder / package),
            "--meta",
            "none",
            "--config",
            str(config),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Warning" not in done.stdout, done.stdout  # every operation and model became code
    sys.path.insert(0, str(folder))
    try:
        return importlib.import_module(package)
    finally:
        sys.path.remove(str(folder))


def typed_client(module: ModuleType, app: FastAPI, token: str) -> Any:
    """The generated AuthenticatedClient, talking to the app in-process with this key."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return module.AuthenticatedClient(
        base_url="http://test",
        token=token,
        httpx_args={"transport": transport},
        raise_on_unexpected_status=True,
    )
