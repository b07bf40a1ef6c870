// Alerts grouped for the logistics page: open alerts by kind and carrier, and the daily count of new
// alerts per carrier (Beijing days) for the kinds that show a carrier's trouble.

export interface Alert {
  id: string;
  tracking_no: string;
  order_id: string | null;
  shop_id: string | null;
  carrier: string;
  kind: string;
  status: "open" | "resolved";
  last_event_at: string;
  opened_at: string;
  resolved_at: string | null;
}

export const TREND_KINDS = ["stalled", "suspected_lost", "suspected_false_delivery"] as const;
const BEIJING_MS = 8 * 3600 * 1000;
const DAY_MS = 24 * 3600 * 1000;

/** The Beijing calendar day (YYYY-MM-DD) of an instant. */
export function beijingDay(at: number): string {
  return new Date(at + BEIJING_MS).toISOString().slice(0, 10);
}

/** The last `days` Beijing days up to the one holding `now`, oldest first. */
export function lastDays(now: number, days: number): string[] {
  return Array.from({ length: days }, (_, i) => beijingDay(now - (days - 1 - i) * DAY_MS));
}

export interface Trend {
  kind: string;
  days: string[];
  series: { carrier: string; counts: number[] }[];
}

/** Per kind, how many alerts each carrier had opened on each of the days. */
export function trends(alerts: Alert[], now: number, days = 14): Trend[] {
  const axis = lastDays(now, days);
  const index = new Map(axis.map((day, i) => [day, i]));
  return TREND_KINDS.map((kind) => {
    const perCarrier = new Map<string, number[]>();
    for (const alert of alerts) {
      if (alert.kind !== kind) continue;
      const i = index.get(beijingDay(Date.parse(alert.opened_at)));
      if (i === undefined) continue;
      const counts = perCarrier.get(alert.carrier) ?? new Array<number>(axis.length).fill(0);
      counts[i] += 1;
      perCarrier.set(alert.carrier, counts);
    }
    const series = [...perCarrier.entries()]
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([carrier, counts]) => ({ carrier, counts }));
    return { kind, days: axis, series };
  });
}

/** Open alerts counted by kind and carrier: rows of carriers, a column per kind. */
export function openByKindAndCarrier(alerts: Alert[]): { carrier: string; counts: Record<string, number>; total: number }[] {
  const rows = new Map<string, Record<string, number>>();
  for (const alert of alerts) {
    if (alert.status !== "open") continue;
    const counts = rows.get(alert.carrier) ?? {};
    counts[alert.kind] = (counts[alert.kind] ?? 0) + 1;
    rows.set(alert.carrier, counts);
  }
  return [...rows.entries()]
    .map(([carrier, counts]) => ({ carrier, counts, total: Object.values(counts).reduce((a, b) => a + b, 0) }))
    .sort((a, b) => b.total - a.total || a.carrier.localeCompare(b.carrier));
}
