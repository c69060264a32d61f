import { useCallback, useEffect, useId, useRef, useState } from 'react';
import {
  accountSignals,
  icpScoreBatch,
  IcpmlError,
  recommendAccounts,
  recordInteraction,
  type AppTables,
  type IcpmlClient,
} from '../client.js';
import { errorText, useIcpml } from '../context.js';
import type { AccountSignals, IcpScore, InteractionType, Recommendation } from '../types.js';
import { ScoreBadge } from './ScoreBadge.js';

export interface RecommendedAccountsProps {
  /** The signed-in sales user (auth.uid()); icpml refuses another user's id for `authenticated` callers. */
  userId: string;
  /** How many accounts to list (1-100, default 10). */
  k?: number;
  /** A recommendation policy (default: the user's experiment variant, else icpml's default). */
  policy?: string;
  client?: IcpmlClient;
  tables?: Partial<AppTables>;
  title?: string;
  /** Called after "View" is recorded, e.g. to open the account. */
  onView?: (accountId: number) => void;
  /** Called after any interaction is recorded. */
  onInteraction?: (accountId: number, type: InteractionType) => void;
  /** Called with the listed account ids after each load. */
  onLoaded?: (accountIds: number[]) => void;
}

interface Item {
  rec: Recommendation;
  name: string | null;
  industry: string | null;
  score: IcpScore | null;
}

type ActionState = { type: InteractionType; status: 'saving' | 'done' | 'error'; message?: string };

const ACTIONS: { type: InteractionType; label: string; done: string }[] = [
  { type: 'view', label: 'View', done: 'Viewed' },
  { type: 'save', label: 'Save', done: 'Saved' },
  { type: 'contact', label: 'Contact', done: 'Contacted' },
  { type: 'dismiss', label: 'Dismiss', done: 'Dismissed' },
];

/** The summary without its trailing "exploring: ..." clause (shown as a marker instead). */
function reasonText(rec: Recommendation): string {
  const s = rec.reason?.summary ?? '';
  return s.replace(/,?\s*exploring:.*$/, '');
}

/**
 * The accounts this user should work next, from `recommend_accounts`, with
 * reasons and an "Exploring" marker; View / Save / Contact / Dismiss insert
 * into the app's user_interactions, which is how the recommender learns.
 */
