// Lists, creation, editing, deletion and customer assignment of devices, assets and customers.
import { useState } from 'preact/hooks';
import { del, get, post } from '../api';
import type { PageData } from '../api';
import { KINDS, isAssigned, str } from '../kinds';
import type { Entity, Field, Kind } from '../kinds';
import { Link, navigate } from '../router';
import { ConfirmButton, ErrorBox, Loaded, Pager, Spinner, useAction, useAsync, useUser } from '../ui';
import { DeviceData, DeviceToken } from './device';
import { Relations } from './relations';

const PAGE_SIZE = 10;

export function EntityList({ kind }: { kind: Kind }) {
  const user = useUser();
  const [search, setSearch] = useState('');
  const [page, setPage] = useState(0);
  const [creating, setCreating] = useState(false);
  const path = kind.listPath(user, page, PAGE_SIZE, search.trim());
  const list = useAsync(() => (path ? get<PageData<Entity>>(path) : Promise.resolve(null)), [path]);
  const canEdit = user.authority === 'TENANT_ADMIN';
  if (!path) return <ErrorBox error={`${kind.plural} are not available to your account.`} />;
  return (
    <section>
      <div class="toolbar">
        <h1>{kind.plural}</h1>
        <input
          type="search"
          aria-label={`Search ${kind.plural.toLowerCase()}`}
          placeholder="Search by name…"
          value={search}
          onInput={(e) => {
            setSearch((e.target as HTMLInputElement).value);
            setPage(0);
          }}
        />
        {canEdit && !creating && (
          <button type="button" class="primary" onClick={() => setCreating(true)}>
            Add {kind.singular}
          </button>
        )}
      </div>
      {creating && (
        <EntityForm
          kind={kind}
          title={`New ${kind.singular}`}
          submitLabel="Create"
          onCancel={() => setCreating(false)}
          onSave={async (values) => {
            const saved = await post<Entity>(kind.savePath, values);
            setCreating(false);
            navigate(`${kind.route}/${saved.id.id}`);
          }}
        />
      )}
      {list.loading && list.data && <Spinner label="Updating…" />}
      <Loaded value={list}>
        {(data) =>
          data && data.data.length === 0 ? (
            <p class="empty">{search ? `No ${kind.plural.toLowerCase()} match “${search}”.` : `No ${kind.plural.toLowerCase()} yet.`}</p>
          ) : (
            data && (
              <>
                <div class="table-wrap">
                  <table>
                    <thead>
                      <tr>
                        {kind.columns.map((c) => (
                          <th key={c.label}>{c.label}</th>
                        ))}
                      </tr>
                    </thead>
                    <tbody>
                      {data.data.map((e) => (
                        <tr key={e.id.id}>
                          {kind.columns.map((c, i) => (
                            <td key={c.label} data-label={c.label}>
                              {i === 0 ? <Link href={`${kind.route}/${e.id.id}`}>{c.value(e) || '(unnamed)'}</Link> : c.value(e)}
                            </td>
                          ))}
                        </tr>
                      ))}
                    </tbody>
                  </table>
                </div>
                <Pager page={page} totalPages={data.totalPages} total={data.totalElements} onPage={setPage} />
              </>
            )
          )
        }
      </Loaded>
    </section>
  );
}

