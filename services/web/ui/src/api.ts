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

async function send(method: string, path: string, body: unknown): Promise<Response> {
  const headers: Record<string, string> = { Accept: 'application/json, text/plain' };
  const token = session.token();
  if (token) headers['X-Authorization'] = `Bearer ${token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  try {
    return await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    throw new ApiError(`Cannot reach the platform (${(e as Error).message}). Is it running?`, 0);
  }
}

/** Calls the API; resolves to the JSON (or text) body, rejects with an [`ApiError`]. */
export async function api<T = unknown>(method: string, path: string, body?: unknown): Promise<T> {
  let res = await send(method, path, body);
  if (res.status === 401 && session.token() && !path.startsWith('/api/auth/')) {
    if (await refresh()) {
      res = await send(method, path, body);
    } else {
      session.clear();
      throw new ApiError('Your session has expired: please log in again.', 401);
    }
  }
  const text = await res.text();
  let parsed: unknown = undefined;
  if (text) {
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = text;
    }
  }
  if (!res.ok) {
    const msg = (parsed as { message?: string } | undefined)?.message;
    const code = (parsed as { errorCode?: number } | undefined)?.errorCode;
    throw new ApiError(msg || `The platform answered ${res.status} ${res.statusText}`.trim(), res.status, code);
  }
  return parsed as T;
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
