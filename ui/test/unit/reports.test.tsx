import { afterEach, describe, expect, it } from 'vitest';
import { ExperimentResults } from '../../src/components/ExperimentResults.js';
import { IntentSignalsChart, weeklyEngagement, weekStart } from '../../src/components/IntentSignalsChart.js';
import { ModelReport } from '../../src/components/ModelReport.js';
import type { ExperimentRow, Interaction } from '../../src/types.js';
import { fail, fakeClient, ok } from './fake.js';
import { render, settle } from './render.js';

let cleanup: (() => void) | null = null;
afterEach(() => {
  cleanup?.();
  cleanup = null;
});

const interaction = (created_at: string, interaction_type: Interaction['interaction_type'] = 'view', user_id = 'u1'): Interaction => ({
  user_id,
  account_id: 1,
  interaction_type,
  created_at,
});

describe('IntentSignalsChart', () => {
  it('groups interactions by ISO week (Monday, UTC), like date_trunc(week)', () => {
    expect(weekStart(new Date('2026-12-06T23:00:00Z')).toISOString()).toBe('2026-11-30T00:00:00.000Z');
    expect(weekStart(new Date('2026-11-30T00:00:00Z')).toISOString()).toBe('2026-11-30T00:00:00.000Z');
    const w = weeklyEngagement(
      [interaction('2026-11-30T10:00:00Z'), interaction('2026-12-02T10:00:00Z', 'dismiss'), interaction('2026-11-20T10:00:00Z'), interaction('2020-01-01T00:00:00Z')],
      new Date('2026-01-01T00:00:00Z'),
    );
    expect(w).toEqual([
      { week: Date.parse('2026-11-16T00:00:00Z'), total: 1, dismissed: 0 },
      { week: Date.parse('2026-11-30T00:00:00Z'), total: 2, dismissed: 1 },
    ]);
  });

  it('draws one bar per active week, one marker per research run and funding round', async () => {
    const { client } = fakeClient({
      'select:account_signals': ok([{ account_id: 1, account_name: 'Acme', engineering_role_count: 4, total_open_roles: 9, updated_at: '2026-12-01T00:00:00Z' }]),
      'select:research_runs': (c) =>
        c.filters!.some(([f]) => f === 'gte:created_at')
          ? ok([
              { research_run_id: 1, account_id: 1, company_size: 120, funding_amount_usd: 5e6, funding_date: '2026-09-01', tech_stack: null, fit_verdict: 'fit', created_at: '2026-10-01T00:00:00Z' },
              { research_run_id: 2, account_id: 1, company_size: 130, funding_amount_usd: null, funding_date: null, tech_stack: null, fit_verdict: null, created_at: '2026-11-01T00:00:00Z' },
            ])
          : ok([{ research_run_id: 2, account_id: 1, company_size: 130, funding_amount_usd: null, funding_date: null, tech_stack: null, fit_verdict: null, created_at: '2026-11-01T00:00:00Z' }]),
      'select:user_interactions': ok([interaction('2026-11-30T10:00:00Z'), interaction('2026-12-01T10:00:00Z', 'save', 'u2'), interaction('2026-11-02T10:00:00Z')]),
    });
    const r = await render(<IntentSignalsChart accountId={1} client={client} now={new Date('2026-12-04T12:00:00Z')} />);
    cleanup = r.unmount;
    await settle();
    const svg = r.container.querySelector('svg')!;
    expect(svg.querySelectorAll('[data-kind="engagement"]')).toHaveLength(2);
    expect(svg.querySelectorAll('[data-kind="research"]')).toHaveLength(2);
    expect(svg.querySelectorAll('[data-kind="funding"]')).toHaveLength(1);
    expect(svg.querySelectorAll('[data-kind="hiring"]')).toHaveLength(1);
    expect(r.container.querySelector('[data-fact="engagement"]')!.textContent).toBe('Team engagement 3 interactions by 2 people in the last 52 weeks');
    expect(r.container.querySelector('[data-fact="hiring"]')!.textContent).toContain('4 open engineering roles of 9 open roles');
  });

  it('says so when the account is hidden by row-level security (no signals row)', async () => {
    const { client } = fakeClient({
      'select:account_signals': ok([]),
      'select:research_runs': ok([]),
      'select:user_interactions': ok([]),
    });
    const r = await render(<IntentSignalsChart accountId={3} client={client} />);
    cleanup = r.unmount;
    await settle();
    expect(r.container.querySelector('.icpml-empty')!.textContent).toBe('This account is not visible to you, or does not exist.');
    expect(r.container.querySelector('svg')).toBeNull();
  });
});

