// What the services return, as far as the console reads it, and the console's own rules over it:
// SLA clocks, the queue's order, and which actions a case allows now (case-api's domain/workflow.py MOVES).

export interface CaseLine {
  line_id: string;
  quantity: number;
}

export interface CaseEvidence {
  evidence_id: string;
  kind: "image" | "video" | string;
  content_type: string;
  sha256?: string;
  reused?: boolean;
  reused_from_order_id?: string | null;
}

export interface CaseItem {
  id: string;
  order_id: string;
  shop_id: string;
  remedy: string;
  reason: string;
  status: string;
  stage?: string;
  description: string | null;
  lines: CaseLine[];
  amount: string | null;
  line_amounts?: Record<string, string>;
  details: { deadline?: string | null; rules?: string[]; [key: string]: unknown };
  needs_retention: boolean;
  evidence_missing: number;
  evidence: CaseEvidence[];
  version: number;
  created_at: string;
  updated_at: string;
  assignee?: string | null;
  carrier?: string | null;
}

export interface FollowUpRow {
  id: string;
  case_id: string | null;
  order_id: string;
  shop_id: string;
  carrier: string | null;
  tracking_no: string | null;
  problem: string | null;
  reported_at: string | null;
  sla_due_at: string | null;
  escalated_at: string | null;
  verdict: string | null;
  outcome: string | null;
  carrier_claim?: { status: string; amount: string | null } | null;
  created_at: string;
}

export type ClockKind = "seven_day" | "carrier_answer" | "evidence";
export type ClockState = "overdue" | "due_soon" | "ok" | "waiting";

export interface SlaClock {
  kind: ClockKind;
  /** When it falls due (the 7-day window, the carrier's answer); evidence has no due time, only a start. */
  dueAt: number | null;
  since: number | null;
  state: ClockState;
  /** Milliseconds left (negative: overdue), or waited so far for evidence. */
  ms: number;
  missing?: number;
}

export const FINAL_STATUSES = new Set(["retained", "rejected", "withdrawn", "closed"]);
const SETTLED = new Set(["refunded", "exchanged", "reshipped"]);
const DUE_SOON_MS = 24 * 3600 * 1000;

function dueClock(kind: ClockKind, due: string, now: number): SlaClock {
  const dueAt = Date.parse(due);
  const ms = dueAt - now;
  return { kind, dueAt, since: null, ms, state: ms < 0 ? "overdue" : ms <= DUE_SOON_MS ? "due_soon" : "ok" };
}

/** The clocks running on a case now. A closed case runs none; the 7-day window matters until it is settled. */
export function clocksOf(item: CaseItem, followUp: FollowUpRow | undefined, now: number): SlaClock[] {
  if (FINAL_STATUSES.has(item.status)) return [];
  const clocks: SlaClock[] = [];
  const deadline = item.details?.deadline;
  if (deadline && !SETTLED.has(item.status)) clocks.push(dueClock("seven_day", deadline, now));
  if (item.status === "awaiting_carrier" && followUp?.sla_due_at && !followUp.verdict) {
    clocks.push(dueClock("carrier_answer", followUp.sla_due_at, now));
  }
  if (item.status === "awaiting_evidence") {
    const since = Date.parse(item.updated_at || item.created_at);
    clocks.push({ kind: "evidence", dueAt: null, since, ms: now - since, state: "waiting", missing: item.evidence_missing });
  }
  return clocks;
}

/** The earliest time any of the case's clocks falls due, or null when none has a due time. */
export function nextDue(clocks: SlaClock[]): number | null {
  const due = clocks.map((c) => c.dueAt).filter((d): d is number => d !== null);
  return due.length ? Math.min(...due) : null;
}

export interface QueueRow {
  item: CaseItem;
  clocks: SlaClock[];
  due: number | null;
}

/** What is due first comes first; cases without a due time follow, those waiting longest first. */
export function sortByDue(rows: QueueRow[]): QueueRow[] {
  return [...rows].sort((a, b) => {
    if (a.due !== null && b.due !== null && a.due !== b.due) return a.due - b.due;
    if (a.due !== null && b.due === null) return -1;
    if (a.due === null && b.due !== null) return 1;
    const created = Date.parse(a.item.created_at) - Date.parse(b.item.created_at);
    return created !== 0 ? created : a.item.id.localeCompare(b.item.id);
  });
}

export function queueRows(items: CaseItem[], followUps: FollowUpRow[], now: number): QueueRow[] {
  const byCase = new Map<string, FollowUpRow>();
  // The register is newest first: the first entry of a case is its latest report.
  for (const row of followUps) if (row.case_id && !byCase.has(row.case_id)) byCase.set(row.case_id, row);
  return sortByDue(
    items.map((item) => {
      const clocks = clocksOf(item, byCase.get(item.id), now);
      return { item, clocks, due: nextDue(clocks) };
    }),
  );
}

/** "2天3小时" / "2 d 3 h": whole days and hours, minutes under an hour. */
export function formatDuration(ms: number, lang: "zh" | "en"): string {
  const minutes = Math.floor(Math.abs(ms) / 60000);
  const days = Math.floor(minutes / 1440);
  const hours = Math.floor((minutes % 1440) / 60);
  const mins = minutes % 60;
  const zh = lang === "zh";
  if (days > 0) return zh ? `${days}天${hours}小时` : `${days} d ${hours} h`;
  if (hours > 0) return zh ? `${hours}小时${mins}分` : `${hours} h ${mins} min`;
  return zh ? `${mins}分钟` : `${mins} min`;
}

