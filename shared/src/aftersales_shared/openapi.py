"""The OpenAPI every service publishes, and the docs pages that read it, served without any CDN.

FastAPI's document is completed once, from what each route really does: the bearer scheme on the routes that
take an API key (so /docs has Authorize), every refusal the route can answer as `application/problem+json`
with an example (never FastAPI's `{detail: [...]}`, which no service sends), operation ids from the route
names (readable method names in generated clients). Swagger UI and ReDoc load their scripts from the
service itself (the fastapi-offline package ships them): the public CDN is unreliable in mainland China and
absent on intranets, where /docs would come up blank.
"""

from __future__ import annotations

import re
import warnings
from collections import Counter
from datetime import date
from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field

from .problems import PROBLEM_JSON

ASSETS_URL = "/docs-assets"
ASSETS = Path(fastapi_offline.__file__).parent / "static"
SCHEME = "bearer"


class FieldError(BaseModel):
    field: str = Field(description="where, e.g. `body.lines.0.quantity` / 出错字段")
    message: str
    type: str | None = None


class ProblemDetails(BaseModel):
    """RFC 9457 problem details: every refusal of every service. 所有错误均以此格式返回。"""

    model_config = ConfigDict(extra="allow", title="Problem")

    type: str = Field(description="a URI naming the problem / 问题类型")
    title: str
    status: int = Field(description="the HTTP status / HTTP 状态码")
    detail: str = Field(description="what went wrong, for a developer / 详细说明")
    code: str = Field(description="stable machine-readable code / 稳定的错误代码")
    instance: str | None = Field(None, description="this occurrence (the request id) / 本次请求标识")
    errors: list[FieldError] | None = Field(None, description="422 validation_failed: each field / 字段错误")
    rule: str | None = Field(
        None, description="422 policy_refused: the rule, e.g. R-BEYOND-7D / 售后规则编号"
    )
    message_zh: str | None = Field(
        None, description="policy_refused: courteous, for the buyer / 给买家的中文说明"
    )
    message_en: str | None = Field(None, description="policy_refused: the same in English")
    facts: dict[str, Any] | None = Field(None, description="policy_refused: what decided it / 判定依据")


def _problem(status: int, code: str, title: str, detail: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": f"https://aftersales.example/problems/{code}",
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        **extra,
    }


# Each status a service answers with a problem: its bilingual description and an example.
STATUSES: dict[int, tuple[str, dict[str, Any]]] = {
    400: (
        "The body is not JSON, or a cursor is not one of ours / 请求体不是合法 JSON,或分页游标无效",
        _problem(400, "malformed_json", "Malformed JSON", "the request body is not valid JSON"),
    ),
    401: (
        "No API key, or an unknown, revoked or expired one / 缺少 API 密钥,或密钥无效、已吊销、已过期",
        _problem(401, "unauthenticated", "Unauthenticated", "send Authorization: Bearer <api key>"),
    ),
    403: (
        "The key lacks the role, or the shop is not the key's / 密钥无此角色权限,或无权访问该店铺",
        _problem(403, "forbidden", "Forbidden", "this key is not allowed for shop 'shop-b'"),
    ),
    404: (
        "No such resource, or one of a shop the key may not see / 资源不存在,或属于无权访问的店铺",
        _problem(404, "not_found", "case not found", "no case 'case_01jd2v6b4q' here"),
    ),
    409: (
        "A stale version, a move the current status does not allow, or a reused Idempotency-Key "
        "/ 版本已过期、当前状态不允许此操作,或幂等键被用于不同的请求",
        _problem(409, "stale_version", "Conflict", "the case is at version 3, not 2", current_version=3),
    ),
    412: (
        "A precondition of the request does not hold / 请求的前置条件不成立",
        _problem(412, "precondition_failed", "Precondition failed", "the precondition does not hold"),
    ),
    413: (
        "The body is larger than this endpoint takes / 请求体超过上限",
        _problem(
            413,
            "body_too_large",
            "Request body too large",
            "this endpoint takes bodies of at most 1048576 bytes",
            limit=1048576,
        ),
    ),
    415: (
        "The content is of a type this endpoint does not take / 不支持的内容类型",
        _problem(415, "unsupported_media_type", "Unsupported media type", "not a JPEG, PNG or WebP photo"),
    ),
    422: (
        "A field is missing, of the wrong type or out of range (`errors` names it) / 字段缺失或无效",
        _problem(
            422,
            "validation_failed",
            "Invalid request",
            "some fields are missing or invalid",
            errors=[
                {
                    "field": "body.lines.0.quantity",
                    "message": "Input should be greater than or equal to 1",
                    "type": "greater_than_equal",
                }
            ],
        ),
    ),
}
POLICY_REFUSED = _problem(
    422,
    "policy_refused",
    "Refused by the after-sales policy",
    "The 7-day no-reason return period for this item ended on 2026-11-11 00:00 (Beijing time).",
    rule="R-BEYOND-7D",
    message_zh="很抱歉,该商品的七天无理由退货期限已于 2026-11-11 00:00(北京时间)结束。",
    message_en="The 7-day no-reason return period for this item ended on 2026-11-11 00:00 (Beijing time).",
    facts={"deadline": "2026-11-11T00:00:00+08:00"},
)


