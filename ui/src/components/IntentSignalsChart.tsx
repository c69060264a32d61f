import { useId, type ReactNode } from 'react';
import { accountInteractions, accountSignals, latestResearchRun, researchRuns, type AppTables, type IcpmlClient } from '../client.js';
import { errorText, useAsync, useIcpml } from '../context.js';
import type { Interaction, ResearchRun } from '../types.js';
import { formatUsd, timeAgo } from '../words.js';
import { scale, W } from './charts.js';

export interface IntentSignalsChartProps {
  accountId: number;
  /** Weeks shown, ending with the current one (default 52). */
  weeks?: number;
  client?: IcpmlClient;
  tables?: Partial<AppTables>;
  /** "Now" (tests); default the current time. */
  now?: Date;
}

const DAY = 86_400_000;

/** Monday 00:00 UTC of the week of `d` (PostgreSQL's date_trunc('week', ...) in UTC). */
export function weekStart(d: Date): Date {
  const t = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate());
  const dow = (new Date(t).getUTCDay() + 6) % 7;
  return new Date(t - dow * DAY);
}

/** Interactions per week: [weekStart ms, total, dismissals]; weeks without any are left out. */
export function weeklyEngagement(rows: Interaction[], start: Date): { week: number; total: number; dismissed: number }[] {
  const by = new Map<number, { week: number; total: number; dismissed: number }>();
  for (const r of rows) {
    const t = Date.parse(r.created_at);
    if (Number.isNaN(t) || t < start.getTime()) continue;
    const w = weekStart(new Date(t)).getTime();
    const e = by.get(w) ?? { week: w, total: 0, dismissed: 0 };
    e.total += 1;
    if (r.interaction_type === 'dismiss') e.dismissed += 1;
    by.set(w, e);
  }
  return [...by.values()].sort((a, b) => a.week - b.week);
}

const LANES = { engagement: 70, research: 112, funding: 140, hiring: 168 };
const CH = 210;
const LEFT = 86;

/**
 * An account's intent over time: the team's weekly engagement, research
 * runs, funding rounds and the current hiring signals, read from the app's
 * tables as the signed-in user (row-level security applies).
 */