// Which staff actions each status allows, and which role may run them: case-api's workflow MOVES,
// restricted to what staff do in the console (warehouse and storefront moves are theirs).
export type StaffAction =
  | "record_retention"
  | "approve"
  | "reject"
  | "withdraw"
  | "refund"
  | "request_intercept"
  | "report_to_carrier"
  | "record_carrier_verdict"
  | "create_reship"
  | "close";

const ACTIVE = [
  "awaiting_evidence",
  "open",
  "retention",
  "approved",
  "awaiting_return",
  "return_received",
  "awaiting_carrier",
  "intercepting",
  "refunded",
  "exchanged",
  "reshipped",
];
const UNSETTLED = ACTIVE.filter((s) => !SETTLED.has(s));

export const MOVES: Record<StaffAction, string[]> = {
  record_retention: ["retention", "open"],
  approve: ["open"],
  reject: UNSETTLED,
  withdraw: UNSETTLED,
  refund: ["approved", "return_received"],
  request_intercept: ["approved"],
  report_to_carrier: ["open", "approved", "awaiting_evidence"],
  record_carrier_verdict: ["awaiting_carrier"],
  create_reship: ["approved"],
  close: ["approved", "refunded", "exchanged", "reshipped", "awaiting_carrier"],
};

/** The actions the case's status allows now for someone with these roles (case actions are support's). */
export function allowedActions(status: string, roles: string[]): StaffAction[] {
  if (!roles.includes("support")) return [];
  return (Object.keys(MOVES) as StaffAction[]).filter((action) => MOVES[action].includes(status));
}

/** Safe to run on many cases at once: closing a case already settled (refunded, exchanged, reshipped)
 * grants nothing and asks for no input; it only frees what the case reserved and never granted. */
export function bulkClosable(item: CaseItem): boolean {
  return SETTLED.has(item.status);
}

// Who works a case (case-api's PUT /v1/cases/{id}/assignee): services name a console account `staff:<username>`.
export const staffName = (username: string) => `staff:${username}`;

/** The queue's assignee filter: my cases, the unassigned, or (undefined) anyone's. */
export type AssigneeFilter = "mine" | "unassigned";

/** The `assignee` query parameter of GET /v1/cases for the filter. */
export function assigneeParam(filter: AssigneeFilter | undefined, username: string): string | undefined {
  if (filter === "mine") return staffName(username);
  if (filter === "unassigned") return "none";
  return undefined;
}

/** The assignee as people read it: an account's username without the `staff:` prefix. */
export function assigneeText(assignee: string | null | undefined): string | null {
  if (!assignee) return null;
  return assignee.startsWith("staff:") ? assignee.slice("staff:".length) : assignee;
}

/** What the queue's take button does for me on a case: take it, release my own, or nothing (support cannot
 * take a case someone else holds; ops may take it over). Closed cases are not taken. */
export type TakeChoice = { kind: "take" } | { kind: "release" } | { kind: "taken"; by: string } | { kind: "closed" };

export function takeChoice(item: CaseItem, username: string, canReassign: boolean): TakeChoice {
  if (FINAL_STATUSES.has(item.status)) return { kind: "closed" };
  if (!item.assignee) return { kind: "take" };
  if (item.assignee === staffName(username)) return { kind: "release" };
  return canReassign ? { kind: "take" } : { kind: "taken", by: assigneeText(item.assignee) ?? item.assignee };
}

/** The body of PUT /v1/cases/{id}/assignee for the choice, with the version the user saw. */
export function assigneeBody(choice: TakeChoice, username: string, version: number): { assignee: string | null; expected_version: number } {
  return { assignee: choice.kind === "release" ? null : staffName(username), expected_version: version };
}

// The fields each staff action's body takes beside expected_version (case-api's ACTION_BODIES).
export type FieldKind = "text" | "textarea" | "money" | "bool" | { choices: string[] };
export interface ActionField {
  name: string;
  kind: FieldKind;
  required?: boolean;
}

const NOTES: ActionField[] = [{ name: "notes", kind: "textarea" }];

export const ACTION_FIELDS: Record<StaffAction, ActionField[]> = {
  record_retention: [
    { name: "offer", kind: { choices: ["gift", "coupon", "keep_as_gift", "other_style", "none"] }, required: true },
    { name: "outcome", kind: { choices: ["accepted", "declined"] }, required: true },
    { name: "real_reason", kind: "text" },
  ],
  approve: [],
  reject: [
    { name: "reason_code", kind: "text", required: true },
    { name: "message", kind: "textarea" },
  ],
  withdraw: [{ name: "message", kind: "textarea" }],
  refund: [{ name: "amount", kind: "money" }],
  request_intercept: NOTES,
  report_to_carrier: NOTES,
  record_carrier_verdict: [
    { name: "confirmed", kind: "bool", required: true },
    { name: "verdict", kind: "textarea" },
  ],
  create_reship: NOTES,
  close: NOTES,
};

/** The action's request body: the fields filled in (empty ones left out) and the version the user saw. */
export function actionBody(action: StaffAction, values: Record<string, unknown>, version: number): Record<string, unknown> {
  const body: Record<string, unknown> = { expected_version: version };
  for (const field of ACTION_FIELDS[action]) {
    const value = values[field.name];
    if (value === undefined || value === null || value === "") continue;
    body[field.name] = field.kind === "money" ? Number(value).toFixed(2) : value;
  }
  return body;
}