/** A create or edit form over a kind's fields; empty required fields are refused here. */
export function EntityForm(props: {
  kind: Kind;
  title: string;
  submitLabel: string;
  initial?: Entity;
  onSave: (values: Record<string, string>) => Promise<void>;
  onCancel?: () => void;
}) {
  const { kind, initial } = props;
  const [values, setValues] = useState<Record<string, string>>(() =>
    Object.fromEntries(kind.fields.map((f) => [f.key, str(initial?.[f.key])])),
  );
  const action = useAction();
  const submit = (e: Event) => {
    e.preventDefault();
    const missing = kind.fields.find((f) => f.required && !values[f.key]?.trim());
    if (missing) {
      action.setError(new Error(`${missing.label} is required.`));
      return;
    }
    const cleaned = Object.fromEntries(Object.entries(values).map(([k, v]) => [k, v.trim()]));
    void action.run(() => props.onSave(cleaned));
  };
  return (
    <form class="card form" onSubmit={submit} noValidate aria-label={props.title}>
      <h2>{props.title}</h2>
      {kind.fields.map((f) => (
        <FieldInput key={f.key} field={f} value={values[f.key]} onChange={(v) => setValues({ ...values, [f.key]: v })} />
      ))}
      <ErrorBox error={action.error} />
      <div class="actions">
        <button type="submit" class="primary" disabled={action.busy}>
          {action.busy ? 'Saving…' : props.submitLabel}
        </button>
        {props.onCancel && (
          <button type="button" onClick={props.onCancel}>
            Cancel
          </button>
        )}
      </div>
    </form>
  );
}

function FieldInput({ field, value, onChange }: { field: Field; value: string; onChange: (v: string) => void }) {
  const suggestions = useAsync(
    () => (field.suggestionsPath ? get<{ type: string }[]>(field.suggestionsPath) : Promise.resolve([])),
    [field.suggestionsPath],
  );
  const listId = field.suggestionsPath ? `suggest-${field.key}` : undefined;
  return (
    <label>
      {field.label}
      {field.required && <span aria-hidden="true"> *</span>}
      <input name={field.key} value={value} list={listId} onInput={(e) => onChange((e.target as HTMLInputElement).value)} />
      {listId && (
        <datalist id={listId}>
          {(suggestions.data ?? []).map((s) => (
            <option key={s.type} value={s.type} />
          ))}
        </datalist>
      )}
    </label>
  );
}

export function EntityDetail({ kind, id }: { kind: Kind; id: string }) {
  const user = useUser();
  const info = useAsync(() => get<Entity>(kind.infoPath(id)), [kind.key, id]);
  const [editing, setEditing] = useState(false);
  const action = useAction();
  const canEdit = user.authority === 'TENANT_ADMIN';
  return (
    <section>
      <p class="crumbs">
        <Link href={kind.route}>{kind.plural}</Link> ›
      </p>
      <Loaded value={info}>
        {(e) => (
          <>
            <div class="toolbar">
              <h1>{str(e[kind.nameField])}</h1>
              {canEdit && (
                <>
                  {!editing && (
                    <button type="button" onClick={() => setEditing(true)}>
                      Edit
                    </button>
                  )}
                  <Link class="button" href={`/history/${kind.key}/${id}`}>
                    History
                  </Link>
                  <ConfirmButton
                    label="Delete"
                    question={`Delete ${kind.singular} “${str(e[kind.nameField])}”?`}
                    busy={action.busy}
                    onConfirm={() =>
                      void action.run(async () => {
                        await del(kind.deletePath(id));
                        navigate(kind.route);
                      })
                    }
                  />
                </>
              )}
            </div>
            <ErrorBox error={action.error} />
            {editing ? (
              <EntityForm
                kind={kind}
                title={`Edit ${kind.singular}`}
                submitLabel="Save"
                initial={e}
                onCancel={() => setEditing(false)}
                onSave={async (values) => {
                  // Save the entity as stored, with its version: a concurrent change answers 409.
                  const stored = await get<Entity>(kind.getPath(id));
                  await post(kind.savePath, { ...stored, ...values, version: e.version });
                  setEditing(false);
                  info.reload();
                }}
              />
            ) : (
              <dl class="card props">
                {kind.fields.map((f) => (
                  <div key={f.key}>
                    <dt>{f.label}</dt>
                    <dd data-field={f.key}>{str(e[f.key]) || '—'}</dd>
                  </div>
                ))}
                {kind.assignable && (
                  <div>
                    <dt>Customer</dt>
                    <dd data-field="customer">{isAssigned(e) ? str(e.customerTitle) : 'Not assigned'}</dd>
                  </div>
                )}
                <div>
                  <dt>Created</dt>
                  <dd>{new Date(Number(e.createdTime)).toLocaleString()}</dd>
                </div>
              </dl>
            )}
            {kind.key === 'device' && canEdit && <DeviceToken id={id} />}
            {kind.assignable && canEdit && <Assignment kind={kind} entity={e} onChange={info.reload} />}
            {kind.key === 'device' && <DeviceData id={id} />}
            {kind.key === 'customer' && <CustomerEntities customerId={id} />}
            <Relations entityType={kind.entityType} id={id} />
          </>
        )}
      </Loaded>
    </section>
  );
}

