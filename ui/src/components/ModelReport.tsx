import { describeModel, modelCalibration, modelFeatureImportance, modelRocCurve, type IcpmlClient } from '../client.js';
import { errorText, useAsync, useIcpml } from '../context.js';
import type { CvMetrics } from '../types.js';
import { featureLabel } from '../words.js';
import { BarList, ChartFigure, ChartSkeleton, XYChart } from './charts.js';

export interface ModelReportProps {
  /** A model version (default: the deployed one). */
  version?: number;
  client?: IcpmlClient;
  /** How many features the importance chart lists (default 12). */
  topFeatures?: number;
}

const METRICS: { key: keyof CvMetrics; label: string; higherIsBetter: boolean; help: string }[] = [
  { key: 'roc_auc', label: 'ROC AUC', higherIsBetter: true, help: 'chance a fit ranks above a non-fit' },
  { key: 'pr_auc', label: 'PR AUC', higherIsBetter: true, help: 'average precision' },
  { key: 'precision_at_10', label: 'Precision, top 10 %', higherIsBetter: true, help: 'share of fits among the best-scored tenth' },
  { key: 'lift_at_10', label: 'Lift, top 10 %', higherIsBetter: true, help: 'that share over the base rate' },
  { key: 'log_loss', label: 'Log loss', higherIsBetter: false, help: 'lower is better' },
  { key: 'brier', label: 'Brier score', higherIsBetter: false, help: 'lower is better' },
];

const r3 = (v: number | undefined) => (v === undefined || v === null ? '–' : (Math.round(v * 1000) / 1000).toFixed(3));
const pct = (v: number) => `${Math.round(v * 100)} %`;

/**
 * The deployed (or a given) model: ROC and calibration curves, feature
 * importance and cross-validated metrics against the rule-based score on the
 * same folds. Calls administrative functions: give it a client whose role is
 * service_role or was granted icpml.grant_admin.
 */
