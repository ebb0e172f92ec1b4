// The system administrator's view: tenants, and their administrators with activation links.
import { useState } from 'preact/hooks';
import { get, post, query } from '../api';
import type { PageData } from '../api';
import { str } from '../kinds';
import type { Entity } from '../kinds';
import { Link, navigate } from '../router';
import { ErrorBox, Loaded, Pager, Spinner, useAction, useAsync } from '../ui';

export function Tenants() {
  const [search, setSearch] = useState('');
  const [page, setPage] = useState(0);
  const [title, setTitle] = useState('');
  const list = useAsync(
    () => get<PageData<Entity>>(`/api/tenants${query({ pageSize: 10, page, textSearch: search.trim(), sortProperty: 'createdTime', sortOrder: 'DESC' })}`),
    [page, search],
  );
  const action = useAction();
  const create = (e: Event) => {
    e.preventDefault();
    if (!title.trim()) return action.setError(new Error('Title is required.'));
    void action.run(async () => {
      const t = await post<Entity>('/api/tenant', { title: title.trim() });
      navigate(`/tenants/${t.id.id}`);
    });
  };
  return (
    <section>
      <div class="toolbar">
        <h1>Tenants</h1>
        <input type="search" aria-label="Search tenants" placeholder="Search by title…" value={search} onInput={(e) => { setSearch((e.target as HTMLInputElement).value); setPage(0); }} />
      </div>
      <form class="card inline" onSubmit={create} noValidate aria-label="New tenant">
        <label>
          New tenant
          <input name="title" placeholder="Title" value={title} onInput={(e) => setTitle((e.target as HTMLInputElement).value)} />
        </label>
        <button type="submit" class="primary" disabled={action.busy}>
          Create tenant
        </button>
        <ErrorBox error={action.error} />
      </form>
      <Loaded value={list}>
        {(data) => (
          <>
            <div class="table-wrap">
              <table>
                <thead>
                  <tr>
                    <th>Title</th>
                    <th>Email</th>
                    <th>Created</th>
                  </tr>
                </thead>
                <tbody>
                  {data.data.map((t) => (
                    <tr key={t.id.id}>
                      <td>
                        <Link href={`/tenants/${t.id.id}`}>{str(t.title)}</Link>
                      </td>
                      <td>{str(t.email)}</td>
                      <td>{new Date(Number(t.createdTime)).toLocaleString()}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
            <Pager page={page} totalPages={data.totalPages} total={data.totalElements} onPage={setPage} />
          </>
        )}
      </Loaded>
    </section>
  );
}

export function TenantDetail({ id }: { id: string }) {
  const tenant = useAsync(() => get<Entity>(`/api/tenant/${id}`), [id]);
  const admins = useAsync(() => get<PageData<Entity>>(`/api/tenant/${id}/users?pageSize=50&page=0`), [id]);
  const [form, setForm] = useState({ email: '', firstName: '', lastName: '' });
  const [link, setLink] = useState<string | undefined>();
  const action = useAction();
  const create = (e: Event) => {
    e.preventDefault();
    if (!/^[^@\s]+@[^@\s]+$/.test(form.email.trim())) return action.setError(new Error('Enter the administrator’s email address.'));
    setLink(undefined);
    void action.run(async () => {
      const user = await post<Entity>('/api/user?sendActivationMail=false', {
        email: form.email.trim(),
        firstName: form.firstName.trim() || null,
        lastName: form.lastName.trim() || null,
        authority: 'TENANT_ADMIN',
        tenantId: { entityType: 'TENANT', id },
      });
      setLink(await get<string>(`/api/user/${user.id.id}/activationLink`));
      setForm({ email: '', firstName: '', lastName: '' });
      admins.reload();
    });
  };
  const token = link ? new URL(link, location.origin).searchParams.get('activateToken') : null;
  return (
    <section>
      <p class="crumbs">
        <Link href="/tenants">Tenants</Link> ›
      </p>
      <Loaded value={tenant}>{(t) => <h1>{str(t.title)}</h1>}</Loaded>
      <div class="card">
        <h2>Tenant administrators</h2>
        <Loaded value={admins}>
          {(p) =>
            p.data.length === 0 ? (
              <p class="empty">No administrators yet.</p>
            ) : (
              <ul>
                {p.data.map((u) => (
                  <li key={u.id.id}>
                    {str(u.email)} {str(u.firstName)} {str(u.lastName)}
                  </li>
                ))}
              </ul>
            )
          }
        </Loaded>
      </div>
      <form class="card form" onSubmit={create} noValidate aria-label="New tenant administrator">
        <h2>New tenant administrator</h2>
        <label>
          Email
          <input name="email" type="email" value={form.email} onInput={(e) => setForm({ ...form, email: (e.target as HTMLInputElement).value })} />
        </label>
        <label>
          First name
          <input name="firstName" value={form.firstName} onInput={(e) => setForm({ ...form, firstName: (e.target as HTMLInputElement).value })} />
        </label>
        <label>
          Last name
          <input name="lastName" value={form.lastName} onInput={(e) => setForm({ ...form, lastName: (e.target as HTMLInputElement).value })} />
        </label>
        <ErrorBox error={action.error} />
        <button type="submit" class="primary" disabled={action.busy}>
          Create administrator
        </button>
        {action.busy && <Spinner />}
      </form>
      {link && (
        <div class="card" aria-label="Activation link">
          <h2>Activation link</h2>
          <p>Send this link to the new administrator; it works once.</p>
          <p>
            <code class="activation-link">{link}</code>
          </p>
          {token && (
            <p>
              In this web UI: <a href={`/login/createPassword?activateToken=${encodeURIComponent(token)}`}>set the password here</a>.
            </p>
          )}
        </div>
      )}
    </section>
  );
}