function Assignment({ kind, entity, onChange }: { kind: Kind; entity: Entity; onChange: () => void }) {
  const customers = useAsync(() => get<PageData<Entity>>('/api/customers?pageSize=100&page=0&sortProperty=title&sortOrder=ASC'), []);
  const [choice, setChoice] = useState('');
  const action = useAction();
  const id = entity.id.id;
  const assigned = isAssigned(entity);
  return (
    <div class="card" aria-label="Customer assignment">
      <h2>Customer</h2>
      {assigned ? (
        <p>
          Assigned to <strong>{str(entity.customerTitle)}</strong>.{' '}
          <button
            type="button"
            disabled={action.busy}
            onClick={() =>
              void action.run(async () => {
                await del(`/api/customer/${kind.key}/${id}`);
                onChange();
              })
            }
          >
            Unassign
          </button>
        </p>
      ) : (
        <Loaded value={customers}>
          {(page) =>
            page.data.length === 0 ? (
              <p class="empty">
                No customers yet: <Link href="/customers">create one</Link> to assign this {kind.singular}.
              </p>
            ) : (
              <form
                class="inline"
                onSubmit={(e) => {
                  e.preventDefault();
                  if (!choice) {
                    action.setError(new Error('Choose a customer first.'));
                    return;
                  }
                  void action.run(async () => {
                    await post(`/api/customer/${choice}/${kind.key}/${id}`);
                    onChange();
                  });
                }}
              >
                <label>
                  Assign to
                  <select name="customer" value={choice} onChange={(e) => setChoice((e.target as HTMLSelectElement).value)}>
                    <option value="">Choose a customer…</option>
                    {page.data.map((c) => (
                      <option key={c.id.id} value={c.id.id}>
                        {str(c.title)}
                      </option>
                    ))}
                  </select>
                </label>
                <button type="submit" disabled={action.busy}>
                  Assign
                </button>
              </form>
            )
          }
        </Loaded>
      )}
      <ErrorBox error={action.error} />
    </div>
  );
}

function CustomerEntities({ customerId }: { customerId: string }) {
  const devices = useAsync(() => get<PageData<Entity>>(`/api/customer/${customerId}/deviceInfos?pageSize=50&page=0`), [customerId]);
  const assets = useAsync(() => get<PageData<Entity>>(`/api/customer/${customerId}/assetInfos?pageSize=50&page=0`), [customerId]);
  const list = (kind: Kind, page: PageData<Entity>) =>
    page.data.length === 0 ? (
      <p class="empty">None assigned.</p>
    ) : (
      <ul>
        {page.data.map((e) => (
          <li key={e.id.id}>
            <Link href={`${kind.route}/${e.id.id}`}>{str(e.name)}</Link>
          </li>
        ))}
      </ul>
    );
  return (
    <div class="grid2">
      <div class="card">
        <h2>Devices of this customer</h2>
        <Loaded value={devices}>{(p) => list(KINDS.device, p)}</Loaded>
      </div>
      <div class="card">
        <h2>Assets of this customer</h2>
        <Loaded value={assets}>{(p) => list(KINDS.asset, p)}</Loaded>
      </div>
    </div>
  );
}
