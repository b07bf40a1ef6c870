// The console's one way to the backend: same-origin /api, the session cookie, and the CSRF token on
// every unsafe method. Refusals come back as problem+json and are raised as ApiError, kept word for word.

export interface FieldError {
  field: string;
  message: string;
  type?: string;
}

export interface Problem {
  type?: string;
  title?: string;
  status: number;
  detail?: string;
  code?: string;
  rule?: string;
  message_zh?: string;
  message_en?: string;
  errors?: FieldError[];
  instance?: string;
  [fact: string]: unknown;
}

export class ApiError extends Error {
  readonly status: number;
  readonly problem: Problem;

  constructor(problem: Problem) {
    super(problem.detail ?? problem.title ?? `HTTP ${problem.status}`);
    this.status = problem.status;
    this.problem = problem;
  }
}

export type Role = "support" | "ops" | "admin";

export interface User {
  username: string;
  display_name: string;
  roles: Role[];
  shops: string[] | null;
}

export interface Session {
  user: User;
  csrf_token: string;
}

export interface Page<T> {
  items: T[];
  next_cursor: string | null;
}

export type Query = Record<string, string | number | boolean | null | undefined>;

const UNSAFE = new Set(["POST", "PUT", "PATCH", "DELETE"]);

export function withQuery(path: string, query?: Query): string {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query ?? {})) {
    if (value !== undefined && value !== null && value !== "") params.set(key, String(value));
  }
  const text = params.toString();
  return text ? `${path}${path.includes("?") ? "&" : "?"}${text}` : path;
}

async function problemOf(response: Response): Promise<Problem> {
  const text = await response.text();
  try {
    const body = JSON.parse(text) as Partial<Problem>;
    if (body && typeof body === "object") return { ...body, status: body.status ?? response.status };
  } catch {
    // not JSON: a proxy or the browser answered; keep what it said
  }
  return { status: response.status, title: response.statusText, detail: text || response.statusText };
}

/** The filename a download should get: Content-Disposition's, else the fallback. */
export function filenameOf(disposition: string | null, fallback: string): string {
  if (!disposition) return fallback;
  const star = /filename\*=UTF-8''([^;]+)/i.exec(disposition);
  if (star) return decodeURIComponent(star[1]);
  const plain = /filename="?([^";]+)"?/i.exec(disposition);
  return plain ? plain[1] : fallback;
}

export class ApiClient {
  csrfToken: string | null = null;
  onUnauthorized: (() => void) | null = null;
  private readonly fetcher: typeof fetch;

  constructor(fetcher?: typeof fetch) {
    this.fetcher = fetcher ?? ((input, init) => fetch(input, init));
  }

  async raw(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<Response> {
    const sent: Record<string, string> = { Accept: "application/json, application/problem+json", ...headers };
    if (UNSAFE.has(method.toUpperCase()) && this.csrfToken) sent["X-CSRF-Token"] = this.csrfToken;
    if (body !== undefined) sent["Content-Type"] = "application/json";
    const response = await this.fetcher(path, {
      method,
      headers: sent,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
    });
    if (!response.ok) {
      const problem = await problemOf(response);
      if (response.status === 401 && !path.startsWith("/api/session")) this.onUnauthorized?.();
      throw new ApiError(problem);
    }
    return response;
  }

  async request<T>(method: string, path: string, body?: unknown, headers?: Record<string, string>): Promise<T> {
    const response = await this.raw(method, path, body, headers);
    if (response.status === 204) return undefined as T;
    const text = await response.text();
    return (text ? JSON.parse(text) : undefined) as T;
  }

  get<T>(path: string, query?: Query): Promise<T> {
    return this.request<T>("GET", withQuery(path, query));
  }

  post<T>(path: string, body?: unknown, headers?: Record<string, string>): Promise<T> {
    return this.request<T>("POST", path, body, headers);
  }

  put<T>(path: string, body?: unknown, headers?: Record<string, string>): Promise<T> {
    return this.request<T>("PUT", path, body, headers);
  }

  async signIn(username: string, password: string): Promise<Session> {
    const session = await this.request<Session>("POST", "/api/session", { username, password });
    this.csrfToken = session.csrf_token;
    return session;
  }

  async current(): Promise<Session | null> {
    try {
      const session = await this.request<Session>("GET", "/api/session");
      this.csrfToken = session.csrf_token;
      return session;
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) return null;
      throw error;
    }
  }

  async signOut(): Promise<void> {
    try {
      await this.request<void>("DELETE", "/api/session");
    } finally {
      this.csrfToken = null;
    }
  }

  /** Fetch a file (a register) and hand it to the browser as a download. */
  async download(path: string, fallbackName: string): Promise<string> {
    const response = await this.raw("GET", path, undefined, { Accept: "*/*" });
    const name = filenameOf(response.headers.get("Content-Disposition"), fallbackName);
    const url = URL.createObjectURL(await response.blob());
    const link = document.createElement("a");
    link.href = url;
    link.download = name;
    document.body.appendChild(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
    return name;
  }
}

export const api = new ApiClient();

// Paths of the three services behind the console's same-origin proxy.
export const caseApi = (path: string) => `/api/case-api${path}`;
export const watcherApi = (path: string) => `/api/logistics-watcher${path}`;
export const payoutApi = (path: string) => `/api/payout-worker${path}`;
