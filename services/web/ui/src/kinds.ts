// What differs between devices, assets and customers in the UI: paths, fields and columns.
import { NULL_UUID, query } from './api';
import type { User } from './api';

export type KindKey = 'device' | 'asset' | 'customer';

export interface Field {
  key: string;
  label: string;
  required?: boolean;
  /** Suggestions for the input, from this API path (`/api/device/types`). */
  suggestionsPath?: string;
}

// The JSON of an entity as the API returns it; fields vary by kind and are read through `str()`.
export type Entity = Record<string, unknown> & { id: { entityType: string; id: string }; version?: number };

export interface Kind {
  key: KindKey;
  entityType: 'DEVICE' | 'ASSET' | 'CUSTOMER';
  singular: string;
  plural: string;
  route: string;
  nameField: 'name' | 'title';
  fields: Field[];
  columns: { label: string; value: (e: Entity) => string }[];
  /** The list for this user, or null when the user has none of these. */
  listPath: (user: User, page: number, pageSize: number, textSearch: string) => string | null;
  /** The entity as it is saved (POST body). */
  getPath: (id: string) => string;
  /** The entity with names of what it refers to, for display. */
  infoPath: (id: string) => string;
  savePath: string;
  deletePath: (id: string) => string;
  assignable: boolean;
}

export const str = (v: unknown): string => (v === null || v === undefined ? '' : String(v));

export const isAssigned = (e: Entity): boolean => {
  const c = e.customerId as { id?: string } | null | undefined;
  return !!c?.id && c.id !== NULL_UUID;
};

const created = { label: 'Created', value: (e: Entity) => new Date(Number(e.createdTime)).toLocaleString() };

function pageQuery(page: number, pageSize: number, textSearch: string) {
  return query({ pageSize, page, textSearch, sortProperty: 'createdTime', sortOrder: 'DESC' });
}

/** Devices and assets differ only in names and paths: a tenant's (or a customer's) entities with
 *  a profile type, a label and an owner. */
function ownedKind(key: 'device' | 'asset', entityType: 'DEVICE' | 'ASSET', plural: string): Kind {
  const list = key === 'device' ? 'deviceInfos' : 'assetInfos';
  return {
    key,
    entityType,
    singular: key,
    plural,
    route: `/${key}s`,
    nameField: 'name',
    fields: [
      { key: 'name', label: 'Name', required: true },
      { key: 'label', label: 'Label' },
      { key: 'type', label: `Type (${key} profile)`, suggestionsPath: `/api/${key}/types` },
    ],
    columns: [
      { label: 'Name', value: (e) => str(e.name) },
      { label: 'Type', value: (e) => str(e.type) },
      { label: 'Label', value: (e) => str(e.label) },
      { label: 'Customer', value: (e) => str(e.customerTitle) },
      created,
    ],
    listPath: (user, page, pageSize, textSearch) => {
      const q = pageQuery(page, pageSize, textSearch);
      if (user.authority === 'TENANT_ADMIN') return `/api/tenant/${list}${q}`;
      if (user.authority === 'CUSTOMER_USER') return `/api/customer/${user.customerId.id}/${list}${q}`;
      return null;
    },
    getPath: (id) => `/api/${key}/${id}`,
    infoPath: (id) => `/api/${key}/info/${id}`,
    savePath: `/api/${key}`,
    deletePath: (id) => `/api/${key}/${id}`,
    assignable: true,
  };
}

export const KINDS: Record<KindKey, Kind> = {
  device: ownedKind('device', 'DEVICE', 'Devices'),
  asset: ownedKind('asset', 'ASSET', 'Assets'),
  customer: {
    key: 'customer',
    entityType: 'CUSTOMER',
    singular: 'customer',
    plural: 'Customers',
    route: '/customers',
    nameField: 'title',
    fields: [
      { key: 'title', label: 'Title', required: true },
      { key: 'email', label: 'Email' },
      { key: 'phone', label: 'Phone' },
    ],
    columns: [
      { label: 'Title', value: (e) => str(e.title) },
      { label: 'Email', value: (e) => str(e.email) },
      { label: 'Phone', value: (e) => str(e.phone) },
      created,
    ],
    listPath: (user, page, pageSize, textSearch) =>
      user.authority === 'TENANT_ADMIN' ? `/api/customers${pageQuery(page, pageSize, textSearch)}` : null,
    getPath: (id) => `/api/customer/${id}`,
    infoPath: (id) => `/api/customer/${id}`,
    savePath: '/api/customer',
    deletePath: (id) => `/api/customer/${id}`,
    assignable: false,
  },
};

export function kindOfType(entityType: string): Kind | undefined {
  return Object.values(KINDS).find((k) => k.entityType === entityType.toUpperCase());
}