export function IntentSignalsChart(props: IntentSignalsChartProps) {
  const { client, tables } = useIcpml(props.client, props.tables);
  const weeks = props.weeks ?? 52;
  const now = props.now ?? new Date();
  const start = new Date(weekStart(now).getTime() - (weeks - 1) * 7 * DAY);
  const end = new Date(weekStart(now).getTime() + 7 * DAY);
  const headingId = useId();
  const s = useAsync(
    () =>
      Promise.all([
        accountSignals(client, [props.accountId], tables),
        researchRuns(client, props.accountId, start, tables),
        latestResearchRun(client, props.accountId, tables),
        accountInteractions(client, props.accountId, start, tables),
      ]),
    `intent:${props.accountId}:${weeks}:${start.getTime()}`,
  );

  const frame = (body: ReactNode, busy = false) => (
    <section className="icpml-card icpml-intent" aria-labelledby={headingId} aria-busy={busy} data-account-id={props.accountId}>
      <h2 id={headingId} className="icpml-card__title">
        Intent signals
        {s.status === 'ready' && s.data[0][0]?.account_name ? ` · ${s.data[0][0].account_name}` : ` · account ${props.accountId}`}
      </h2>
      {body}
    </section>
  );

  if (s.status === 'loading') {
    return frame(
      <>
        <ul className="icpml-intent__facts icpml-intent__facts--loading" aria-hidden="true">
          {[0, 1, 2, 3].map((i) => (
            <li key={i}>
              <span className="icpml-skeleton icpml-skeleton--line" />
            </li>
          ))}
        </ul>
        <div className="icpml-chart__frame icpml-intent__frame">
          <svg viewBox={`0 0 ${W} ${CH}`} className="icpml-svg" role="img" aria-label="Loading intent signals">
            <rect x={0} y={0} width={W} height={CH} className="icpml-skeleton-fill" />
          </svg>
        </div>
      </>,
      true,
    );
  }
  if (s.status === 'error') {
    return frame(
      <div className="icpml-error" role="alert">
        <p>Could not load the signals: {errorText(s.error)}</p>
        <button type="button" className="icpml-button" onClick={s.reload}>
          Try again
        </button>
      </div>,
    );
  }
  const [signalRows, runs, latest, interactions] = s.data;
  const sig = signalRows[0];
  if (!sig) {
    return frame(<p className="icpml-empty">This account is not visible to you, or does not exist.</p>);
  }
  const engagement = weeklyEngagement(interactions, start);
  const people = new Set(interactions.map((i) => i.user_id)).size;
  const fundings = new Map<string, ResearchRun>();
  for (const r of runs) if (r.funding_date && Date.parse(r.funding_date) >= start.getTime()) fundings.set(r.funding_date, r);
  const latestFunding = latest?.funding_date ? latest : null;

  const x = scale(start.getTime(), end.getTime(), LEFT, W - 10);
  const maxCount = Math.max(1, ...engagement.map((e) => e.total));
  const barH = scale(0, maxCount, 0, 44);
  const bw = Math.max(2, ((W - 10 - LEFT) / weeks) * 0.75);
  const months: number[] = [];
  for (let d = new Date(Date.UTC(start.getUTCFullYear(), start.getUTCMonth() + 1, 1)); d < end; d = new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + (weeks > 30 ? 2 : 1), 1))) {
    months.push(d.getTime());
  }
  const updated = sig.updated_at ? Date.parse(sig.updated_at) : NaN;
  const hiringText =
    sig.engineering_role_count === null || sig.engineering_role_count === undefined
      ? 'Hiring: unknown'
      : `${sig.engineering_role_count} open engineering role${sig.engineering_role_count === 1 ? '' : 's'}` +
        (sig.total_open_roles !== null && sig.total_open_roles !== undefined ? ` of ${sig.total_open_roles} open roles` : '');

  return frame(
    <>
      <ul className="icpml-intent__facts">
        <li data-fact="hiring">
          <strong>Hiring</strong> {hiringText}
          {sig.has_engineering_blog ? ', has an engineering blog' : ''}
          {sig.updated_at ? ` (as of ${sig.updated_at.slice(0, 10)})` : ''}
        </li>
        <li data-fact="funding">
          <strong>Funding</strong>{' '}
          {latestFunding?.funding_date
            ? `${latestFunding.funding_amount_usd !== null ? formatUsd(latestFunding.funding_amount_usd) : 'undisclosed amount'}, ${timeAgo(latestFunding.funding_date, now)}`
            : 'no known round'}
        </li>
        <li data-fact="research">
          <strong>Research</strong>{' '}
          {latest ? `last researched ${timeAgo(latest.created_at, now)}${latest.fit_verdict ? ` (verdict: ${latest.fit_verdict.replace('_', ' ')})` : ''}` : 'never researched'}
        </li>
        <li data-fact="engagement">
          <strong>Team engagement</strong> {interactions.length} interaction{interactions.length === 1 ? '' : 's'} by {people}{' '}
          {people === 1 ? 'person' : 'people'} in the last {weeks} weeks
        </li>
      </ul>
      <div className="icpml-chart__frame icpml-intent__frame">
        <svg
          viewBox={`0 0 ${W} ${CH}`}
          className="icpml-svg"
          role="img"
          aria-label={`Intent over the last ${weeks} weeks: ${engagement.length} weeks with team activity, ${runs.length} research runs, ${fundings.size} funding rounds`}
        >
          <g aria-hidden="true">
            {Object.entries({ 'Team activity': LANES.engagement - 20, Research: LANES.research, Funding: LANES.funding, Hiring: LANES.hiring }).map(
              ([label, y]) => (
                <text key={label} x={LEFT - 8} y={y + 3.5} textAnchor="end" className="icpml-svg__label">
                  {label}
                </text>
              ),
            )}
            {[LANES.research, LANES.funding, LANES.hiring].map((y) => (
              <line key={y} x1={LEFT} x2={W - 10} y1={y} y2={y} className="icpml-svg__grid" />
            ))}
            <line x1={LEFT} x2={W - 10} y1={LANES.engagement} y2={LANES.engagement} className="icpml-svg__axis" />
            {months.map((m) => (
              <g key={m}>
                <line x1={x(m)} x2={x(m)} y1={16} y2={CH - 22} className="icpml-svg__grid" />
                <text x={x(m)} y={CH - 8} textAnchor="middle" className="icpml-svg__tick">
                  {new Date(m).toLocaleString('en-US', { month: 'short', timeZone: 'UTC' })}
                </text>
              </g>
            ))}
          </g>
          {engagement.map((e) => (
            <g key={e.week}>
              <rect
                x={x(e.week + 3.5 * DAY) - bw / 2}
                y={LANES.engagement - barH(e.total)}
                width={bw}
                height={barH(e.total)}
                className="icpml-svg__bar"
                data-kind="engagement"
              >
                <title>{`Week of ${new Date(e.week).toISOString().slice(0, 10)}: ${e.total} interactions${e.dismissed ? `, ${e.dismissed} dismissals` : ''}`}</title>
              </rect>
              {e.dismissed > 0 && (
                <rect
                  x={x(e.week + 3.5 * DAY) - bw / 2}
                  y={LANES.engagement - barH(e.dismissed)}
                  width={bw}
                  height={barH(e.dismissed)}
                  className="icpml-svg__bar icpml-svg__bar--negative"
                  aria-hidden="true"
                />
              )}
            </g>
          ))}
          {runs.map((r) => (
            <circle key={r.research_run_id} cx={x(Date.parse(r.created_at))} cy={LANES.research} r={4.5} className="icpml-svg__point" data-kind="research">
              <title>{`Researched ${r.created_at.slice(0, 10)}: ${r.company_size ?? 'unknown'} employees${r.fit_verdict ? `, ${r.fit_verdict.replace('_', ' ')}` : ''}`}</title>
            </circle>
          ))}
          {[...fundings.values()].map((r) => {
            const cx = x(Date.parse(r.funding_date as string));
            return (
              <path key={r.funding_date} d={`M${cx},${LANES.funding - 6}l6,6l-6,6l-6,-6z`} className="icpml-svg__funding" data-kind="funding">
                <title>{`Funding round ${r.funding_date}: ${r.funding_amount_usd !== null ? formatUsd(r.funding_amount_usd) : 'amount undisclosed'}`}</title>
              </path>
            );
          })}
          {!Number.isNaN(updated) && updated >= start.getTime() && sig.engineering_role_count !== null && sig.engineering_role_count !== undefined && (
            <g data-kind="hiring">
              <circle cx={x(updated)} cy={LANES.hiring} r={3 + Math.min(8, Math.sqrt(sig.engineering_role_count) * 2)} className="icpml-svg__hiring">
                <title>{`${hiringText} (as of ${sig.updated_at?.slice(0, 10)})`}</title>
              </circle>
            </g>
          )}
        </svg>
      </div>
      <details className="icpml-chart__data">
        <summary>Show the numbers</summary>
        <div className="icpml-chart__table-wrap">
          <table>
            <caption className="icpml-sr-only">Team activity per week</caption>
            <thead>
              <tr>
                <th scope="col">Week of</th>
                <th scope="col">Interactions</th>
                <th scope="col">Dismissals</th>
              </tr>
            </thead>
            <tbody>
              {engagement.map((e) => (
                <tr key={e.week}>
                  <td>{new Date(e.week).toISOString().slice(0, 10)}</td>
                  <td>{e.total}</td>
                  <td>{e.dismissed}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      </details>
    </>,
  );
}
