// The few shared pieces of the UI: async loading with a spinner, error boxes, paging, a
// two-step delete, and the current user.
import { createContext } from 'preact';
import type { ComponentChildren } from 'preact';
import { useCallback, useContext, useEffect, useRef, useState } from 'preact/hooks';
import type { User } from './api';

export const UserContext = createContext<User | null>(null);

export function useUser(): User {
  const u = useContext(UserContext);
  if (!u) throw new Error('useUser outside a signed-in page');
  return u;
}

export interface Async<T> {
  data: T | undefined;
  error: Error | undefined;
  loading: boolean;
  reload: () => void;
  /** Shows `data` as the loaded value (an answer the caller already holds, such as what a save
   *  returned) and drops any load still under way. */
  set: (data: T) => void;
}

/** Runs `load` when `deps` change; the newest answer wins. */
export function useAsync<T>(load: () => Promise<T>, deps: unknown[]): Async<T> {
  const [state, setState] = useState<{ data?: T; error?: Error; loading: boolean }>({ loading: true });
  const [tick, setTick] = useState(0);
  const current = useRef(0);
  useEffect(() => {
    const mine = ++current.current;
    setState((s) => ({ ...s, loading: true }));
    load().then(
      (data) => mine === current.current && setState({ data, loading: false }),
      (error: Error) => mine === current.current && setState({ error, loading: false }),
    );
    // `deps` says when to load again; `load` is a fresh closure on every render.
  }, [...deps, tick]);
  const reload = useCallback(() => setTick((t) => t + 1), []);
  const set = useCallback((data: T) => {
    current.current++;
    setState({ data, loading: false });
  }, []);
  return { data: state.data, error: state.error, loading: state.loading, reload, set };
}

/** Runs an action (a save, a delete) and tracks its progress and error. */
export function useAction() {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<Error | undefined>();
  const run = async (f: () => Promise<void>) => {
    setBusy(true);
    setError(undefined);
    try {
      await f();
    } catch (e) {
      setError(e as Error);
    } finally {
      setBusy(false);
    }
  };
  return { busy, error, setError, run };
}

export function Spinner({ label = 'Loading…' }: { label?: string }) {
  return (
    <div class="spinner" role="status" aria-live="polite">
      <span class="spinner-dot" aria-hidden="true" />
      {label}
    </div>
  );
}

export function ErrorBox({ error }: { error: Error | string | undefined }) {
  if (!error) return null;
  const text = typeof error === 'string' ? error : error.message;
  return (
    <div class="error" role="alert">
      {text}
    </div>
  );
}

/** Loading, error or the content, for an [`Async`] value. */
export function Loaded<T>({ value, children }: { value: Async<T>; children: (data: T) => ComponentChildren }) {
  if (value.error) return <ErrorBox error={value.error} />;
  if (value.data === undefined) return <Spinner />;
  return <>{children(value.data)}</>;
}

export function Pager(props: { page: number; totalPages: number; total: number; onPage: (p: number) => void }) {
  const { page, totalPages, total, onPage } = props;
  return (
    <div class="pager">
      <span>
        {total} in total{totalPages > 1 ? ` · page ${page + 1} of ${totalPages}` : ''}
      </span>
      <button type="button" disabled={page <= 0} onClick={() => onPage(page - 1)}>
        Previous
      </button>
      <button type="button" disabled={page + 1 >= totalPages} onClick={() => onPage(page + 1)}>
        Next
      </button>
    </div>
  );
}

/** A delete button that asks once more before acting. */
export function ConfirmButton(props: { label: string; question: string; onConfirm: () => void; busy?: boolean }) {
  const [asking, setAsking] = useState(false);
  if (!asking)
    return (
      <button type="button" class="danger" disabled={props.busy} onClick={() => setAsking(true)}>
        {props.label}
      </button>
    );
  return (
    <span class="confirm" role="group">
      {props.question}{' '}
      <button
        type="button"
        class="danger"
        onClick={() => {
          setAsking(false);
          props.onConfirm();
        }}
      >
        Yes, {props.label.toLowerCase()}
      </button>{' '}
      <button type="button" onClick={() => setAsking(false)}>
        Cancel
      </button>
    </span>
  );
}

export function formatTime(ms: number | null | undefined): string {
  if (!ms) return '';
  return new Date(ms).toLocaleString();
}

/** The value for a `datetime-local` input, in local time. */
export function toLocalInput(ms: number): string {
  const d = new Date(ms - new Date(ms).getTimezoneOffset() * 60000);
  return d.toISOString().slice(0, 19);
}
