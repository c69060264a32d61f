import { experimentResults, type IcpmlClient } from '../client.js';
import { errorText, useAsync, useIcpml } from '../context.js';
import { H, M, scale, W } from './charts.js';

export interface ExperimentResultsProps {
  /** The experiment's name (icpml.start_experiment). */
  name: string;
  client?: IcpmlClient;
}

const r3 = (v: number | null) => (v === null ? '–' : (Math.round(v * 1000) / 1000).toFixed(3));
const pctSigned = (v: number | null) => (v === null ? '–' : `${v >= 0 ? '+' : ''}${(v * 100).toFixed(1)} %`);
const pval = (v: number | null) => (v === null ? '–' : v < 0.0001 ? '< 0.0001' : v.toFixed(4));

/**
 * Per-variant reward per impression with 95 % intervals, lift and p-value
 * against the control (the first variant), and the sample-ratio check, from
 * `experiment_results` (administrative).
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
  const srm = rows[0].srm_p_value;
  const srmBroken = srm !== null && srm < 0.001;
  const vals = rows.flatMap((r) => [r.ci_low, r.ci_high, r.reward_per_impression]).filter((v): v is number => v !== null);
  const lo = Math.max(0, Math.min(...vals) - 0.02);
  const hi = Math.min(1, Math.max(...vals) + 0.02);
  const rowH = 34;
  const h = Math.min(H, rows.length * rowH + 40);
  const x = scale(lo, hi, 110, W - M.right - 8);
  const control = rows[0];
  return (
    <section className="icpml-card icpml-experiment" aria-label={title} data-experiment={props.name}>
      <h2 className="icpml-card__title">{title}</h2>
      {srmBroken && (
        <p className="icpml-error" role="alert">
          Sample-ratio mismatch (p = {pval(srm)}): users did not split as designed, so do not trust this comparison.
        </p>
      )}
      <figure className="icpml-chart" data-chart="experiment">
        <figcaption className="icpml-chart__title">Reward per impression with 95 % intervals</figcaption>
        <div className="icpml-chart__frame">
          <svg
            viewBox={`0 0 ${W} ${h}`}
            role="img"
            className="icpml-svg icpml-svg--auto"
            aria-label={rows
              .map((r) => `${r.variant}: ${r3(r.reward_per_impression)} (95 % interval ${r3(r.ci_low)} to ${r3(r.ci_high)})`)
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
              return (
                <g key={r.variant} data-variant={r.variant}>
                  <text x={104} y={y + 4} textAnchor="end" className="icpml-svg__tick">
                    {r.variant}
                    {i === 0 ? ' (control)' : ''}
                  </text>
                  {r.ci_low !== null && r.ci_high !== null && (
                    <line x1={x(r.ci_low)} x2={x(r.ci_high)} y1={y} y2={y} className="icpml-svg__interval" data-kind="interval" />
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
              <th scope="col">95 % interval</th>
              <th scope="col">Lift</th>
              <th scope="col">p-value</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((r, i) => (
              <tr key={r.variant} data-variant={r.variant}>
                <th scope="row">
                  {r.variant}
                  {i === 0 && <span className="icpml-muted"> (control)</span>}
                </th>
                <td>{r.users}</td>
                <td>{r.finalized}</td>
                <td>{r3(r.reward_per_impression)}</td>
                <td>
                  {r3(r.ci_low)} – {r3(r.ci_high)}
                </td>
                <td>{i === 0 ? '–' : pctSigned(r.lift)}</td>
                <td>{i === 0 ? '–' : pval(r.p_value)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      <p className="icpml-muted">
        Sample-ratio check p = {pval(srm)}
        {srmBroken ? ' (broken split)' : ' (the split looks as designed)'}. Intervals and p-values treat the user as the unit
        (delta method).
      </p>
    </section>
  );
}
