// The REST API the UI calls: ThingsBoard's paths and JSON (docs/api.md). Tokens live in
// sessionStorage (one browser tab = one session); a 401 is retried once after refreshing the
// access token with the refresh token.

const TOKEN = 'thinglake.token';
const REFRESH = 'thinglake.refreshToken';

/** An answer of the API that is not a success, with ThingsBoard's `message` when it has one. */
export class ApiError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly errorCode?: number,
  ) {
    super(message);
  }
}

export interface EntityId {
  entityType: string;
  id: string;
}

export interface PageData<T> {
  data: T[];
  totalPages: number;
  totalElements: number;
  hasNext: boolean;
}

export interface User {
  id: EntityId;
  email: string;
  authority: 'SYS_ADMIN' | 'TENANT_ADMIN' | 'CUSTOMER_USER';
  tenantId: EntityId;
  customerId: EntityId;
  firstName?: string | null;
  lastName?: string | null;
}

/** Listeners told when the session ends (logout, or a refresh token that no longer works). */
const sessionEnded = new Set<() => void>();

export const session = {
  token: () => sessionStorage.getItem(TOKEN),
  set(token: string, refreshToken: string) {
    sessionStorage.setItem(TOKEN, token);
    sessionStorage.setItem(REFRESH, refreshToken);
  },
  clear() {
    const had = sessionStorage.getItem(TOKEN) !== null;
    sessionStorage.removeItem(TOKEN);
    sessionStorage.removeItem(REFRESH);
    if (had) sessionEnded.forEach((f) => f());
  },
  onEnd(f: () => void) {
    sessionEnded.add(f);
    return () => sessionEnded.delete(f);
  },
};

/** The null id ThingsBoard uses for "no customer". */
export const NULL_UUID = '13814000-1dd2-11b2-8080-808080808080';

let refreshing: Promise<boolean> | null = null;

async function refresh(): Promise<boolean> {
  const refreshToken = sessionStorage.getItem(REFRESH);
  if (!refreshToken) return false;
  refreshing ??= (async () => {
    try {
      const res = await fetch('/api/auth/token', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ refreshToken }),
      });
      if (!res.ok) return false;
      const pair = await res.json();
      session.set(pair.token, pair.refreshToken);
      return true;
    } catch {
      return false;
    } finally {
      refreshing = null;
    }
  })();
  return refreshing;
}

/** What else a request may carry: a signal that cancels it. */
export interface RequestOptions {
  signal?: AbortSignal;
}

/** Raised for a request cancelled through its signal. */
export class Cancelled extends Error {
  constructor() {
    super('Cancelled');
  }
}

async function send(method: string, path: string, body: unknown, options: RequestOptions): Promise<Response> {
  const headers: Record<string, string> = { Accept: 'application/json, text/plain' };
  const token = session.token();
  if (token) headers['X-Authorization'] = `Bearer ${token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  try {
    return await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal: options.signal });
  } catch (e) {
    if (options.signal?.aborted) throw new Cancelled();
    throw new ApiError(`Cannot reach the platform (${(e as Error).message}). Is it running?`, 0);
  }
}

/** Sends a request, refreshing an expired access token once; a refused answer becomes an [`ApiError`]. */
async function request(method: string, path: string, body: unknown, options: RequestOptions): Promise<Response> {
  let res = await send(method, path, body, options);
  if (res.status === 401 && session.token() && !path.startsWith('/api/auth/')) {
    if (await refresh()) {
      res = await send(method, path, body, options);
    } else {
      session.clear();
      throw new ApiError('Your session has expired: please log in again.', 401);
    }
  }
  if (!res.ok) {
    const text = await res.text().catch(() => '');
    let parsed: { message?: string; errorCode?: number } | undefined;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      parsed = undefined;
    }
    const msg = parsed?.message || text.trim().slice(0, 300);
    throw new ApiError(msg || `The platform answered ${res.status} ${res.statusText}`.trim(), res.status, parsed?.errorCode);
  }
  return res;
}

/** Calls the API; resolves to the JSON (or text) body, rejects with an [`ApiError`]. */
export async function api<T = unknown>(method: string, path: string, body?: unknown, options: RequestOptions = {}): Promise<T> {
  const res = await request(method, path, body, options);
  const text = await res.text().catch((e) => {
    if (options.signal?.aborted) throw new Cancelled();
    throw e;
  });
  if (!text) return undefined as T;
  try {
    return JSON.parse(text) as T;
  } catch {
    return text as T;
  }
}

/** Calls the API and saves the answer's body as a file named `filename` (a download). */
export async function download(method: string, path: string, body: unknown, filename: string, options: RequestOptions = {}): Promise<number> {
  const res = await request(method, path, body, options);
  const blob = await res.blob();
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = filename;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
  return blob.size;
}

export const get = <T>(path: string) => api<T>('GET', path);
export const post = <T>(path: string, body: unknown = {}) => api<T>('POST', path, body);
export const del = <T>(path: string) => api<T>('DELETE', path);

/** `?a=1&b=x` from the defined values of `params`. */
export function query(params: Record<string, string | number | undefined | null>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  const s = q.toString();
  return s ? `?${s}` : '';
}

export async function login(username: string, password: string): Promise<void> {
  const pair = await api<{ token: string; refreshToken: string }>('POST', '/api/auth/login', { username, password });
  session.set(pair.token, pair.refreshToken);
}

export async function logout(): Promise<void> {
  try {
    await api('POST', '/api/auth/logout');
  } catch {
    // Tokens are stateless (docs/api.md): ending the session here is what matters.
  }
  session.clear();
}
