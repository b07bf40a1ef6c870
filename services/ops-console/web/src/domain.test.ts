import { describe, expect, it } from "vitest";
import {
  actionBody,
  allowedActions,
  assigneeBody,
  assigneeParam,
  assigneeText,
  takeChoice,
  bulkClosable,
  clocksOf,
  formatDuration,
  queueRows,
  sortByDue,
  type CaseItem,
  type FollowUpRow,
} from "./domain";

const NOW = Date.parse("2026-11-10T04:00:00Z"); // 12:00 in Beijing
const HOUR = 3600 * 1000;

function aCase(overrides: Partial<CaseItem> = {}): CaseItem {
  return {
    id: "cas_1",
    order_id: "TB1",
    shop_id: "shop-a",
    remedy: "return_refund",
    reason: "no_reason",
    status: "open",
    description: null,
    lines: [{ line_id: "L1", quantity: 1 }],
    amount: "129.00",
    details: {},
    needs_retention: false,
    evidence_missing: 0,
    evidence: [],
    version: 1,
    created_at: "2026-11-09T00:00:00Z",
    updated_at: "2026-11-09T00:00:00Z",
    ...overrides,
  };
}

function followUp(overrides: Partial<FollowUpRow> = {}): FollowUpRow {
  return {
    id: "lfu_1",
    case_id: "cas_1",
    order_id: "TB1",
    shop_id: "shop-a",
    carrier: "SF",
    tracking_no: "SF1",
    problem: "lost",
    reported_at: "2026-11-09T00:00:00Z",
    sla_due_at: "2026-11-11T10:00:00Z",
    escalated_at: null,
    verdict: null,
    outcome: null,
    created_at: "2026-11-09T00:00:00Z",
    ...overrides,
  };
}

describe("SLA clocks", () => {
  it("runs the 7-day clock to the case's deadline, overdue to the millisecond", () => {
    const deadline = "2026-11-10T16:00:00Z"; // 2026-11-11 00:00 Beijing
    const [clock] = clocksOf(aCase({ details: { deadline } }), undefined, NOW);
    expect(clock).toMatchObject({ kind: "seven_day", dueAt: Date.parse(deadline), ms: 12 * HOUR, state: "due_soon" });
    expect(clocksOf(aCase({ details: { deadline } }), undefined, Date.parse(deadline) - 1)[0].state).toBe("due_soon");
    expect(clocksOf(aCase({ details: { deadline } }), undefined, Date.parse(deadline))[0].state).toBe("due_soon");
    expect(clocksOf(aCase({ details: { deadline } }), undefined, Date.parse(deadline) + 1)[0].state).toBe("overdue");
  });

  it("is ok beyond a day and due soon within one", () => {
    const due = NOW + 24 * HOUR;
    expect(clocksOf(aCase({ details: { deadline: new Date(due).toISOString() } }), undefined, NOW)[0].state).toBe("due_soon");
    expect(clocksOf(aCase({ details: { deadline: new Date(due + 1).toISOString() } }), undefined, NOW)[0].state).toBe("ok");
  });

  it("runs no clock on a final case, and no 7-day clock on a settled one", () => {
    const details = { deadline: "2026-11-10T16:00:00Z" };
    for (const status of ["closed", "rejected", "withdrawn", "retained"]) {
      expect(clocksOf(aCase({ status, details }), undefined, NOW)).toEqual([]);
    }
    expect(clocksOf(aCase({ status: "refunded", details }), undefined, NOW)).toEqual([]);
  });

  it("runs the carrier's answer clock from the follow-up register while no verdict is in", () => {
    const item = aCase({ status: "awaiting_carrier", reason: "lost" });
    const [clock] = clocksOf(item, followUp(), NOW);
    expect(clock).toMatchObject({ kind: "carrier_answer", dueAt: Date.parse("2026-11-11T10:00:00Z"), state: "ok" });
    expect(clocksOf(item, followUp({ verdict: "lost in transit" }), NOW)).toEqual([]);
    expect(clocksOf(aCase({ status: "open" }), followUp(), NOW)).toEqual([]);
  });

  it("counts how long evidence has been waited for, and how many items are missing", () => {
    const item = aCase({ status: "awaiting_evidence", evidence_missing: 2, updated_at: "2026-11-08T01:00:00Z" });
    const [clock] = clocksOf(item, undefined, NOW);
    expect(clock).toMatchObject({ kind: "evidence", dueAt: null, state: "waiting", ms: 51 * HOUR, missing: 2 });
  });
});

