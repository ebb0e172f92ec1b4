// An entity's relations in both directions; tenant administrators add and delete them.
import { useState } from 'preact/hooks';
import { del, get, post, query } from '../api';
import type { EntityId, PageData } from '../api';
import { KINDS, kindOfType, str } from '../kinds';
import type { Entity } from '../kinds';
import { Link } from '../router';
import { ConfirmButton, ErrorBox, Loaded, useAction, useAsync, useUser } from '../ui';

interface RelationInfo {
  from: EntityId;
  to: EntityId;
  type: string;
  typeGroup: string;
  fromName?: string;
  toName?: string;
}

export function Relations({ entityType, id }: { entityType: string; id: string }) {
  const user = useUser();
  const canEdit = user.authority === 'TENANT_ADMIN';
  const outgoing = useAsync(() => get<RelationInfo[]>(`/api/relations/info${query({ fromId: id, fromType: entityType })}`), [id]);
  const incoming = useAsync(() => get<RelationInfo[]>(`/api/relations/info${query({ toId: id, toType: entityType })}`), [id]);
  const action = useAction();
  const reload = () => {
    outgoing.reload();
    incoming.reload();
  };
  const remove = (r: RelationInfo) =>
    void action.run(async () => {
      await del(
        `/api/relation${query({ fromId: r.from.id, fromType: r.from.entityType, relationType: r.type, relationTypeGroup: r.typeGroup, toId: r.to.id, toType: r.to.entityType })}`,
      );
      reload();
    });
  const table = (rows: RelationInfo[], dir: 'from' | 'to') =>
    rows.length === 0 ? (
      <p class="empty">None.</p>
    ) : (
      <div class="table-wrap">
        <table>
          <thead>
            <tr>
              <th>Type</th>
              <th>{dir === 'from' ? 'To' : 'From'}</th>
              {canEdit && <th />}
            </tr>
          </thead>
          <tbody>
            {rows.map((r) => {
              const other = dir === 'from' ? r.to : r.from;
              const name = (dir === 'from' ? r.toName : r.fromName) || other.id;
              const kind = kindOfType(other.entityType);
              return (
                <tr key={`${r.type}-${other.id}`}>
                  <td>{r.type}</td>
                  <td>
                    {other.entityType.toLowerCase()}: {kind ? <Link href={`${kind.route}/${other.id}`}>{name}</Link> : name}
                  </td>
                  {canEdit && (
                    <td>
                      <ConfirmButton label="Delete" question="Delete this relation?" onConfirm={() => remove(r)} />
                    </td>
                  )}
                </tr>
              );
            })}
          </tbody>
        </table>
      </div>
    );
  return (
    <div class="card" aria-label="Relations">
      <h2>Relations</h2>
      <ErrorBox error={action.error} />
      <div class="grid2">
        <div>
          <h3>From this entity</h3>
          <Loaded value={outgoing}>{(rows) => table(rows, 'from')}</Loaded>
        </div>
        <div>
          <h3>To this entity</h3>
          <Loaded value={incoming}>{(rows) => table(rows, 'to')}</Loaded>
        </div>
      </div>
      {canEdit && <AddRelation entityType={entityType} id={id} onAdded={reload} />}
    </div>
  );
}

function AddRelation({ entityType, id, onAdded }: { entityType: string; id: string; onAdded: () => void }) {
  const [direction, setDirection] = useState<'from' | 'to'>('from');
  const [type, setType] = useState('Contains');
  const [otherType, setOtherType] = useState<'DEVICE' | 'ASSET' | 'CUSTOMER'>('ASSET');
  const [other, setOther] = useState('');
  const action = useAction();
  const user = useUser();
  const otherKind = kindOfType(otherType) ?? KINDS.device;
  const candidates = useAsync(() => {
    const path = otherKind.listPath(user, 0, 100, '');
    return path ? get<PageData<Entity>>(path) : Promise.resolve({ data: [], totalPages: 0, totalElements: 0, hasNext: false });
  }, [otherType]);
  const submit = (e: Event) => {
    e.preventDefault();
    if (!type.trim()) return action.setError(new Error('Relation type is required.'));
    if (!other) return action.setError(new Error(`Choose the ${otherKind.singular} to relate to.`));
    const self = { entityType, id };
    const them = { entityType: otherType, id: other };
    void action.run(async () => {
      await post('/api/relation', {
        from: direction === 'from' ? self : them,
        to: direction === 'from' ? them : self,
        type: type.trim(),
        typeGroup: 'COMMON',
      });
      setOther('');
      onAdded();
    });
  };
  return (
    <form class="inline relation-form" onSubmit={submit} noValidate aria-label="Add relation">
      <label>
        Direction
        <select value={direction} onChange={(e) => setDirection((e.target as HTMLSelectElement).value as 'from' | 'to')}>
          <option value="from">from this entity to…</option>
          <option value="to">to this entity from…</option>
        </select>
      </label>
      <label>
        Relation type
        <input name="relationType" value={type} onInput={(e) => setType((e.target as HTMLInputElement).value)} />
      </label>
      <label>
        Entity type
        <select
          value={otherType}
          onChange={(e) => {
            setOtherType((e.target as HTMLSelectElement).value as 'DEVICE' | 'ASSET' | 'CUSTOMER');
            setOther('');
          }}
        >
          <option value="DEVICE">Device</option>
          <option value="ASSET">Asset</option>
          <option value="CUSTOMER">Customer</option>
        </select>
      </label>
      <label>
        Entity
        <select name="relationTarget" value={other} onChange={(e) => setOther((e.target as HTMLSelectElement).value)}>
          <option value="">{candidates.loading ? 'Loading…' : 'Choose…'}</option>
          {(candidates.data?.data ?? [])
            .filter((c) => c.id.id !== id)
            .map((c) => (
              <option key={c.id.id} value={c.id.id}>
                {str(c[otherKind.nameField])}
              </option>
            ))}
        </select>
      </label>
      <button type="submit" disabled={action.busy}>
        Add relation
      </button>
      <ErrorBox error={action.error ?? candidates.error} />
    </form>
  );
}
