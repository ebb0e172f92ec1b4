// The auditor's view: an entity's events (who, what, when) and its state at a chosen time,
// both replayed from the log by the platform (`/api/history`, docs/api.md).
import { useState } from 'preact/hooks';
import { get, query } from '../api';
import { kindOfType } from '../kinds';
import { Link } from '../router';
import { ErrorBox, Loaded, Spinner, formatTime, toLocalInput, useAction, useAsync } from '../ui';

interface HistoryEvent {
  seq: number;
  eventId: string;
  version: number;
  eventType: string;
  schemaVersion: number;
  occurredAt: number;
  recordedAt: number;
  actor: { kind: string; id?: string | null; name?: string | null };
  payload: unknown;
}

interface StateAsOf {
  version: number;
  asOf: number;
  exists: boolean;
  deleted: boolean;
  state: Record<string, unknown> | null;
}

function who(actor: HistoryEvent['actor']): string {
  if (actor.name) return actor.name;
  return actor.id ? `${actor.kind} ${actor.id}` : actor.kind;
}

export function History({ type, id }: { type: string; id: string }) {
  const events = useAsync(() => get<HistoryEvent[]>(`/api/history/${type}/${id}`), [type, id]);
  const [at, setAt] = useState(() => toLocalInput(Date.now()));
  const [state, setState] = useState<StateAsOf | undefined>();
  const action = useAction();
  const kind = kindOfType(type);
  const showState = (ms: number) =>
    void action.run(async () => {
      setState(await get<StateAsOf>(`/api/history/${type}/${id}/state${query({ ts: ms })}`));
    });
  return (
    <section>
      <p class="crumbs">
        {kind ? <Link href={`${kind.route}/${id}`}>{kind.singular}</Link> : type} › history
      </p>
      <h1>History</h1>
      <Loaded value={events}>
        {(list) => (
          <ol class="timeline" aria-label="Events">
            {list.map((e) => (
              <li key={e.eventId} data-event-type={e.eventType}>
                <div class="when">{formatTime(e.recordedAt)}</div>
                <div>
                  <strong>{e.eventType}</strong> by <span class="who">{who(e.actor)}</span>{' '}
                  <span class="muted">
                    · version {e.version} · log sequence {e.seq}
                  </span>
                  <details>
                    <summary>Change</summary>
                    <pre>{JSON.stringify(e.payload, null, 2)}</pre>
                  </details>
                  <button
                    type="button"
                    class="link"
                    onClick={() => {
                      setAt(toLocalInput(e.recordedAt));
                      showState(e.recordedAt);
                    }}
                  >
                    State after this change
                  </button>
                </div>
              </li>
            ))}
          </ol>
        )}
      </Loaded>
      <form
        class="card inline"
        aria-label="State at a time"
        onSubmit={(e) => {
          e.preventDefault();
          const ms = new Date(at).getTime();
          if (Number.isNaN(ms)) return action.setError(new Error('Enter a valid date and time.'));
          showState(ms);
        }}
      >
        <label>
          State at
          <input type="datetime-local" step="1" name="asOf" value={at} onInput={(e) => setAt((e.target as HTMLInputElement).value)} />
        </label>
        <button type="submit" disabled={action.busy}>
          Show state
        </button>
      </form>
      {action.busy && <Spinner />}
      <ErrorBox error={action.error} />
      {state && (
        <div class="card" aria-label="State">
          <h2>As of {formatTime(state.asOf)}</h2>
          <p>
            {!state.exists ? 'Did not exist yet.' : state.deleted ? `Deleted (version ${state.version}).` : `Version ${state.version}.`}
          </p>
          {state.state && <pre>{JSON.stringify(state.state, null, 2)}</pre>}
        </div>
      )}
    </section>
  );
}