export function RecommendedAccounts(props: RecommendedAccountsProps) {
  const { client, tables } = useIcpml(props.client, props.tables);
  const k = props.k ?? 10;
  const [items, setItems] = useState<Item[] | null>(null);
  const [error, setError] = useState<IcpmlError | null>(null);
  const [busy, setBusy] = useState(true);
  const [actions, setActions] = useState<Record<number, ActionState>>({});
  const [announce, setAnnounce] = useState('');
  const headingId = useId();
  const seq = useRef(0);
  // the latest callbacks, without reloading the list when the parent re-renders
  const callbacks = useRef(props);
  callbacks.current = props;

  const load = useCallback(async () => {
    const mine = ++seq.current;
    setBusy(true);
    setError(null);
    try {
      const recs = await recommendAccounts(client, props.userId, k, props.policy ? { policy: props.policy } : {});
      const ids = recs.map((r) => r.account_id);
      // names and full scores (with factors) are extras: the list stands without them
      const [signals, scores] = await Promise.all([
        accountSignals(client, ids, tables).catch(() => [] as AccountSignals[]),
        icpScoreBatch(client, ids).catch(() => [] as IcpScore[]),
      ]);
      if (mine !== seq.current) return;
      const byId = new Map(signals.map((s) => [s.account_id, s]));
      const scoreById = new Map(scores.map((s) => [s.account_id, s]));
      setItems(
        recs.map((rec) => ({
          rec,
          name: byId.get(rec.account_id)?.account_name ?? null,
          industry: byId.get(rec.account_id)?.industry ?? rec.reason?.industry ?? null,
          score: scoreById.get(rec.account_id) ?? null,
        })),
      );
      setActions({});
      callbacks.current.onLoaded?.(ids);
      setAnnounce(recs.length === 0 ? 'No accounts to recommend.' : `${recs.length} accounts recommended.`);
    } catch (e) {
      if (mine !== seq.current) return;
      setError(e instanceof IcpmlError ? e : new IcpmlError({ message: String(e) }));
    } finally {
      if (mine === seq.current) setBusy(false);
    }
  }, [client, tables.schema, tables.signals, props.userId, k, props.policy]);

  useEffect(() => {
    void load();
  }, [load]);

  const act = async (item: Item, type: InteractionType) => {
    const id = item.rec.account_id;
    const label = item.name ?? `account ${id}`;
    setActions((a) => ({ ...a, [id]: { type, status: 'saving' } }));
    try {
      await recordInteraction(client, props.userId, id, type, tables);
      const done = ACTIONS.find((a) => a.type === type)?.done ?? type;
      setActions((a) => ({ ...a, [id]: { type, status: 'done' } }));
      setAnnounce(`${done} ${label}.`);
      if (type === 'dismiss') setItems((list) => (list ? list.filter((x) => x.rec.account_id !== id) : list));
      if (type === 'view') callbacks.current.onView?.(id);
      callbacks.current.onInteraction?.(id, type);
    } catch (e) {
      const message = e instanceof IcpmlError ? errorText(e) : String(e);
      setActions((a) => ({ ...a, [id]: { type, status: 'error', message } }));
      setAnnounce(`Could not record ${type} for ${label}: ${message}`);
    }
  };

  const title = props.title ?? 'Recommended accounts';
  return (
    <section className="icpml-card icpml-recs" aria-labelledby={headingId} aria-busy={busy}>
      <header className="icpml-card__header">
        <h2 id={headingId} className="icpml-card__title">
          {title}
        </h2>
        <button type="button" className="icpml-button" onClick={() => void load()} disabled={busy}>
          {busy && items !== null ? 'Refreshing…' : 'Refresh'}
        </button>
      </header>
      <p className="icpml-sr-only" aria-live="polite" role="status">
        {announce}
      </p>
      {error && (
        <div className="icpml-error" role="alert">
          <p>Could not load recommendations: {errorText(error)}</p>
          <button type="button" className="icpml-button" onClick={() => void load()}>
            Try again
          </button>
        </div>
      )}
      {items === null && !error && (
        <ol className="icpml-recs__list" aria-label="Loading recommendations">
          {Array.from({ length: k }, (_, i) => (
            <li key={i} className="icpml-recs__item icpml-recs__item--skeleton" aria-hidden="true">
              <span className="icpml-skeleton icpml-skeleton--rank" />
              <span className="icpml-recs__main">
                <span className="icpml-skeleton icpml-skeleton--title" />
                <span className="icpml-skeleton icpml-skeleton--line" />
              </span>
              <span className="icpml-skeleton icpml-skeleton--badge" />
              <span className="icpml-skeleton icpml-skeleton--actions" />
            </li>
          ))}
        </ol>
      )}
      {items !== null && items.length === 0 && !error && (
        <p className="icpml-empty">
          No accounts to recommend right now: every account you can see is worked, dismissed or unscored. Try again
          later, or ask an admin to refresh the scores.
        </p>
      )}
      {items !== null && items.length > 0 && (
        <ol className="icpml-recs__list">
          {items.map((item) => {
            const id = item.rec.account_id;
            const exploring = item.rec.reason?.exploration === true;
            const state = actions[id];
            const name = item.name ?? `Account ${id}`;
            return (
              <li
                key={id}
                className="icpml-recs__item"
                data-account-id={id}
                data-exploring={exploring ? 'true' : 'false'}
                data-recommendation-id={item.rec.recommendation_id}
              >
                <span className="icpml-recs__rank" aria-label={`Rank ${item.rec.rank}`}>
                  {item.rec.rank}
                </span>
                <div className="icpml-recs__main">
                  <h3 className="icpml-recs__name">
                    {name}
                    {item.industry && <span className="icpml-recs__industry"> · {item.industry}</span>}
                  </h3>
                  <p className="icpml-recs__reason">{reasonText(item.rec)}</p>
                  {exploring && (
                    <span
                      className="icpml-tag icpml-tag--exploring"
                      title="icpml is not yet sure how you respond to accounts like this one, and shows it to learn."
                    >
                      Exploring
                      <span className="icpml-sr-only">
                        : icpml is not yet sure how you respond to accounts like this one, and shows it to learn
                      </span>
                    </span>
                  )}
                </div>
                <ScoreBadge
                  accountId={id}
                  score={
                    item.score ?? {
                      account_id: id,
                      score: item.rec.icp_score,
                      priority: item.rec.priority,
                      probability: null,
                      model: null,
                      model_version: null,
                      factors: null,
                      factor_method: null,
                    }
                  }
                />
                <div className="icpml-recs__actions" role="group" aria-label={`Actions for ${name}`}>
                  {ACTIONS.map((a) => (
                    <button
                      key={a.type}
                      type="button"
                      className={`icpml-button icpml-button--${a.type}`}
                      data-action={a.type}
                      disabled={state?.status === 'saving'}
                      aria-pressed={state?.status === 'done' && state.type === a.type ? true : undefined}
                      onClick={() => void act(item, a.type)}
                    >
                      {state?.status === 'done' && state.type === a.type ? a.done : a.label}
                    </button>
                  ))}
                </div>
                {state?.status === 'error' && (
                  <p className="icpml-recs__action-error" role="alert">
                    {state.message}
                  </p>
                )}
              </li>
            );
          })}
        </ol>
      )}
    </section>
  );
}
