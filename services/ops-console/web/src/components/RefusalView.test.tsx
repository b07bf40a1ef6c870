import { render, screen } from "@testing-library/react";
import { describe, expect, it } from "vitest";
import { ApiError } from "../api";
import { I18nContext, makeI18n, type Lang } from "../i18n";
import { RefusalView } from "./RefusalView";

const REFUSAL = new ApiError({
  status: 422,
  title: "Refused by policy",
  detail: "the window closed",
  code: "policy_refused",
  rule: "R-BEYOND-7D",
  message_zh: "亲，您的订单已超过7天无理由退货期限。",
  message_en: "The 7-day no-reason return window has closed.",
  deadline: "2026-11-11T00:00:00+08:00",
});

function shown(lang: Lang) {
  render(
    <I18nContext.Provider value={makeI18n(lang, () => undefined)}>
      <RefusalView error={REFUSAL} />
    </I18nContext.Provider>,
  );
  return screen.getByRole("alert");
}

describe("a refusal on screen", () => {
  it("shows both messages word for word, the rule, the code and the deciding facts", () => {
    const alert = shown("zh");
    expect(alert.textContent).toContain("被拒绝 · 422 Refused by policy");
    expect(screen.getByText("亲，您的订单已超过7天无理由退货期限。").getAttribute("lang")).toBe("zh-CN");
    expect(screen.getByText("The 7-day no-reason return window has closed.").getAttribute("lang")).toBe("en");
    expect(screen.getByText("R-BEYOND-7D")).toBeTruthy();
    expect(screen.getByText("policy_refused")).toBeTruthy();
    expect(screen.getByText("2026-11-11T00:00:00+08:00")).toBeTruthy();
    expect(screen.getByText("the window closed")).toBeTruthy();
  });

  it("puts the English message first for an English reader", () => {
    const alert = shown("en");
    const text = alert.textContent ?? "";
    expect(text).toContain("Refused · 422");
    expect(text.indexOf("The 7-day")).toBeLessThan(text.indexOf("亲，"));
  });
});
