import { describe, expect, it } from "vitest";
import { ApiError } from "./api";
import { refusalLine, refusalOf, timelineFacts } from "./refusal";

const POLICY = {
  type: "https://aftersales.example/problems/policy_refused",
  title: "Refused by policy",
  status: 422,
  detail: "the 7-day window closed at 2026-11-11T00:00:00+08:00",
  code: "policy_refused",
  rule: "R-BEYOND-7D",
  message_zh: "亲，您的订单已超过7天无理由退货期限，非常抱歉无法为您办理。",
  message_en: "We are sorry: the 7-day no-reason return window for this order has closed.",
  deadline: "2026-11-11T00:00:00+08:00",
  instance: "req-123",
};

describe("refusals", () => {
  it("keeps the service's words, the rule and the deciding facts", () => {
    const refusal = refusalOf(new ApiError(POLICY), "zh");
    expect(refusal.messages).toEqual([
      { lang: "zh", text: POLICY.message_zh },
      { lang: "en", text: POLICY.message_en },
    ]);
    expect(refusal).toMatchObject({ status: 422, rule: "R-BEYOND-7D", code: "policy_refused", detail: POLICY.detail, requestId: "req-123" });
    expect(refusal.facts).toEqual([["deadline", "2026-11-11T00:00:00+08:00"]]);
  });

  it("puts the reader's language first", () => {
    const refusal = refusalOf(new ApiError(POLICY), "en");
    expect(refusal.messages.map((m) => m.lang)).toEqual(["en", "zh"]);
    expect(refusalLine(refusal)).toBe(`${POLICY.message_en} (R-BEYOND-7D)`);
  });

  it("lists the fields of a validation refusal", () => {
    const refusal = refusalOf(
      new ApiError({
        status: 422,
        title: "Invalid request",
        detail: "some fields are missing or invalid",
        code: "validation_failed",
        errors: [{ field: "body.amount", message: "Input should be greater than 0", type: "greater_than" }],
      }),
      "zh",
    );
    expect(refusal.fields).toEqual([{ field: "body.amount", message: "Input should be greater than 0", type: "greater_than" }]);
    expect(refusal.messages).toEqual([]);
    expect(refusalLine(refusal)).toBe("some fields are missing or invalid");
  });

  it("shows structured facts as JSON and leaves out empty ones", () => {
    const refusal = refusalOf(new ApiError({ status: 409, title: "Conflict", code: "stale", current: { version: 3 }, hint: null }), "zh");
    expect(refusal.facts).toEqual([["current", '{"version":3}']]);
    expect(refusal.detail).toBeNull();
    expect(refusalLine(refusal)).toBe("Conflict");
  });

  it("describes a failure that is not a problem by its message", () => {
    expect(refusalOf(new TypeError("Failed to fetch"), "en")).toMatchObject({ status: 0, title: "Failed to fetch" });
  });
});

describe("timeline facts", () => {
  it("reads name: value, leaves out empty ones and cuts long ones", () => {
    expect(timelineFacts({ offer: "coupon", outcome: "declined", real_reason: null, rules: [], note: "" })).toEqual([
      "offer: coupon",
      "outcome: declined",
    ]);
    const [long] = timelineFacts({ request: { description: "x".repeat(300) } }, 40);
    expect(long).toHaveLength(40);
    expect(long.endsWith("…")).toBe(true);
    expect(timelineFacts(null)).toEqual([]);
  });
});
