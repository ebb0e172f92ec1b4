// A device's access token, attributes by scope and latest telemetry (filled by the device
// transports; the sections say so when a device has reported nothing yet).
import { useState } from 'preact/hooks';
import { get } from '../api';
import { ErrorBox, Loaded, formatTime, useAsync } from '../ui';

interface Credentials {
  credentialsType: string;
  credentialsId: string;
}

export function DeviceToken({ id }: { id: string }) {
  const creds = useAsync(() => get<Credentials>(`/api/device/${id}/credentials`), [id]);
  const [copied, setCopied] = useState<string | undefined>();
  const [copyError, setCopyError] = useState<string | undefined>();
  const copy = async (token: string) => {
    setCopyError(undefined);
    try {
      await navigator.clipboard.writeText(token);
      setCopied('Access token copied to the clipboard.');
    } catch {
      setCopyError('The browser refused clipboard access: select the token and copy it by hand.');
    }
  };
  return (
    <div class="card" aria-label="Credentials">
      <h2>Credentials</h2>
      <Loaded value={creds}>
        {(c) => (
          <div class="inline">
            <label>
              Access token
              <input readOnly name="accessToken" value={c.credentialsId} onFocus={(e) => (e.target as HTMLInputElement).select()} />
            </label>
            <button type="button" onClick={() => void copy(c.credentialsId)}>
              Copy access token
            </button>
          </div>
        )}
      </Loaded>
      {copied && <p class="ok" role="status">{copied}</p>}
      <ErrorBox error={copyError} />
    </div>
  );
}

interface Attribute {
  key: string;
  value: unknown;
  lastUpdateTs: number;
}

const SCOPES = [
  ['SERVER_SCOPE', 'Server'],
  ['SHARED_SCOPE', 'Shared'],
  ['CLIENT_SCOPE', 'Client'],
] as const;

export function DeviceData({ id }: { id: string }) {
  const [scope, setScope] = useState<string>(SCOPES[0][0]);
  const attrs = useAsync(() => get<Attribute[]>(`/api/plugins/telemetry/DEVICE/${id}/values/attributes/${scope}`), [id, scope]);
  const latest = useAsync(
    () => get<Record<string, { ts: number; value: unknown }[]>>(`/api/plugins/telemetry/DEVICE/${id}/values/timeseries?useStrictDataTypes=true`),
    [id],
  );
  return (
    <div class="grid2">
      <div class="card" aria-label="Attributes">
        <h2>Attributes</h2>
        <div class="tabs" role="tablist">
          {SCOPES.map(([s, label]) => (
            <button key={s} type="button" role="tab" aria-selected={s === scope} class={s === scope ? 'active' : ''} onClick={() => setScope(s)}>
              {label}
            </button>
          ))}
        </div>
        <Loaded value={attrs}>
          {(list) =>
            list.length === 0 ? (
              <p class="empty">No {scope.replace('_SCOPE', '').toLowerCase()} attributes.</p>
            ) : (
              <KeyValues rows={list.map((a) => [a.key, a.value, a.lastUpdateTs])} />
            )
          }
        </Loaded>
      </div>
      <div class="card" aria-label="Latest telemetry">
        <h2>Latest telemetry</h2>
        <Loaded value={latest}>
          {(map) => {
            const rows = Object.entries(map).map(([k, v]) => [k, v[0]?.value, v[0]?.ts] as [string, unknown, number]);
            return rows.length === 0 ? <p class="empty">This device has not reported telemetry yet.</p> : <KeyValues rows={rows} />;
          }}
        </Loaded>
      </div>
    </div>
  );
}

export function KeyValues({ rows }: { rows: [string, unknown, number][] }) {
  return (
    <div class="table-wrap">
      <table>
        <thead>
          <tr>
            <th>Key</th>
            <th>Value</th>
            <th>Updated</th>
          </tr>
        </thead>
        <tbody>
          {rows.map(([k, v, ts]) => (
            <tr key={k}>
              <td>{k}</td>
              <td>{typeof v === 'object' ? JSON.stringify(v) : String(v)}</td>
              <td>{formatTime(ts)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
