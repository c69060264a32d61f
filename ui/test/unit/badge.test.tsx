import { afterEach, describe, expect, it } from 'vitest';
import { act } from 'react';
import { IcpmlProvider } from '../../src/context.js';
import { ScoreBadge } from '../../src/components/ScoreBadge.js';
import type { IcpScore } from '../../src/types.js';
import { fail, fakeClient, ok } from './fake.js';
import { render, settle } from './render.js';

const base: IcpScore = {
  account_id: 42,
  score: 9,
  priority: 'high',
  probability: 0.85,
  model: 'xgboost',
  model_version: 2,
  factors: [
    { factor: 'engineering_role_count', value: 3, contribution: 0.82 },
    { factor: 'company_size', value: null, contribution: -0.2 },
  ],
  factor_method: 'saabas',
};

let cleanup: (() => void) | null = null;
afterEach(() => {
  cleanup?.();
  cleanup = null;
});

describe('ScoreBadge', () => {
  it('fetches icp_score by GET with a named argument and shows score, priority and source', async () => {
    const { client, calls } = fakeClient({ 'rpc:icp_score': ok(base) });
    const r = await render(<ScoreBadge accountId={42} client={client} />);
    cleanup = r.unmount;
    await settle();
    expect(calls).toEqual([{ schema: 'icpml', kind: 'rpc', name: 'icp_score', args: { account_id: 42 }, get: true }]);
    const badge = r.container.querySelector('.icpml-badge')!;
    expect(badge.getAttribute('data-priority')).toBe('high');
    expect(badge.getAttribute('data-score')).toBe('9');
    const pill = r.container.querySelector('button')!;
    expect(pill.getAttribute('aria-label')).toBe('ICP score 9 of 10, high priority, model v2');
  });

  it('shows factors in words on focus and hides them on Escape and blur', async () => {
    const { client } = fakeClient({});
    const r = await render(<ScoreBadge accountId={42} score={base} client={client} />);
    cleanup = r.unmount;
    const pill = r.container.querySelector('button')!;
    const tip = r.container.querySelector('[role="tooltip"]') as HTMLElement;
    expect(tip.hidden).toBe(true);
    expect(pill.getAttribute('aria-describedby')).toBe(tip.id);
    await act(async () => pill.focus());
    expect(tip.hidden).toBe(false);
    const items = [...tip.querySelectorAll('li')].map((li) => li.textContent);
    expect(items).toEqual([
      '▲ Open engineering roles: 3 (strongly raises the fit)',
      '▼ Company size: unknown (lowers the fit)',
    ]);
    await act(async () => {
      pill.dispatchEvent(new KeyboardEvent('keydown', { key: 'Escape', bubbles: true }));
    });
    expect(tip.hidden).toBe(true);
  });

  it('copes with NULL factors (and a rule-based score)', async () => {
    const { client } = fakeClient({});
    const r = await render(
      <ScoreBadge accountId={7} score={{ ...base, model: 'rules', model_version: null, factors: null, priority: 'low', score: 3 }} client={client} />,
    );
    cleanup = r.unmount;
    const tip = r.container.querySelector('[role="tooltip"]')!;
    expect(tip.textContent).toContain('Rule-based score (no model deployed)');
    expect(tip.textContent).toContain('No factor breakdown for this score.');
    expect(tip.querySelectorAll('li')).toHaveLength(0);
    expect(r.container.querySelector('.icpml-badge')!.getAttribute('data-priority')).toBe('low');
  });

  it('shows no score for an unknown or hidden account (batch row of NULLs)', async () => {
    const { client } = fakeClient({});
    const nulls: IcpScore = { account_id: 5, score: null, priority: null, probability: null, model: null, model_version: null, factors: null, factor_method: null };
    const r = await render(<ScoreBadge accountId={5} score={nulls} client={client} />);
    cleanup = r.unmount;
    const pill = r.container.querySelector('[role="img"]')!;
    expect(pill.getAttribute('aria-label')).toBe('No ICP score: account not found or not visible to you');
    expect(r.container.querySelector('button')).toBeNull();
  });

  it('reports a not-found error (P0002) as "not visible", other errors by message', async () => {
    const { client } = fakeClient({
      'rpc:icp_score': (c) =>
        (c.args as { account_id: number }).account_id === 3
          ? fail('account 3 not found in public.account_features', 'P0002')
          : fail('permission denied for schema icpml', '42501'),
    });
    const r = await render(
      <IcpmlProvider client={client}>
        <ScoreBadge accountId={3} />
        <ScoreBadge accountId={4} />
      </IcpmlProvider>,
    );
    cleanup = r.unmount;
    await settle();
    const labels = [...r.container.querySelectorAll('[role="img"]')].map((e) => e.getAttribute('aria-label'));
    expect(labels).toEqual([
      'No ICP score: account not found or not visible to you',
      'No ICP score: You do not have access to this.',
    ]);
  });

  it('keeps its size while loading (a placeholder pill, aria-busy)', async () => {
    const { client } = fakeClient({ 'rpc:icp_score': () => new Promise(() => {}) });
    const r = await render(<ScoreBadge accountId={1} client={client} />);
    cleanup = r.unmount;
    const b = r.container.querySelector('.icpml-badge')!;
    expect(b.getAttribute('aria-busy')).toBe('true');
    expect(b.querySelector('.icpml-badge__pill')).not.toBeNull();
  });
});
