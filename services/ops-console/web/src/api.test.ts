import { describe, expect, it, vi } from "vitest";
import { ApiClient, ApiError, filenameOf, withQuery } from "./api";

type Call = { url: string; init: RequestInit };

function client(...answers: Response[]) {
  const calls: Call[] = [];
  const fetcher = vi.fn(async (url: RequestInfo | URL, init?: RequestInit) => {
    calls.push({ url: String(url), init: init ?? {} });
    const answer = answers.shift();
    if (!answer) throw new Error("no answer left");
    return answer;
  });
  return { api: new ApiClient(fetcher as unknown as typeof fetch), calls };
}

const json = (body: unknown, status = 200, type = "application/json") =>
  new Response(JSON.stringify(body), { status, headers: { "Content-Type": type } });
const header = (call: Call, name: string) => (call.init.headers as Record<string, string>)[name];
const SESSION = { user: { username: "li", display_name: "李客服", roles: ["support"], shops: null }, csrf_token: "tok-1" };

describe("the API client", () => {
  it("keeps the CSRF token of the sign-in and sends it on every unsafe method, never on reads", async () => {
    const { api, calls } = client(json(SESSION), json({ items: [] }), json({ id: "c" }), json({}), json({}), new Response(null, { status: 204 }));
    await api.signIn("li", "pw");
    expect(header(calls[0], "X-CSRF-Token")).toBeUndefined();
    await api.get("/api/case-api/v1/cases", { status: "open" });
    await api.post("/api/case-api/v1/cases/c/actions/approve", { expected_version: 1 });
    await api.request("PATCH", "/api/accounts/li", {});
    await api.request("PUT", "/api/x", {});
    await api.signOut();
    expect(calls.map((c) => [c.init.method, header(c, "X-CSRF-Token") ?? null])).toEqual([
      ["POST", null],
      ["GET", null],
      ["POST", "tok-1"],
      ["PATCH", "tok-1"],
      ["PUT", "tok-1"],
      ["DELETE", "tok-1"],
    ]);
    expect(calls.every((c) => c.init.credentials === "same-origin")).toBe(true);
    expect(api.csrfToken).toBeNull();
  });

  it("takes the token of the current session on reload", async () => {
    const { api } = client(json(SESSION));
    expect((await api.current())?.user.display_name).toBe("李客服");
    expect(api.csrfToken).toBe("tok-1");
  });

  it("answers no session on a 401 without calling the sign-out hook", async () => {
    const { api } = client(json({ status: 401, title: "Unauthorized" }, 401, "application/problem+json"));
    const hook = vi.fn();
    api.onUnauthorized = hook;
    expect(await api.current()).toBeNull();
    expect(hook).not.toHaveBeenCalled();
  });

  it("raises a refusal with the problem as sent, and a 401 elsewhere ends the session", async () => {
    const problem = { status: 422, title: "Refused", code: "policy_refused", rule: "R-BEYOND-7D", message_zh: "超期", message_en: "Too late" };
    const { api } = client(json(problem, 422, "application/problem+json"), json({ status: 401, title: "Unauthorized" }, 401));
    const hook = vi.fn();
    api.onUnauthorized = hook;
    const error = await api.post("/api/case-api/v1/cases", {}).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ApiError);
    expect((error as ApiError).problem).toEqual(problem);
    await expect(api.get("/api/case-api/v1/cases")).rejects.toMatchObject({ status: 401 });
    expect(hook).toHaveBeenCalledTimes(1);
  });

  it("keeps a non-JSON failure's text", async () => {
    const { api } = client(new Response("Bad Gateway", { status: 502, statusText: "Bad Gateway" }));
    await expect(api.get("/api/x")).rejects.toMatchObject({ status: 502, problem: { detail: "Bad Gateway" } });
  });

  it("sends JSON bodies and leaves out empty query values", async () => {
    const { api, calls } = client(json({}));
    await api.post("/api/a", { amount: "1.00" });
    expect(calls[0].init.body).toBe('{"amount":"1.00"}');
    expect(header(calls[0], "Content-Type")).toBe("application/json");
    expect(withQuery("/v1/cases", { status: "open", remedy: undefined, shop_id: "", limit: 50, cursor: null })).toBe(
      "/v1/cases?status=open&limit=50",
    );
    expect(withQuery("/v1/r?date=2026-11-10", { format: "xlsx" })).toBe("/v1/r?date=2026-11-10&format=xlsx");
  });

  it("names a download as the server does", () => {
    expect(filenameOf('attachment; filename="cashback-2026-11-10.xlsx"', "x")).toBe("cashback-2026-11-10.xlsx");
    expect(filenameOf("attachment; filename*=UTF-8''%E8%BF%94%E7%8E%B0.csv", "x")).toBe("返现.csv");
    expect(filenameOf(null, "fallback.csv")).toBe("fallback.csv");
  });
});
