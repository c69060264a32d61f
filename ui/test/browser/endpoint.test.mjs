// @ts-check
/*
 * The development server follows PostgREST's contract as supabase-js uses it:
 * postgrest-js (supabase-js's REST client; supabase-js itself needs a
 * WebSocket that Node 20 lacks, and runs in the browser tests) against the
 * server over the test database, each answer compared with SQL run as the
 * same role.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { PostgrestClient } from '@supabase/postgrest-js';
import { pickSubjects, startStack } from './harness.mjs';

/** @type {Awaited<ReturnType<typeof startStack>>} */
let s;
/** @type {Awaited<ReturnType<typeof pickSubjects>>} */
let who;
/** @param {string|null} jwt */
const client = (jwt) =>
  new PostgrestClient(`${s.url}/rest/v1`, { headers: { apikey: s.anonKey, ...(jwt === null ? {} : { Authorization: `Bearer ${jwt}` }) } });

before(async () => {
  s = await startStack();
  who = await pickSubjects(s);
});
after(async () => {
  await s.stop();
});

describe('development endpoint (PostgREST contract, through supabase-js)', () => {
  test('anon has no rights on icpml: 401 with the SQLSTATE', async () => {
    const r = await client(null).schema('icpml').rpc('icp_score', { account_id: who.visible }, { get: true });
    assert.equal(r.status, 401);
    assert.equal(r.error?.code, '42501');
  });

  test('icp_score by GET returns the single row SQL returns, numbers exact', async () => {
    const r = await client(s.token({ role: 'authenticated', sub: who.u1 })).schema('icpml').rpc('icp_score', { account_id: who.visible }, { get: true });
    assert.equal(r.error, null);
    const [row] = await s.user(who.u1, `SELECT to_json(r) AS j FROM icpml.icp_score($1) r`, [who.visible]);
    assert.deepEqual(r.data, row.j);
    assert.equal(typeof row.j.probability, 'number');
  });

  test('icp_score_batch by GET with an array argument keeps order; hidden ids give NULL scores', async () => {
    const ids = [who.visible, who.hidden, 999999];
    const r = await client(s.token({ role: 'authenticated', sub: who.u1 })).schema('icpml').rpc('icp_score_batch', { account_ids: ids }, { get: true });
    assert.equal(r.error, null);
    const data = /** @type {{account_id: number, score: number|null}[]} */ (r.data);
    assert.deepEqual(data.map((d) => d.account_id), ids);
    const sql = await s.user(who.u1, `SELECT score FROM icpml.icp_score_batch($1::bigint[])`, [ids]);
    assert.deepEqual(data.map((d) => d.score), sql.map((x) => x.score));
    assert.equal(data[1].score, null);
  });

  test('a hidden account is an error for icp_score, as in SQL (P0002)', async () => {
    const r = await client(s.token({ role: 'authenticated', sub: who.u1 })).schema('icpml').rpc('icp_score', { account_id: who.hidden }, { get: true });
    assert.equal(r.error?.code, 'P0002');
    await assert.rejects(s.user(who.u1, `SELECT * FROM icpml.icp_score($1)`, [who.hidden]), /not found/);
  });

  test('recommend_accounts is VOLATILE: GET is refused (405), POST serves and logs', async () => {
    const c = client(s.token({ role: 'authenticated', sub: who.u1 })).schema('icpml');
    const g = await c.rpc('recommend_accounts', { user_id: who.u1, k: 3 }, { get: true });
    assert.equal(g.status, 405);
    const p = await c.rpc('recommend_accounts', { user_id: who.u1, k: 3 });
    assert.equal(p.error, null);
    const rows = /** @type {{recommendation_id: number, account_id: number}[]} */ (p.data);
    assert.equal(rows.length, 3);
    const logged = await s.service(`SELECT account_id::int FROM icpml.recommendations WHERE recommendation_id = ANY($1::bigint[]) ORDER BY rank`, [
      rows.map((r) => r.recommendation_id),
    ]);
    assert.deepEqual(logged.map((l) => l.account_id), rows.map((r) => r.account_id));
  });

  test('request.jwt.claims reaches icpml: another user id is refused (403)', async () => {
    const r = await client(s.token({ role: 'authenticated', sub: who.u1 })).schema('icpml').rpc('recommend_accounts', { user_id: who.u2, k: 3 });
    assert.equal(r.status, 403);
    assert.equal(r.error?.code, '42501');
    assert.match(r.error?.message ?? '', /JWT subject/);
  });

  test('administrative functions: 403 for a sales user, served to service_role', async () => {
    const u = await client(s.token({ role: 'authenticated', sub: who.u1 })).schema('icpml').rpc('describe_model', {}, { get: true });
    assert.equal(u.status, 403);
    const a = await client(s.token({ role: 'service_role' })).schema('icpml').rpc('describe_model', {}, { get: true });
    assert.equal(a.error, null);
    const [row] = await s.service(`SELECT icpml.describe_model() AS d`);
    assert.equal(/** @type {{version: number}} */ (a.data).version, row.d.version);
  });

  test('inserts into user_interactions go through row-level security', async () => {
    const c = client(s.token({ role: 'authenticated', sub: who.u1 }));
    const own = await c.schema('public').from('user_interactions').insert({ user_id: who.u1, account_id: who.visible, interaction_type: 'view' });
    assert.equal(own.status, 201);
    const other = await c.schema('public').from('user_interactions').insert({ user_id: who.u2, account_id: who.visible, interaction_type: 'view' });
    assert.equal(other.status, 403);
    const hidden = await c.schema('public').from('user_interactions').insert({ user_id: who.u1, account_id: who.hidden, interaction_type: 'view' });
    assert.equal(hidden.status, 403);
  });

  test('table reads see what SQL sees for the role', async () => {
    const u = await client(s.token({ role: 'authenticated', sub: who.u1 })).schema('public').from('account_signals').select('account_id').in('account_id', [who.visible, who.hidden]);
    assert.deepEqual(u.data, [{ account_id: who.visible }]);
    const a = await client(s.token({ role: 'service_role' })).schema('public').from('account_signals').select('account_id').eq('account_id', who.hidden).single();
    assert.deepEqual(a.data, { account_id: who.hidden });
  });

  test('bad, expired and foreign tokens are refused (401); unexposed schemas too (406)', async () => {
    // flip the signature's first character: all six of its bits are signature bits (the last
    // character's low bits are padding, which a decoder may ignore)
    const [head, body, sig] = s.token({ role: 'service_role' }).split('.');
    const forged = client([head, body, (sig[0] === 'A' ? 'B' : 'A') + sig.slice(1)].join('.'));
    assert.equal((await forged.schema('icpml').rpc('list_models', {}, { get: true })).status, 401);
    const expired = client(s.token({ role: 'service_role', exp: Math.floor(Date.now() / 1000) - 5 }));
    const e = await expired.schema('icpml').rpc('list_models', {}, { get: true });
    assert.equal(e.status, 401);
    assert.equal(e.error?.code, 'PGRST303');
    const r = await client(s.token({ role: 'service_role' })).schema('pg_catalog').rpc('version', {}, { get: true });
    assert.equal(r.status, 406);
  });
});