describe('ModelReport', () => {
  it('charts every ROC point and calibration bin, and compares CV metrics with the rules', async () => {
    const { client, calls } = fakeClient({
      'rpc:describe_model': ok({
        version: 3, status: 'deployed', created_at: '2026-12-04T00:00:00Z', n_rows: 100, n_positive: 25,
        metrics: { cv: { model: { roc_auc: 0.81, log_loss: 0.43 }, rules: { roc_auc: 0.77, log_loss: 0.5 } } },
      }),
      'rpc:model_roc_curve': ok([{ threshold: 1, fpr: 0, tpr: 0 }, { threshold: 0.5, fpr: 0.2, tpr: 0.6 }, { threshold: 0, fpr: 1, tpr: 1 }]),
      'rpc:model_calibration': ok([{ bin: 1, mean_predicted: 0.1, observed_rate: 0.12, n: 50 }, { bin: 2, mean_predicted: 0.6, observed_rate: 0.55, n: 50 }]),
      'rpc:model_feature_importance': ok([{ feature: 'engineering_role_count', gain: 50, weight: 10 }, { feature: 'tech_stack=go', gain: 5, weight: 2 }]),
    });
    const r = await render(<ModelReport client={client} />);
    cleanup = r.unmount;
    await settle();
    expect(calls.every((c) => c.kind === 'rpc' && c.get === true && JSON.stringify(c.args) === '{}')).toBe(true);
    expect(r.container.querySelectorAll('[data-chart="roc"] circle[data-kind="roc"]')).toHaveLength(3);
    expect(r.container.querySelectorAll('[data-chart="calibration"] circle[data-kind="calibration"]')).toHaveLength(2);
    expect(r.container.querySelectorAll('[data-chart="importance"] rect[data-kind="importance"]')).toHaveLength(2);
    const rows = [...r.container.querySelectorAll('[data-testid="cv-metrics"] tbody tr')].map((tr) => tr.getAttribute('data-metric'));
    expect(rows).toEqual(['roc_auc', 'log_loss']);
    expect(r.container.querySelector('tr[data-metric="log_loss"] td')!.getAttribute('data-better')).toBe('true');
    expect(r.container.textContent).toContain('Uses go');
  });

  it('explains an empty model store, and a missing grant', async () => {
    const noModel = fakeClient({
      'rpc:describe_model': fail('no deployed model', 'P0002', 'Deploy one.'),
      'rpc:model_roc_curve': ok([]),
      'rpc:model_calibration': ok([]),
      'rpc:model_feature_importance': ok([]),
    });
    const a = await render(<ModelReport client={noModel.client} />);
    await settle();
    expect(a.container.querySelector('.icpml-empty')!.textContent).toContain('No model is deployed');
    a.unmount();
    const denied = fakeClient({ 'rpc:describe_model': fail('permission denied for function describe_model', '42501') });
    const b = await render(<ModelReport client={denied.client} />);
    cleanup = b.unmount;
    await settle();
    expect(b.container.querySelector('[role="alert"]')!.textContent).toContain('You do not have access to this.');
  });
});

