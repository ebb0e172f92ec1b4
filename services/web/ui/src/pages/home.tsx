// The landing page: counts of the tenant's (or customer's) entities, and what the devices
// have reported. Activity and latest values are shown only when devices have reported any.
import { ApiError, get } from '../api';
import type { PageData, User } from '../api';
import type { Entity } from '../kinds';
import { str } from '../kinds';
import { Link } from '../router';
import { Loaded, formatTime, useAsync, useUser } from '../ui';

/** How many devices the home page asks for activity and latest values. */
const SAMPLE = 20;

const total = (path: string) => get<PageData<unknown>>(path).then((p) => p.totalElements);

async function counts(user: User) {
  if (user.authority === 'CUSTOMER_USER') {
    const c = user.customerId.id;
    const [devices, assets] = await Promise.all([total(`/api/customer/${c}/devices?pageSize=1&page=0`), total(`/api/customer/${c}/assets?pageSize=1&page=0`)]);
    return { devices, assets, customers: undefined };
  }
  const [devices, assets, customers] = await Promise.all([
    total('/api/tenant/devices?pageSize=1&page=0'),
    total('/api/tenant/assets?pageSize=1&page=0'),
    total('/api/customers?pageSize=1&page=0'),
  ]);
  return { devices, assets, customers };
}

interface Reported {
  sampled: number;
  total: number;
  withActivity: number;
  active: number;
  latest: { device: Entity; key: string; value: unknown; ts: number }[];
}

/** What this user may not read counts as nothing reported; other errors are shown. */
async function orNothing<T>(p: Promise<T>, nothing: T): Promise<T> {
  try {
    return await p;
  } catch (e) {
    if (e instanceof ApiError && e.status === 403) return nothing;
    throw e;
  }
}

/** Activity (`active` server attribute) and latest values of the newest devices. */
async function reported(user: User): Promise<Reported> {
  const q = `pageSize=${SAMPLE}&page=0&sortProperty=createdTime&sortOrder=DESC`;
  const path = user.authority === 'CUSTOMER_USER' ? `/api/customer/${user.customerId.id}/deviceInfos?${q}` : `/api/tenant/deviceInfos?${q}`;
  const page = await get<PageData<Entity>>(path);
  const out: Reported = { sampled: page.data.length, total: page.totalElements, withActivity: 0, active: 0, latest: [] };
  await Promise.all(
    page.data.map(async (device) => {
      const base = `/api/plugins/telemetry/DEVICE/${device.id.id}`;
      const [attrs, latest] = await Promise.all([
        orNothing(get<{ key: string; value: unknown }[]>(`${base}/values/attributes/SERVER_SCOPE?keys=active`), []),
        orNothing(get<Record<string, { ts: number; value: unknown }[]>>(`${base}/values/timeseries?useStrictDataTypes=true`), {}),
      ]);
      const active = attrs.find((a) => a.key === 'active');
      if (active) {
        out.withActivity++;
        if (active.value === true || active.value === 'true') out.active++;
      }
      for (const [key, values] of Object.entries(latest)) if (values[0]) out.latest.push({ device, key, value: values[0].value, ts: values[0].ts });
    }),
  );
  out.latest.sort((a, b) => b.ts - a.ts);
  out.latest = out.latest.slice(0, 10);
  return out;
}

export function Home() {
  const user = useUser();
  const c = useAsync(() => counts(user), [user.id.id]);
  const r = useAsync(() => reported(user), [user.id.id]);
  return (
    <section>
      <h1>Home</h1>
      <Loaded value={c}>
        {(n) => (
          <div class="tiles">
            <Link class="tile" href="/devices">
              <span class="num" data-count="devices">{n.devices}</span> devices
            </Link>
            <Link class="tile" href="/assets">
              <span class="num" data-count="assets">{n.assets}</span> assets
            </Link>
            {n.customers !== undefined && (
              <Link class="tile" href="/customers">
                <span class="num" data-count="customers">{n.customers}</span> customers
              </Link>
            )}
            {r.data && r.data.withActivity > 0 && (
              <div class="tile">
                <span class="num" data-count="active">{r.data.active}</span> active devices
                {r.data.total > r.data.sampled && <small> of the {r.data.sampled} newest</small>}
              </div>
            )}
          </div>
        )}
      </Loaded>
      <Loaded value={r}>
        {(data) =>
          data.latest.length > 0 ? (
            <div class="card">
              <h2>Latest data</h2>
              <div class="table-wrap">
                <table>
                  <thead>
                    <tr>
                      <th>Device</th>
                      <th>Key</th>
                      <th>Value</th>
                      <th>Time</th>
                    </tr>
                  </thead>
                  <tbody>
                    {data.latest.map((l) => (
                      <tr key={`${l.device.id.id}-${l.key}`}>
                        <td>
                          <Link href={`/devices/${l.device.id.id}`}>{str(l.device.name)}</Link>
                        </td>
                        <td>{l.key}</td>
                        <td>{typeof l.value === 'object' ? JSON.stringify(l.value) : String(l.value)}</td>
                        <td>{formatTime(l.ts)}</td>
                      </tr>
                    ))}
                  </tbody>
                </table>
              </div>
            </div>
          ) : null
        }
      </Loaded>
    </section>
  );
}
