import { experimentResults, type IcpmlClient } from '../client.js';
import { errorText, useAsync, useIcpml } from '../context.js';
import type { ExperimentRow } from '../types.js';
import { H, M, scale, W } from './charts.js';

export interface ExperimentResultsProps {
  /** The experiment's name (icpml.start_experiment). */
  name: string;
  /** Its status from icpml.experiments ('running' / 'stopped'), if known: the verdict's wording follows it. */
  status?: string;
  client?: IcpmlClient;
}

const r3 = (v: number | null | undefined) => (v === null || v === undefined ? '–' : (Math.round(v * 1000) / 1000).toFixed(3));
const pctSigned = (v: number | null) => (v === null ? '–' : `${v >= 0 ? '+' : ''}${(v * 100).toFixed(1)} %`);
const pval = (v: number | null | undefined) => (v === null || v === undefined ? '–' : v < 0.0001 ? '< 0.0001' : v.toFixed(4));

/** The interval a dashboard should show: always-valid when icpml computes it (looked at often, it stays valid). */
function primary(r: ExperimentRow, sequential: boolean) {
  return sequential
    ? { low: r.seq_ci_low ?? null, high: r.seq_ci_high ?? null, p: r.seq_p_value ?? null }
    : { low: r.ci_low, high: r.ci_high, p: r.p_value };
}

/**
 * Per-variant reward per impression with 95 % intervals, lift and p-value
 * against the control (the first variant), and the sample-ratio check, from
 * `experiment_results` (administrative). Where icpml computes them (0.4.0
 * on), the always-valid (sequential) interval and p-value lead, since a
 * dashboard is looked at again and again; the fixed-horizon ones follow.
 */
