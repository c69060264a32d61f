/*
 * The demo dashboard: @icpml/ui over supabase-js, against the development
 * server (dev/server.mjs), which hands out tokens for any sales user and for
 * service_role. A real app gets the user's token from Supabase Auth and
 * renders the model report and experiments only in an admin area whose
 * client runs with service_role on a server.
 */
import { StrictMode, useEffect, useMemo, useState } from 'react';
import { createRoot } from 'react-dom/client';
import { createClient, type SupabaseClient } from '@supabase/supabase-js';
import {
  ExperimentResults,
  IcpmlProvider,
  IntentSignalsChart,
  listExperiments,
  ModelReport,
  RecommendedAccounts,
  ScoreBadge,
  type ExperimentSummary,
  type IcpmlClient,
} from '../src/index.js';
import '../src/styles.css';
import './demo.css';

const origin = window.location.origin;

async function token(query: string): Promise<string> {
  const r = await fetch(`${origin}/dev/token?${query}`);
  if (!r.ok) throw new Error(`token: HTTP ${r.status}`);
  return ((await r.json()) as { access_token: string }).access_token;
}

function clientWith(anonKey: string, jwt: string): SupabaseClient {
  return createClient(origin, anonKey, { accessToken: async () => jwt });
}

interface Session {
  userId: string;
  client: IcpmlClient;
}

async function session(anonKey: string, userId: string): Promise<Session> {
  return { userId, client: clientWith(anonKey, await token(`sub=${encodeURIComponent(userId)}&role=authenticated`)) };
}

function App(props: { anonKey: string; service: IcpmlClient; users: { user_id: string; display_name: string }[]; initial: Session }) {
  const params = new URLSearchParams(window.location.search);
  // the page keeps showing the current user until the next one's token is there: no blank, no jump
  const [current, setCurrent] = useState<Session>(props.initial);
  const [userId, setUserId] = useState(props.initial.userId);
  const [account, setAccount] = useState<number | null>(null);
  const [lookup, setLookup] = useState(params.get('account') ?? '');
  const [experiments, setExperiments] = useState<ExperimentSummary[] | null>(null);

  useEffect(() => {
    const u = new URL(window.location.href);
    u.searchParams.set('user', userId);
    window.history.replaceState(null, '', u);
    if (userId === current.userId) return;
    let live = true;
    void session(props.anonKey, userId).then((s) => {
      if (!live) return;
      setAccount(null);
      setCurrent(s);
    });
    return () => {
      live = false;
    };
  }, [userId, current.userId, props.anonKey]);

  useEffect(() => {
    listExperiments(props.service).then(setExperiments, () => setExperiments([]));
  }, [props.service]);

  const lookupId = /^\d+$/.test(lookup) ? Number(lookup) : null;
  const user = props.users.find((u) => u.user_id === current.userId);

  return (
    <div className="demo">
      <header className="demo__header">
        <div>
          <h1>icpml demo dashboard</h1>
          <p className="demo__note">
            Development server over the demo database: not for production. Scores, recommendations and charts come
            from icpml inside PostgreSQL, through a PostgREST-style API and supabase-js.
          </p>
        </div>
        <label className="demo__user">
          Signed in as{' '}
          <select value={userId} onChange={(e) => setUserId(e.target.value)} aria-label="Sales user">
            {props.users.map((u) => (
              <option key={u.user_id} value={u.user_id}>
                {u.display_name}
              </option>
            ))}
          </select>
        </label>
      </header>
      <IcpmlProvider client={current.client}>
          <main className="demo__main" key={current.userId}>
            <RecommendedAccounts
              userId={current.userId}
              k={8}
              title={`Accounts to work next${user ? `, ${user.display_name}` : ''}`}
              onView={setAccount}
              onLoaded={(ids) => setAccount((a) => a ?? ids[0] ?? null)}
            />
            <div className="demo__side">
              <section className="icpml-card demo__lookup" aria-labelledby="lookup-title">
                <h2 id="lookup-title" className="icpml-card__title">
                  Score any account
                </h2>
                <form
                  onSubmit={(e) => {
                    e.preventDefault();
                    if (lookupId !== null) setAccount(lookupId);
                  }}
                >
                  <label>
                    Account id{' '}
                    <input
                      name="account"
                      inputMode="numeric"
                      value={lookup}
                      onChange={(e) => setLookup(e.target.value.trim())}
                      size={8}
                    />
                  </label>{' '}
                  {lookupId !== null && <ScoreBadge key={lookupId} accountId={lookupId} />}{' '}
                  <button type="submit" className="icpml-button" disabled={lookupId === null}>
                    Show signals
                  </button>
                </form>
              </section>
              {account !== null ? (
                <IntentSignalsChart key={account} accountId={account} />
              ) : (
                <section className="icpml-card">
                  <p className="icpml-empty">Choose “View” on an account to see its intent signals.</p>
                </section>
              )}
            </div>
          </main>
        </IcpmlProvider>
      <h2 className="demo__section">Admin: the model and the experiments (service_role)</h2>
      <div className="demo__admin">
        <ModelReport client={props.service} />
        {experiments === null ? (
          <section className="icpml-card" aria-busy="true">
            <p className="icpml-muted">Loading experiments…</p>
          </section>
        ) : experiments.length === 0 ? (
          <section className="icpml-card">
            <p className="icpml-empty">No experiment yet: icpml.start_experiment(...).</p>
          </section>
        ) : (
          experiments.slice(0, 2).map((x) => <ExperimentResults key={x.name} name={x.name} status={x.status} client={props.service} />)
        )}
      </div>
    </div>
  );
}

function Main() {
  const [state, setState] = useState<
    | { anonKey: string; service: IcpmlClient; users: { user_id: string; display_name: string }[]; initial: Session }
    | { error: string }
    | null
  >(null);
  useEffect(() => {
    (async () => {
      const cfg = (await (await fetch(`${origin}/dev/config.json`)).json()) as { anonKey: string };
      const service = clientWith(cfg.anonKey, await token('role=service_role'));
      const { data, error } = await service.schema('public').from('sales_users').select('user_id,display_name').order('display_name');
      if (error) throw new Error(error.message);
      const users = data as { user_id: string; display_name: string }[];
      const first = new URLSearchParams(window.location.search).get('user') ?? users[0]?.user_id ?? '';
      setState({ anonKey: cfg.anonKey, service, users, initial: await session(cfg.anonKey, first) });
    })().catch((e: unknown) => setState({ error: e instanceof Error ? e.message : String(e) }));
  }, []);
  const body = useMemo(() => {
    if (state === null) return <p className="demo__loading">Connecting…</p>;
    if ('error' in state) return <p role="alert">Could not start the demo: {state.error}</p>;
    return <App {...state} />;
  }, [state]);
  return body;
}

createRoot(document.getElementById('root') as HTMLElement).render(
  <StrictMode>
    <Main />
  </StrictMode>,
);