export function ModelReport(props: ModelReportProps) {
  const { client } = useIcpml(props.client);
  const v = props.version;
  const s = useAsync(
    () => Promise.all([describeModel(client, v), modelRocCurve(client, v), modelCalibration(client, v), modelFeatureImportance(client, v)]),
    `model:${v ?? 'deployed'}`,
  );
  const top = props.topFeatures ?? 12;
  if (s.status === 'loading') {
    return (
      <section className="icpml-card icpml-model" aria-busy="true" aria-label="Model report">
        <header className="icpml-card__header">
          <h2 className="icpml-card__title">Model report</h2>
        </header>
        <p className="icpml-card__intro">
          <span className="icpml-skeleton icpml-skeleton--line" />
        </p>
        <div className="icpml-skeleton icpml-skeleton--table" />
        <div className="icpml-grid">
          <ChartSkeleton title="ROC curve" />
          <ChartSkeleton title="Calibration" />
          <ChartSkeleton title="What the model looks at" height={top * 22 + 8} />
        </div>
      </section>
    );
  }
  if (s.status === 'error') {
    const noModel = /no deployed model|no model/i.test(s.error.message);
    return (
      <section className="icpml-card icpml-model" aria-label="Model report">
        <h2 className="icpml-card__title">Model report</h2>
        {noModel ? (
          <p className="icpml-empty">
            No model is deployed: scores come from the documented rules. Train one with{' '}
            <code>icpml.train_icp_model()</code> once there are 50 labelled research runs.
          </p>
        ) : (
          <div className="icpml-error" role="alert">
            <p>Could not load the model report: {errorText(s.error)}</p>
            <button type="button" className="icpml-button" onClick={s.reload}>
              Try again
            </button>
          </div>
        )}
      </section>
    );
  }
  const [desc, roc, cal, imp] = s.data;
  const model = desc.metrics?.cv?.model ?? {};
  const rules = desc.metrics?.cv?.rules;
  const feats = imp.slice(0, top);
  return (
    <section className="icpml-card icpml-model" aria-label="Model report" data-version={desc.version}>
      <header className="icpml-card__header">
        <h2 className="icpml-card__title">
          Model report · version {desc.version}
          <span className="icpml-tag">{desc.status}</span>
        </h2>
      </header>
      <p className="icpml-card__intro">
        Trained on {desc.n_rows.toLocaleString('en-US')} labelled accounts ({pct(desc.n_positive / Math.max(1, desc.n_rows))} fits)
        {desc.created_at && ` on ${desc.created_at.slice(0, 10)}`}. Every figure below is out-of-fold: measured on
        accounts the model did not see while training.
      </p>
      <table className="icpml-metrics" data-testid="cv-metrics">
        <caption>Cross-validated metrics, model against the rule-based score on the same folds</caption>
        <thead>
          <tr>
            <th scope="col">Metric</th>
            <th scope="col">Model</th>
            {rules && <th scope="col">Rules</th>}
          </tr>
        </thead>
        <tbody>
          {METRICS.filter((m) => model[m.key] !== undefined).map((m) => {
            const a = model[m.key] as number;
            const b = rules?.[m.key] as number | undefined;
            const better = b === undefined ? null : m.higherIsBetter ? a > b : a < b;
            return (
              <tr key={m.key} data-metric={m.key}>
                <th scope="row">
                  {m.label} <span className="icpml-muted">({m.help})</span>
                </th>
                <td data-better={better === true ? 'true' : undefined}>
                  {r3(a)}
                  {better === true && <span className="icpml-sr-only"> (better than the rules)</span>}
                </td>
                {rules && <td>{r3(b)}</td>}
              </tr>
            );
          })}
        </tbody>
      </table>
      <div className="icpml-grid">
        <ChartFigure
          chart="roc"
          title="ROC curve"
          description={`True against false positive rate at ${roc.length} thresholds; the diagonal is a coin flip. ROC AUC ${r3(model.roc_auc)}.`}
          table={{ columns: ['threshold', 'false positive rate', 'true positive rate'], rows: roc.map((p) => [r3(p.threshold), r3(p.fpr), r3(p.tpr)]) }}
        >
          <XYChart
            kind="roc"
            label={`ROC curve with ${roc.length} points, area ${r3(model.roc_auc)}`}
            points={roc.map((p) => ({ x: p.fpr, y: p.tpr, r: 1.4 }))}
            xLabel="false positive rate"
            yLabel="true positive rate"
            line
            diagonal="random ranking"
          />
        </ChartFigure>
        <ChartFigure
          chart="calibration"
          title="Calibration"
          description="Observed fit rate against the predicted probability, per bin; on the diagonal the probability means what it says."
          table={{
            columns: ['bin', 'mean predicted', 'observed rate', 'accounts'],
            rows: cal.map((c) => [c.bin, r3(c.mean_predicted), r3(c.observed_rate), c.n]),
          }}
        >
          <XYChart
            kind="calibration"
            label={`Calibration with ${cal.length} bins`}
            points={cal.map((c) => ({
              x: c.mean_predicted,
              y: c.observed_rate,
              r: 2 + 4 * Math.sqrt(c.n / Math.max(1, ...cal.map((q) => q.n))),
              label: `bin ${c.bin}: predicted ${pct(c.mean_predicted)}, observed ${pct(c.observed_rate)} of ${c.n}`,
            }))}
            xLabel="predicted probability"
            yLabel="observed fit rate"
            line
            diagonal="perfect calibration"
          />
        </ChartFigure>
        <ChartFigure
          chart="importance"
          title="What the model looks at"
          description={`Total gain of the ${feats.length} most useful features (of ${imp.length}).`}
          table={{ columns: ['feature', 'gain', 'splits'], rows: imp.map((f) => [featureLabel(f.feature), r3(f.gain), f.weight]) }}
        >
          <BarList
            kind="importance"
            label={`Feature importance, ${feats.length} features`}
            items={feats.map((f) => ({ label: featureLabel(f.feature), value: f.gain, title: `${f.feature}: gain ${r3(f.gain)}, ${f.weight} splits` }))}
          />
        </ChartFigure>
      </div>
    </section>
  );
}