export function ExperimentResults(props: ExperimentResultsProps) {
  const { client } = useIcpml(props.client);
  const s = useAsync(() => experimentResults(client, props.name), `experiment:${props.name}`);
  const title = `Experiment “${props.name}”`;
  if (s.status === 'loading') {
    return (
      <section className="icpml-card icpml-experiment" aria-busy="true" aria-label={title}>
        <h2 className="icpml-card__title">{title}</h2>
        <div className="icpml-chart__frame icpml-skeleton-block" />
      </section>
    );
  }
  if (s.status === 'error') {
    return (
      <section className="icpml-card icpml-experiment" aria-label={title}>
        <h2 className="icpml-card__title">{title}</h2>
        <div className="icpml-error" role="alert">
          <p>Could not load the results: {errorText(s.error)}</p>
          <button type="button" className="icpml-button" onClick={s.reload}>
            Try again
          </button>
        </div>
      </section>
    );
  }
  const rows = s.data;
  if (rows.length === 0) {
    return (
      <section className="icpml-card icpml-experiment" aria-label={title}>
        <h2 className="icpml-card__title">{title}</h2>
        <p className="icpml-empty">No results yet.</p>
      </section>
    );
  }
  const sequential = rows.some((r) => r.seq_ci_low !== undefined);
  const srm = rows[0].srm_p_value;
  const srmBroken = srm !== null && srm < 0.001;
  const vals = rows
    .flatMap((r) => [r.ci_low, r.ci_high, r.reward_per_impression, r.seq_ci_low ?? null, r.seq_ci_high ?? null])
    .filter((v): v is number => v !== null && Number.isFinite(v));
  const lo = Math.max(0, Math.min(...vals) - 0.02);
  const hi = Math.min(1, Math.max(...vals) + 0.02);
  const rowH = 34;
  const h = Math.min(H, rows.length * rowH + 40);
  const x = scale(lo, hi, 110, W - M.right - 8);
  const control = rows[0];
  const winners = rows.slice(1).filter((r) => {
    const p = primary(r, sequential).p;
    return p !== null && p < 0.05;
  });
  const intervalName = sequential ? 'always-valid 95 % interval' : '95 % interval';
  return (
    <section className="icpml-card icpml-experiment" aria-label={title} data-experiment={props.name}>
      <h2 className="icpml-card__title">{title}</h2>
      {srmBroken && (
        <p className="icpml-error" role="alert">
          Sample-ratio mismatch (p = {pval(srm)}): users did not split as designed, so do not trust this comparison.
        </p>
      )}
      {!srmBroken && (
        <p className="icpml-experiment__verdict" data-verdict={winners.length > 0 ? 'difference' : 'none'}>
          {winners.length > 0
            ? `${winners.map((w) => `${w.variant} (${pctSigned(w.lift)})`).join(', ')} differ${winners.length === 1 ? 's' : ''} from the control ${control.variant}${sequential ? ' (sequential p < 0.05: you may stop)' : ' (p < 0.05)'}.`
            : props.status === 'stopped'
              ? `Stopped with no difference found from the control ${control.variant}.`
              : `No difference from the control ${control.variant} yet${sequential ? ': keep going until the planned number of users' : ''}.`}
        </p>
      )}
      <figure className="icpml-chart" data-chart="experiment">
        <figcaption className="icpml-chart__title">Reward per impression with {intervalName}s</figcaption>
        <div className="icpml-chart__frame">
          <svg
            viewBox={`0 0 ${W} ${h}`}
            role="img"
            className="icpml-svg icpml-svg--auto"
            aria-label={rows
              .map((r) => {
                const iv = primary(r, sequential);
                return `${r.variant}: ${r3(r.reward_per_impression)} (${intervalName} ${r3(iv.low)} to ${r3(iv.high)})`;
              })
              .join('; ')}
          >
            {control.reward_per_impression !== null && (
              <line
                x1={x(control.reward_per_impression)}
                x2={x(control.reward_per_impression)}
                y1={8}
                y2={h - 24}
                className="icpml-svg__reference"
              />
            )}
            {rows.map((r, i) => {
              const y = 20 + i * rowH;
              const iv = primary(r, sequential);
              return (
                <g key={r.variant} data-variant={r.variant}>
                  <text x={104} y={y + 4} textAnchor="end" className="icpml-svg__tick">
                    {r.variant}
                    {i === 0 ? ' (control)' : ''}
                  </text>
                  {iv.low !== null && iv.high !== null && (
                    <line x1={x(iv.low)} x2={x(iv.high)} y1={y} y2={y} className="icpml-svg__interval" data-kind="interval" />
                  )}
                  {sequential && r.ci_low !== null && r.ci_high !== null && (
                    <line
                      x1={x(r.ci_low)}
                      x2={x(r.ci_high)}
                      y1={y + 7}
                      y2={y + 7}
                      className="icpml-svg__interval icpml-svg__interval--fixed"
                      data-kind="fixed-interval"
                    />
                  )}
                  {r.reward_per_impression !== null && (
                    <circle cx={x(r.reward_per_impression)} cy={y} r={4} className="icpml-svg__point" data-kind="variant" />
                  )}
                </g>
              );
            })}
            <line x1={110} x2={W - M.right - 8} y1={h - 22} y2={h - 22} className="icpml-svg__axis" />
            {[lo, (lo + hi) / 2, hi].map((t) => (
              <text key={t} x={x(t)} y={h - 8} textAnchor="middle" className="icpml-svg__tick">
                {r3(t)}
              </text>
            ))}
          </svg>
        </div>
        {sequential && (
          <p className="icpml-chart__desc">
            Thick: the always-valid interval, safe to read however often you look. Thin: the fixed-horizon interval, exact
            only when read once at a planned end.
          </p>
        )}
      </figure>
      <div className="icpml-chart__table-wrap">
        <table className="icpml-metrics" data-testid="experiment-table">
          <caption className="icpml-sr-only">Per-variant results</caption>
          <thead>
            <tr>
              <th scope="col">Variant</th>
              <th scope="col">Users</th>
              <th scope="col">Finalized</th>
              <th scope="col">Reward / impression</th>
              <th scope="col">{sequential ? 'Always-valid 95 %' : '95 % interval'}</th>
              <th scope="col">Lift</th>
              <th scope="col">{sequential ? 'Sequential p' : 'p-value'}</th>
              {sequential && <th scope="col">Fixed-horizon 95 %</th>}
              {sequential && <th scope="col">Fixed-horizon p</th>}
            </tr>
          </thead>
          <tbody>
            {rows.map((r, i) => {
              const iv = primary(r, sequential);
              return (
                <tr key={r.variant} data-variant={r.variant}>
                  <th scope="row">
                    {r.variant}
                    {i === 0 && <span className="icpml-muted"> (control)</span>}
                  </th>
                  <td>{r.users}</td>
                  <td>{r.finalized}</td>
                  <td>{r3(r.reward_per_impression)}</td>
                  <td>
                    {r3(iv.low)} – {r3(iv.high)}
                  </td>
                  <td>{i === 0 ? '–' : pctSigned(r.lift)}</td>
                  <td>{i === 0 ? '–' : pval(iv.p)}</td>
                  {sequential && (
                    <td>
                      {r3(r.ci_low)} – {r3(r.ci_high)}
                    </td>
                  )}
                  {sequential && <td>{i === 0 ? '–' : pval(r.p_value)}</td>}
                </tr>
              );
            })}
          </tbody>
        </table>
      </div>
      <p className="icpml-muted">
        Sample-ratio check p = {pval(srm)}
        {srmBroken ? ' (broken split)' : ' (the split looks as designed)'}. The user is the unit of every interval and
        p-value.
        {rows.some((r) => r.variance_reduction !== null && r.variance_reduction !== undefined) &&
          ` CUPED removed ${Math.round(100 * (rows.find((r) => r.variance_reduction != null)?.variance_reduction ?? 0))} % of the variance (its sequential p-values: ${rows
            .slice(1)
            .map((r) => `${r.variant} ${pval(r.cuped_seq_p_value)}`)
            .join(', ')}).`}
      </p>
    </section>
  );
}
