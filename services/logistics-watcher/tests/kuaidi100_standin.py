"""A local stand-in of Kuaidi100 (快递100), built from its published API documentation and official SDKs:
the subscribe endpoint (POST /poll, a form with `schema=json` and `param` = {company, number, key,
parameters {callbackurl, salt, resultv2}}, answering {result, returnCode, message}), and the pushes it
sends to a subscription's callbackurl (a form with `param` and `sign` = uppercase MD5(param + salt))."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import httpx
from fastapi import FastAPI, Form

# Kuaidi100's answers to a subscription (returnCode, message).
TAKEN = ("200", "提交成功")
DUPLICATE = ("501", "重复订阅")
SERVER_ERROR = ("500", "服务器错误")
BAD_KEY = ("600", "您不是合法的订阅者(即授权Key出错)")
BAD_DATA = ("700", "订阅方的订阅数据存在错误(如不支持的快递公司、单号为空、单号超长等)或错误的回调地址")
COMPANIES = {
    "shunfeng",
    "zhongtong",
    "yuantong",
    "shentong",
    "yunda",
    "jd",
    "ems",
    "debangkuaidi",
    "jtexpress",
}


@dataclass
class Kuaidi100StandIn:
    key: str
    subscriptions: dict[str, dict[str, Any]] = field(default_factory=dict)  # number → param
    requests: list[dict[str, Any]] = field(default_factory=list)  # every param received
    next_answers: list[tuple[str, str]] = field(default_factory=list)  # forced answers, in order

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/poll")
        async def poll(schema_: str = Form(alias="schema"), param: str = Form()) -> dict[str, Any]:
            return self._subscribe(schema_, param)

        return app

    def client(self) -> httpx.AsyncClient:
        """A client whose requests to poll.kuaidi100.com reach this stand-in."""
        transport = httpx.ASGITransport(app=self.app())
        return httpx.AsyncClient(transport=transport, base_url="https://poll.kuaidi100.com")

    def _subscribe(self, schema: str, param: str) -> dict[str, Any]:
        request = json.loads(param)
        self.requests.append(request)
        code, message = self._answer(schema, request)
        if code == "200":
            self.subscriptions[request["number"]] = request
        return {"result": code == "200", "returnCode": code, "message": message}

    def _answer(self, schema: str, request: dict[str, Any]) -> tuple[str, str]:
        if self.next_answers:
            return self.next_answers.pop(0)
        if request.get("key") != self.key:
            return BAD_KEY
        number, parameters = request.get("number", ""), request.get("parameters") or {}
        if (
            schema != "json"
            or not 0 < len(number) <= 32
            or request.get("company") not in COMPANIES
            or not str(parameters.get("callbackurl", "")).startswith("http")
        ):
            return BAD_DATA
        if number in self.subscriptions:
            return DUPLICATE
        return TAKEN

    def push(
        self,
        number: str,
        data: list[dict[str, Any]],
        *,
        state: str,
        status: str = "polling",
        message: str = "",
        com_new: str | None = None,
        salt: str | None = None,
    ) -> tuple[str, dict[str, str]]:
        """The path of the subscription's callbackurl and the form Kuaidi100 posts to it. `data` is the whole
        history, newest first, as Kuaidi100 sends it on every push."""
        subscription = self.subscriptions[number]
        parameters = subscription["parameters"]
        push = {
            "status": status,
            "billstatus": "",
            "message": message,
            "autoCheck": "1" if com_new else "0",
            "comOld": subscription["company"] if com_new else "",
            "comNew": com_new or "",
            "lastResult": {
                "message": "ok",
                "nu": number,
                "ischeck": "1" if state in ("3", "301", "302", "303", "304") else "0",
                "com": subscription["company"],
                "status": "200",
                "state": state,
                "condition": "F00",
                "data": data,
            },
        }
        param = json.dumps(push, ensure_ascii=False)
        signature = hashlib.md5((param + (salt or parameters["salt"])).encode()).hexdigest().upper()
        return urlparse(parameters["callbackurl"]).path, {"param": param, "sign": signature}


def scan(
    ftime: str, context: str, status_code: str | None = None, area: str = "浙江省,杭州市"
) -> dict[str, Any]:
    """One entry of a push's `data` (resultv2=1: with statusCode and the area)."""
    item = {"time": ftime, "ftime": ftime, "context": context, "areaName": area}
    if status_code is not None:
        item["statusCode"] = status_code
        item["status"] = {"301": "签收", "5": "派件", "1002": "干线", "1": "揽收"}.get(status_code, "在途")
    return item