describe("queue order", () => {
  it("puts what is due first first, then cases without a due time, oldest first", () => {
    const late = aCase({ id: "late", details: { deadline: "2026-11-12T00:00:00Z" } });
    const soon = aCase({ id: "soon", details: { deadline: "2026-11-10T05:00:00Z" } });
    const overdue = aCase({ id: "overdue", details: { deadline: "2026-11-09T05:00:00Z" } });
    const carrier = aCase({ id: "carrier", status: "awaiting_carrier" });
    const oldNoDue = aCase({ id: "old", created_at: "2026-11-01T00:00:00Z" });
    const newNoDue = aCase({ id: "new", created_at: "2026-11-05T00:00:00Z" });
    const rows = queueRows(
      [newNoDue, late, oldNoDue, soon, carrier, overdue],
      [followUp({ case_id: "carrier", sla_due_at: "2026-11-11T00:00:00Z" })],
      NOW,
    );
    expect(rows.map((r) => r.item.id)).toEqual(["overdue", "soon", "carrier", "late", "old", "new"]);
  });

  it("takes a case's earliest clock as its due time", () => {
    const item = aCase({ id: "both", status: "awaiting_carrier", details: { deadline: "2026-11-12T00:00:00Z" } });
    const [row] = queueRows([item], [followUp({ case_id: "both", sla_due_at: "2026-11-10T06:00:00Z" })], NOW);
    expect(row.due).toBe(Date.parse("2026-11-10T06:00:00Z"));
  });

  it("keeps the register's latest entry of a case (newest first)", () => {
    const item = aCase({ status: "awaiting_carrier" });
    const rows = queueRows(
      [item],
      [followUp({ id: "new", sla_due_at: "2026-11-12T00:00:00Z" }), followUp({ id: "old", sla_due_at: "2026-11-01T00:00:00Z" })],
      NOW,
    );
    expect(rows[0].due).toBe(Date.parse("2026-11-12T00:00:00Z"));
  });

  it("breaks ties by id so the order is stable", () => {
    const a = aCase({ id: "a" });
    const b = aCase({ id: "b" });
    const rows = sortByDue([
      { item: b, clocks: [], due: null },
      { item: a, clocks: [], due: null },
    ]);
    expect(rows.map((r) => r.item.id)).toEqual(["a", "b"]);
  });
});

describe("durations", () => {
  it("reads in days and hours, hours and minutes, or minutes, in both languages", () => {
    expect(formatDuration(51 * HOUR + 59 * 60000, "zh")).toBe("2天3小时");
    expect(formatDuration(-(51 * HOUR), "en")).toBe("2 d 3 h");
    expect(formatDuration(90 * 60000, "zh")).toBe("1小时30分");
    expect(formatDuration(59_999, "en")).toBe("0 min");
  });
});

describe("actions allowed now", () => {
  it("follows case-api's workflow for support staff", () => {
    expect(allowedActions("open", ["support"])).toEqual([
      "record_retention",
      "approve",
      "reject",
      "withdraw",
      "report_to_carrier",
    ]);
    expect(allowedActions("awaiting_carrier", ["support"])).toEqual(["reject", "withdraw", "record_carrier_verdict", "close"]);
    expect(allowedActions("refunded", ["support"])).toEqual(["close"]);
    expect(allowedActions("closed", ["support", "ops"])).toEqual([]);
  });

  it("offers ops staff no case action (the workflow is support's)", () => {
    expect(allowedActions("open", ["ops"])).toEqual([]);
  });

  it("bulk closes only settled cases", () => {
    expect(["refunded", "exchanged", "reshipped"].every((status) => bulkClosable(aCase({ status })))).toBe(true);
    expect(["open", "approved", "awaiting_carrier", "closed"].some((status) => bulkClosable(aCase({ status })))).toBe(false);
  });

  it("sends the version seen and only the fields filled in, money with two places", () => {
    expect(actionBody("approve", {}, 3)).toEqual({ expected_version: 3 });
    expect(actionBody("refund", { amount: 12.5 }, 2)).toEqual({ expected_version: 2, amount: "12.50" });
    expect(actionBody("reject", { reason_code: "worn", message: "" }, 1)).toEqual({ expected_version: 1, reason_code: "worn" });
    expect(actionBody("record_carrier_verdict", { confirmed: false }, 4)).toEqual({ expected_version: 4, confirmed: false });
    expect(actionBody("approve", { notes: "sneaked in" }, 1)).toEqual({ expected_version: 1 });
  });
});

describe("taking a case", () => {
  it("filters by me, the unassigned, or anyone", () => {
    expect(assigneeParam("mine", "li.na")).toBe("staff:li.na");
    expect(assigneeParam("unassigned", "li.na")).toBe("none");
    expect(assigneeParam(undefined, "li.na")).toBeUndefined();
  });

  it("shows an account's username and a key's name as they are", () => {
    expect(assigneeText("staff:li.na")).toBe("li.na");
    expect(assigneeText("tmall-shop-a")).toBe("tmall-shop-a");
    expect(assigneeText(null)).toBeNull();
    expect(assigneeText(undefined)).toBeNull();
  });

  it("offers take on a free case and release on my own", () => {
    expect(takeChoice(aCase(), "li.na", false)).toEqual({ kind: "take" });
    expect(takeChoice(aCase({ assignee: "staff:li.na" }), "li.na", false)).toEqual({ kind: "release" });
  });

  it("lets support not take a case someone else holds, and ops take it over", () => {
    const held = aCase({ assignee: "staff:wang.qiang" });
    expect(takeChoice(held, "li.na", false)).toEqual({ kind: "taken", by: "wang.qiang" });
    expect(takeChoice(held, "li.na", true)).toEqual({ kind: "take" });
  });

  it("offers nothing on a case that is over", () => {
    for (const status of ["closed", "rejected", "withdrawn", "retained"]) {
      expect(takeChoice(aCase({ status }), "li.na", true)).toEqual({ kind: "closed" });
    }
    expect(takeChoice(aCase({ status: "refunded" }), "li.na", false)).toEqual({ kind: "take" });
  });

  it("sends myself or null with the version I saw", () => {
    expect(assigneeBody({ kind: "take" }, "li.na", 3)).toEqual({ assignee: "staff:li.na", expected_version: 3 });
    expect(assigneeBody({ kind: "release" }, "li.na", 4)).toEqual({ assignee: null, expected_version: 4 });
  });
});
