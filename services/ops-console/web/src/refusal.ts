// How a refusal is shown: the service's own words (message_zh / message_en, detail), the rule and the
// facts that decided it, exactly as they came; nothing is paraphrased.
import { ApiError, type FieldError, type Problem } from "./api";
import type { Lang } from "./i18n";

const STANDARD = new Set([
  "type",
  "title",
  "status",
  "detail",
  "code",
  "rule",
  "message_zh",
  "message_en",
  "errors",
  "instance",
]);

export interface Refusal {
  status: number;
  title: string;
  /** The customer-facing messages, the reader's language first; empty when the service sent none. */
  messages: { lang: Lang; text: string }[];
  detail: string | null;
  rule: string | null;
  code: string | null;
  facts: [string, string][];
  fields: FieldError[];
  requestId: string | null;
}

function factText(value: unknown): string {
  return typeof value === "string" ? value : JSON.stringify(value);
}

export function refusalOf(error: unknown, lang: Lang): Refusal {
  const problem: Problem =
    error instanceof ApiError
      ? error.problem
      : { status: 0, title: error instanceof Error ? error.message : String(error) };
  const both: { lang: Lang; text: string }[] = [];
  if (problem.message_zh) both.push({ lang: "zh", text: problem.message_zh });
  if (problem.message_en) both.push({ lang: "en", text: problem.message_en });
  both.sort((a, b) => Number(b.lang === lang) - Number(a.lang === lang));
  return {
    status: problem.status,
    title: problem.title ?? `HTTP ${problem.status}`,
    messages: both,
    detail: problem.detail && problem.detail !== problem.title ? problem.detail : null,
    rule: problem.rule ?? null,
    code: problem.code ?? null,
    facts: Object.entries(problem)
      .filter(([key, value]) => !STANDARD.has(key) && value !== null && value !== undefined)
      .map(([key, value]) => [key, factText(value)]),
    fields: Array.isArray(problem.errors) ? problem.errors : [],
    requestId: problem.instance ?? null,
  };
}

/** One line for a toast: the reader's message, else the detail, else the title. */
export function refusalLine(refusal: Refusal): string {
  const head = refusal.messages[0]?.text ?? refusal.detail ?? refusal.title;
  return refusal.rule ? `${head} (${refusal.rule})` : head;
}

/** A timeline entry's data as short `name: value` facts: empty values left out, long ones cut. */
export function timelineFacts(data: Record<string, unknown> | null | undefined, width = 120): string[] {
  return Object.entries(data ?? {})
    .filter(([, value]) => value !== null && value !== undefined && value !== "" && !(Array.isArray(value) && !value.length))
    .map(([name, value]) => {
      const text = `${name}: ${factText(value)}`;
      return text.length > width ? `${text.slice(0, width - 1)}…` : text;
    });
}
