import { describe, expect, it } from "vitest";
import { beijingDay, lastDays, openByKindAndCarrier, trends, type Alert } from "./trends";

const NOW = Date.parse("2026-11-10T04:00:00Z");

function alert(overrides: Partial<Alert>): Alert {
  return {
    id: "alt",
    tracking_no: "T",
    order_id: null,
    shop_id: null,
    carrier: "SF",
    kind: "stalled",
    status: "open",
    last_event_at: "2026-11-09T00:00:00Z",
    opened_at: "2026-11-10T00:00:00Z",
    resolved_at: null,
    ...overrides,
  };
}

describe("alert trends", () => {
  it("counts alerts on Beijing days", () => {
    expect(beijingDay(Date.parse("2026-11-09T15:59:59Z"))).toBe("2026-11-09");
    expect(beijingDay(Date.parse("2026-11-09T16:00:00Z"))).toBe("2026-11-10");
    expect(lastDays(NOW, 3)).toEqual(["2026-11-08", "2026-11-09", "2026-11-10"]);
  });

  it("gives a series per carrier for stalled, lost and false delivery, resolved ones too", () => {
    const alerts = [
      alert({ opened_at: "2026-11-09T16:30:00Z" }),
      alert({ opened_at: "2026-11-09T15:30:00Z", status: "resolved" }),
      alert({ carrier: "YTO", kind: "suspected_lost", opened_at: "2026-11-08T01:00:00Z" }),
      alert({ kind: "no_first_scan" }),
      alert({ opened_at: "2026-10-01T00:00:00Z" }),
    ];
    const [stalled, lost, falseDelivery] = trends(alerts, NOW, 3);
    expect(stalled).toEqual({ kind: "stalled", days: ["2026-11-08", "2026-11-09", "2026-11-10"], series: [{ carrier: "SF", counts: [0, 1, 1] }] });
    expect(lost.series).toEqual([{ carrier: "YTO", counts: [1, 0, 0] }]);
    expect(falseDelivery.series).toEqual([]);
  });

  it("counts open alerts by carrier and kind, busiest carrier first", () => {
    const rows = openByKindAndCarrier([
      alert({ carrier: "SF" }),
      alert({ carrier: "YTO", kind: "suspected_lost" }),
      alert({ carrier: "YTO" }),
      alert({ carrier: "ZTO", status: "resolved" }),
    ]);
    expect(rows).toEqual([
      { carrier: "YTO", counts: { suspected_lost: 1, stalled: 1 }, total: 2 },
      { carrier: "SF", counts: { stalled: 1 }, total: 1 },
    ]);
  });
});