describe('ExperimentResults', () => {
  const row = (variant: string, rate: number, srm = 0.5): ExperimentRow => ({
    variant, weight: 1, users: 10, impressions: 100, finalized: 100, reward: rate * 100, reward_per_impression: rate,
    ci_low: rate - 0.05, ci_high: rate + 0.05, lift: variant === 'icp' ? null : 0.1, p_value: variant === 'icp' ? null : 0.03, srm_p_value: srm,
  });

  it('draws a point and an interval per variant, and the table', async () => {
    const { client, calls } = fakeClient({ 'rpc:experiment_results': ok([row('icp', 0.4), row('linucb', 0.44)]) });
    const r = await render(<ExperimentResults name="x" client={client} />);
    cleanup = r.unmount;
    await settle();
    expect(calls[0]).toMatchObject({ name: 'experiment_results', args: { name: 'x' }, get: true });
    expect(r.container.querySelectorAll('circle[data-kind="variant"]')).toHaveLength(2);
    expect(r.container.querySelectorAll('line[data-kind="interval"]')).toHaveLength(2);
    expect(r.container.querySelectorAll('[data-testid="experiment-table"] tbody tr')).toHaveLength(2);
    expect(r.container.querySelector('[role="alert"]')).toBeNull();
  });

  it('leads with the always-valid interval and sequential p-value when icpml has them', async () => {
    const seq = (r: ExperimentRow, low: number, high: number, p: number | null): ExperimentRow => ({
      ...r, seq_ci_low: low, seq_ci_high: high, seq_p_value: p, cuped_seq_p_value: null, variance_reduction: null,
    });
    const { client } = fakeClient({
      'rpc:experiment_results': ok([seq(row('icp', 0.4), 0.3, 0.5, null), seq(row('linucb', 0.5), 0.45, 0.55, 0.01)]),
    });
    const r = await render(<ExperimentResults name="x" client={client} />);
    cleanup = r.unmount;
    await settle();
    const primary = [...r.container.querySelectorAll('line[data-kind="interval"]')];
    const fixed = r.container.querySelectorAll('line[data-kind="fixed-interval"]');
    expect(primary).toHaveLength(2);
    expect(fixed).toHaveLength(2);
    // the thick line spans the wider, always-valid interval
    const width = (l: Element) => Number(l.getAttribute('x2')) - Number(l.getAttribute('x1'));
    expect(width(primary[0])).toBeGreaterThan(width(fixed[0]));
    const heads = [...r.container.querySelectorAll('[data-testid="experiment-table"] thead th')].map((t) => t.textContent);
    expect(heads).toContain('Sequential p');
    expect(r.container.querySelector('tr[data-variant="linucb"]')!.textContent).toContain('0.450 – 0.550');
    expect(r.container.querySelector('[data-verdict]')!.textContent).toBe(
      'linucb (+10.0 %) differs from the control icp (sequential p < 0.05: you may stop).',
    );
  });

  it('warns about a sample-ratio mismatch; handles no results and NULL intervals', async () => {
    const srm = fakeClient({ 'rpc:experiment_results': ok([row('icp', 0.4, 0.0001), { ...row('linucb', 0.4, 0.0001), ci_low: null, ci_high: null, reward_per_impression: null }]) });
    const a = await render(<ExperimentResults name="x" client={srm.client} />);
    await settle();
    expect(a.container.querySelector('[role="alert"]')!.textContent).toContain('Sample-ratio mismatch');
    expect(a.container.querySelectorAll('line[data-kind="interval"]')).toHaveLength(1);
    a.unmount();
    const stopped = fakeClient({ 'rpc:experiment_results': ok([row('icp', 0.4), { ...row('linucb', 0.4), p_value: 0.5 }]) });
    const c = await render(<ExperimentResults name="z" status="stopped" client={stopped.client} />);
    await settle();
    expect(c.container.querySelector('[data-verdict]')!.textContent).toBe('Stopped with no difference found from the control icp.');
    c.unmount();
    const none = fakeClient({ 'rpc:experiment_results': ok([]) });
    const b = await render(<ExperimentResults name="y" client={none.client} />);
    cleanup = b.unmount;
    await settle();
    expect(b.container.querySelector('.icpml-empty')!.textContent).toBe('No results yet.');
  });
});