def operation_id(route: APIRoute) -> str:
    """The route's name: `open_case`, not `open_case_v1_cases_post` (a repeated name is made unique below)."""
    return route.name


# What build_app makes its FastAPI with: no CDN docs pages (install serves them), readable operation ids.
APP_OPTIONS: dict[str, Any] = {
    "docs_url": None,
    "redoc_url": None,
    "generate_unique_id_function": operation_id,
}


def _authenticated(operation: dict[str, Any]) -> bool:
    # The routes that take a key read the Authorization header (web.current_principal).
    return any(p.get("name", "").lower() == "authorization" for p in operation.get("parameters", []))


def _statuses(operation: dict[str, Any]) -> set[int]:
    """The refusals this operation can answer, from what it takes."""
    params = {p.get("in") for p in operation.get("parameters", [])}
    names = {p.get("name") for p in operation.get("parameters", [])}
    codes = {int(c) for c in operation.get("responses", {}) if c.isdigit() and int(c) >= 400}
    if _authenticated(operation):
        codes |= {401, 403}
    if "path" in params:
        codes |= {404, 422}
    if "query" in params:
        codes.add(422)
    if "cursor" in names:
        codes.add(400)
    if "requestBody" in operation:
        codes |= {400, 413, 422}
    return codes


def _responses(operation: dict[str, Any], codes: set[int]) -> None:
    responses = operation.setdefault("responses", {})
    for code in sorted(codes):
        description, example = STATUSES.get(code, (f"HTTP {code}", _problem(code, "http_error", "Error", "")))
        declared = responses.get(str(code), {})
        examples = {"default": {"summary": description.split(" / ")[0], "value": example}}
        if code == 422 and "policy" in declared.get("description", ""):
            examples["policy_refused"] = {
                "summary": "refused by a policy rule",
                "value": POLICY_REFUSED,
            }
        responses[str(code)] = {
            "description": declared.get("description") or description,
            "content": {
                PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}, "examples": examples}
            },
        }


def _optional_body(operation: dict[str, Any]) -> None:
    """An optional body is the model or nothing (`required: false`), not "the model or null": a JSON null
    is no body the services take, and generators choke on it."""
    content = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
    variants = content.get("schema", {}).get("anyOf", [])
    if len(variants) == 2 and {"type": "null"} in variants:
        content["schema"] = next(v for v in variants if v != {"type": "null"})


def document(app: FastAPI) -> dict[str, Any]:
    """The service's OpenAPI document, completed (see the module's docstring)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Duplicate Operation ID")  # made unique below
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
    operations = [op for path in schema.get("paths", {}).values() for op in path.values()]
    seen = Counter(op.get("operationId") for op in operations)
    for path, methods in schema.get("paths", {}).items():
        for method, operation in methods.items():
            if seen[operation.get("operationId")] > 1:
                operation["operationId"] += "_" + method + "_" + "_".join(re.findall(r"\w+", path))
            codes = _statuses(operation)
            _optional_body(operation)
            if _authenticated(operation):
                operation["security"] = [{SCHEME: []}]
                # The key goes in the security scheme, not as a parameter of every method.
                operation["parameters"] = [
                    p for p in operation["parameters"] if p.get("name", "").lower() != "authorization"
                ]
                if not operation["parameters"]:
                    del operation["parameters"]
            _responses(operation, codes)
    components = schema.setdefault("components", {})
    components.setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        components["schemas"].pop(name, None)
    components["schemas"]["Problem"] = ProblemDetails.model_json_schema(
        ref_template="#/components/schemas/{model}"
    )
    components["schemas"]["Problem"].pop("$defs", None)
    components["schemas"]["FieldError"] = FieldError.model_json_schema()
    components["schemas"]["Problem"]["properties"]["errors"] = {
        "anyOf": [{"type": "array", "items": {"$ref": "#/components/schemas/FieldError"}}, {"type": "null"}],
        "description": ProblemDetails.model_fields["errors"].description,
    }
    components["securitySchemes"] = {
        SCHEME: {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key: `Authorization: Bearer <api key>` / 在请求头携带 API 密钥",
        }
    }
    return schema


def install(app: FastAPI) -> None:
    """The completed OpenAPI at /openapi.json, Swagger UI at /docs and ReDoc at /redoc, all self-hosted.
    The app is made with docs_url=None and redoc_url=None."""

    made_on: list[date] = []

    def openapi() -> dict[str, Any]:
        # Made again each day: examples may be dated from today (an order inside its return window).
        today = app.state.clock.now().date() if hasattr(app.state, "clock") else date.today()
        if app.openapi_schema is None or made_on != [today]:
            app.openapi_schema, made_on[:] = document(app), [today]
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=f"{root}/docs/oauth2-redirect",
            swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            swagger_ui_parameters={"persistAuthorization": True},
        )

    @app.get("/docs/oauth2-redirect", include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            with_google_fonts=False,
        )
