import { afterEach, describe, expect, it } from 'vitest';
import { RecommendedAccounts } from '../../src/components/RecommendedAccounts.js';
import type { Recommendation } from '../../src/types.js';
import { fail, fakeClient, ok } from './fake.js';
import { click, render, settle } from './render.js';

const USER = '1098658c-8417-50ab-be3b-05d347c81d24';
const rec = (rank: number, account_id: number, exploring = false): Recommendation => ({
  rank,
  account_id,
  icp_score: 9,
  priority: 'high',
  reason: {
    summary: `High ICP fit (9/10), hiring 3 engineers${exploring ? ', exploring: your response to accounts like this is still uncertain' : ''}`,
    exploration: exploring,
    industry: 'devtools',
  },
  recommendation_id: 100 + rank,
});

let cleanup: (() => void) | null = null;
afterEach(() => {
  cleanup?.();
  cleanup = null;
});

const ids = (c: HTMLElement) => [...c.querySelectorAll('li[data-account-id]')].map((li) => Number(li.getAttribute('data-account-id')));

describe('RecommendedAccounts', () => {
  it('calls recommend_accounts by POST with named arguments, then names and scores by GET', async () => {
    const { client, calls } = fakeClient({
      'rpc:recommend_accounts': ok([rec(1, 11), rec(2, 12, true)]),
      'select:account_signals': ok([{ account_id: 11, account_name: 'Acme', industry: 'devtools' }]),
      'rpc:icp_score_batch': ok([]),
    });
    const r = await render(<RecommendedAccounts userId={USER} k={2} client={client} />);
    cleanup = r.unmount;
    await settle();
    expect(calls[0]).toEqual({ schema: 'icpml', kind: 'rpc', name: 'recommend_accounts', args: { user_id: USER, k: 2 }, get: false });
    expect(calls.find((c) => c.name === 'icp_score_batch')).toMatchObject({ args: { account_ids: [11, 12] }, get: true });
    expect(calls.find((c) => c.name === 'account_signals')).toMatchObject({ schema: 'public', filters: [['in:account_id', [11, 12]]] });
    expect(ids(r.container)).toEqual([11, 12]);
    const names = [...r.container.querySelectorAll('.icpml-recs__name')].map((n) => n.textContent);
    expect(names).toEqual(['Acme · devtools', 'Account 12 · devtools']);
  });

  it('marks exploring slots from reason.exploration and drops the clause from the reason', async () => {
    const { client } = fakeClient({
      'rpc:recommend_accounts': ok([rec(1, 11), rec(2, 12, true)]),
      'select:account_signals': ok([]),
      'rpc:icp_score_batch': ok([]),
    });
    const r = await render(<RecommendedAccounts userId={USER} client={client} />);
    cleanup = r.unmount;
    await settle();
    const items = r.container.querySelectorAll('li[data-account-id]');
    expect(items[0].getAttribute('data-exploring')).toBe('false');
    expect(items[1].getAttribute('data-exploring')).toBe('true');
    expect(items[0].querySelector('.icpml-tag--exploring')).toBeNull();
    expect(items[1].querySelector('.icpml-tag--exploring')!.textContent).toContain('Exploring');
    expect(items[1].querySelector('.icpml-recs__reason')!.textContent).toBe('High ICP fit (9/10), hiring 3 engineers');
  });

  it('dismiss inserts into user_interactions and removes the account; refresh asks again', async () => {
    let round = 0;
    const { client, calls } = fakeClient({
      'rpc:recommend_accounts': () => ok(round++ === 0 ? [rec(1, 11), rec(2, 12)] : [rec(1, 12), rec(2, 13)]),
      'select:account_signals': ok([]),
      'rpc:icp_score_batch': ok([]),
      'insert:user_interactions': ok(null),
    });
    const r = await render(<RecommendedAccounts userId={USER} client={client} />);
    cleanup = r.unmount;
    await settle();
    await click(r.container.querySelector('li[data-account-id="11"] button[data-action="dismiss"]'));
    expect(calls.filter((c) => c.kind === 'insert')).toEqual([
      { schema: 'public', kind: 'insert', name: 'user_interactions', args: { user_id: USER, account_id: 11, interaction_type: 'dismiss' } },
    ]);
    expect(ids(r.container)).toEqual([12]);
    expect(r.container.querySelector('[role="status"]')!.textContent).toBe('Dismissed account 11.');
    await click([...r.container.querySelectorAll('button')].find((b) => b.textContent === 'Refresh')!);
    expect(ids(r.container)).toEqual([12, 13]);
  });

  it('keeps the account and says why when the insert fails', async () => {
    const { client } = fakeClient({
      'rpc:recommend_accounts': ok([rec(1, 11)]),
      'select:account_signals': ok([]),
      'rpc:icp_score_batch': ok([]),
      'insert:user_interactions': fail('new row violates row-level security policy for table "user_interactions"', '42501'),
    });
    const r = await render(<RecommendedAccounts userId={USER} client={client} />);
    cleanup = r.unmount;
    await settle();
    await click(r.container.querySelector('button[data-action="save"]'));
    expect(ids(r.container)).toEqual([11]);
    expect(r.container.querySelector('.icpml-recs__action-error')!.textContent).toBe('You do not have access to this.');
  });

  it('shows an empty state for an empty list', async () => {
    const { client } = fakeClient({ 'rpc:recommend_accounts': ok([]) });
    const r = await render(<RecommendedAccounts userId={USER} client={client} />);
    cleanup = r.unmount;
    await settle();
    expect(r.container.querySelector('.icpml-empty')!.textContent).toMatch(/^No accounts to recommend right now/);
    expect(r.container.querySelectorAll('li')).toHaveLength(0);
  });

  it('shows an error with its hint-free message and retries', async () => {
    let n = 0;
    const { client } = fakeClient({
      'rpc:recommend_accounts': () =>
        n++ === 0 ? fail('k must be between 1 and 100', '22023') : ok([rec(1, 11)]),
      'select:account_signals': ok([]),
      'rpc:icp_score_batch': ok([]),
    });
    const r = await render(<RecommendedAccounts userId={USER} client={client} />);
    cleanup = r.unmount;
    await settle();
    const alert = r.container.querySelector('[role="alert"]')!;
    expect(alert.textContent).toContain('Could not load recommendations: k must be between 1 and 100');
    await click([...alert.querySelectorAll('button')].find((b) => b.textContent === 'Try again')!);
    expect(r.container.querySelector('[role="alert"]')).toBeNull();
    expect(ids(r.container)).toEqual([11]);
  });

  it('shows k placeholder rows while loading, so the list does not jump', async () => {
    const { client } = fakeClient({ 'rpc:recommend_accounts': () => new Promise(() => {}) });
    const r = await render(<RecommendedAccounts userId={USER} k={4} client={client} />);
    cleanup = r.unmount;
    expect(r.container.querySelectorAll('.icpml-recs__item--skeleton')).toHaveLength(4);
    expect(r.container.querySelector('section')!.getAttribute('aria-busy')).toBe('true');
  });

  it('still lists accounts when names and scores cannot be read', async () => {
    const { client } = fakeClient({
      'rpc:recommend_accounts': ok([rec(1, 11)]),
      'select:account_signals': fail('permission denied for table account_signals', '42501'),
      'rpc:icp_score_batch': fail('boom', 'XX000'),
    });
    const r = await render(<RecommendedAccounts userId={USER} client={client} />);
    cleanup = r.unmount;
    await settle();
    expect(ids(r.container)).toEqual([11]);
    expect(r.container.querySelector('.icpml-badge')!.getAttribute('data-score')).toBe('9');
    expect(r.container.querySelector('.icpml-badge button')!.getAttribute('aria-label')).toBe('ICP score 9 of 10, high priority');
  });

  it('calls onLoaded, onView and onInteraction of the latest render', async () => {
    const { client } = fakeClient({
      'rpc:recommend_accounts': ok([rec(1, 11), rec(2, 12)]),
      'select:account_signals': ok([]),
      'rpc:icp_score_batch': ok([]),
      'insert:user_interactions': ok(null),
    });
    const seen: string[] = [];
    const r = await render(
      <RecommendedAccounts userId={USER} client={client} onLoaded={(a) => seen.push(`loaded ${a.join(',')}`)} onView={(a) => seen.push(`view ${a}`)} />,
    );
    cleanup = r.unmount;
    await settle();
    await click(r.container.querySelector('li[data-account-id="12"] button[data-action="view"]'));
    expect(seen).toEqual(['loaded 11,12', 'view 12']);
    expect(r.container.querySelector('li[data-account-id="12"] button[data-action="view"]')!.getAttribute('aria-pressed')).toBe('true');
  });
});
