"""RFC 9457 problem+json: domain errors carry a stable code and are mapped once, at the edge."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from .logging import current

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger(__name__)
E = TypeVar("E", bound=Exception)


class Problem(Exception):
    """An expected refusal: becomes a 4xx problem+json response and changes nothing."""

    def __init__(self, status: int, code: str, title: str, detail: str | None = None, **extra: Any) -> None:
        super().__init__(detail or title)
        self.status = status
        self.code = code
        self.title = title
        self.detail = detail or title
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {
            "type": f"https://aftersales.example/problems/{self.code}",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
            **self.extra,
        }


# A service's domain errors and how its edge answers them: registered once, at start, by each service.
_TRANSLATIONS: dict[type[Exception], Callable[[Any], Problem]] = {}


def translate(kind: type[E], to_problem: Callable[[E], Problem]) -> None:
    """Answer the domain error `kind` (raised anywhere below the edge) with `to_problem(error)`."""
    _TRANSLATIONS[kind] = to_problem


def as_problem(exc: BaseException) -> Problem | None:
    """The problem an expected refusal is answered with; None for anything else."""
    if isinstance(exc, Problem):
        return exc
    for kind, to_problem in _TRANSLATIONS.items():
        if isinstance(exc, kind):
            return to_problem(exc)
    return None


def not_found(what: str, ident: str | None = None) -> Problem:
    """The one answer for a `what` that is missing or of a shop the key may not see (nothing tells them
    apart)."""
    detail = f"no {what} {ident!r} here" if ident is not None else f"no such {what} here"
    return Problem(404, "not_found", f"{what} not found", detail)


def conflict(code: str, detail: str, **extra: Any) -> Problem:
    return Problem(409, code, "Conflict", detail, **extra)


def internal_error() -> Problem:
    return Problem(500, "internal_error", "Internal error", "the error was logged")


def problem_body(problem: Problem) -> dict[str, Any]:
    """The problem as answered: `instance` names this occurrence by the request's X-Request-ID."""
    body = problem.body()
    if (request_id := current("request_id")) is not None:
        body.setdefault("instance", f"urn:request:{request_id}")
    return body


def problem_response(problem: Problem, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        problem_body(problem), status_code=problem.status, media_type=PROBLEM_JSON, headers=headers
    )


def _validation_problem(exc: RequestValidationError) -> Problem:
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return Problem(400, "malformed_json", "Malformed JSON", "the request body is not valid JSON")
    fields = [
        {
            "field": ".".join(str(p) for p in e.get("loc", ())),
            "message": e.get("msg", ""),
            "type": e.get("type"),
        }
        for e in errors
    ]
    return Problem(
        422,
        "validation_failed",
        "Invalid request",
        "some fields are missing or invalid",
        errors=json.loads(json.dumps(fields, default=str)),
    )


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(_: Request, exc: Problem) -> JSONResponse:
        return problem_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return problem_response(_validation_problem(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {401: "unauthenticated", 403: "forbidden", 404: "not_found", 405: "method_not_allowed"}
        problem = Problem(exc.status_code, code.get(exc.status_code, "http_error"), str(exc.detail))
        return problem_response(problem, headers=getattr(exc, "headers", None))

    async def _domain(_: Request, exc: Exception) -> JSONResponse:
        refusal = as_problem(exc)
        assert refusal is not None  # registered for the translated kinds only
        return problem_response(refusal)

    for kind in _TRANSLATIONS:
        app.add_exception_handler(kind, _domain)

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", extra={"path": request.url.path})
        return problem_response(internal_error())
