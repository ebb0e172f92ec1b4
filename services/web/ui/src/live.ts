// Live telemetry over the platform's ThingsBoard-compatible WebSocket (`/api/ws`, docs/api.md
// "WebSocket"): `authCmd` with the session's token first, then one TIMESERIES command per
// subscription. The socket reconnects with a growing delay and subscribes everything again; the
// first update of each subscription carries the current values, so nothing is lost but the points
// in between.
import { get, session } from './api';

/** `{"temperature": [[ts, "21.5"], …]}`, values as text, as the WebSocket sends them. */
export type Points = Record<string, [number, string][]>;

export type LiveStatus = 'connecting' | 'open' | 'closed';

interface Sub {
  entityType: string;
  entityId: string;
  keys: string[];
  onData: (data: Points) => void;
  onError: (message: string) => void;
}

const ERRORS: Record<number, string> = {
  1: 'The platform could not serve this subscription',
  2: 'Bad subscription',
  3: 'Not allowed to read this entity',
};

export class LiveSocket {
  private ws: WebSocket | null = null;
  private subs = new Map<number, Sub>();
  private nextId = 1;
  private retry = 0;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private closed = false;
  status: LiveStatus = 'connecting';

  constructor(private readonly onStatus: (s: LiveStatus) => void) {
    this.connect();
  }

  subscribe(entityType: string, entityId: string, keys: string[], onData: Sub['onData'], onError: Sub['onError']): () => void {
    const cmdId = this.nextId++;
    const sub = { entityType, entityId, keys, onData, onError };
    this.subs.set(cmdId, sub);
    if (this.status === 'open') this.send([this.cmd(cmdId, sub)]);
    return () => {
      this.subs.delete(cmdId);
      if (this.status === 'open') this.send([{ type: 'TIMESERIES', cmdId, unsubscribe: true }]);
    };
  }

  close() {
    this.closed = true;
    clearTimeout(this.timer);
    this.ws?.close();
  }

  private cmd(cmdId: number, s: Sub) {
    // No `timeWindow`: the first update carries the latest value per key (the charts load their
    // window over REST, as the time window asks).
    return { type: 'TIMESERIES', cmdId, entityType: s.entityType, entityId: s.entityId, keys: s.keys.join(',') };
  }

  private send(cmds: unknown[]) {
    if (cmds.length && this.ws?.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify({ cmds }));
  }

  private setStatus(s: LiveStatus) {
    this.status = s;
    this.onStatus(s);
  }

  private async connect() {
    if (this.closed) return;
    this.setStatus('connecting');
    // A cheap authenticated call first: it refreshes an expired access token (api.ts).
    if (this.retry > 0) await get('/api/auth/user').catch(() => undefined);
    const token = session.token();
    if (this.closed || !token) return;
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const ws = new WebSocket(`${proto}//${location.host}/api/ws`);
    this.ws = ws;
    ws.onopen = () => {
      ws.send(JSON.stringify({ authCmd: { cmdId: 0, token } }));
      this.retry = 0;
      this.setStatus('open');
      this.send([...this.subs].map(([id, s]) => this.cmd(id, s)));
    };
    ws.onmessage = (e) => {
      let msg: { subscriptionId?: number; errorCode?: number; errorMsg?: string | null; data?: Points };
      try {
        msg = JSON.parse(String(e.data));
      } catch {
        return;
      }
      const sub = msg.subscriptionId === undefined ? undefined : this.subs.get(msg.subscriptionId);
      if (!sub) return;
      if (msg.errorCode) sub.onError(msg.errorMsg || ERRORS[msg.errorCode] || `Error ${msg.errorCode}`);
      else if (msg.data) sub.onData(msg.data);
    };
    ws.onclose = () => {
      if (this.ws !== ws || this.closed) return;
      this.setStatus('closed');
      const delay = Math.min(30_000, 500 * 2 ** this.retry++);
      this.timer = setTimeout(() => void this.connect(), delay);
    };
  }
}
