// @ts-check
/*
 * Shared set-up of the browser and endpoint tests: the development server on
 * a free port over the test database (ui/test/fixture.sql), SQL as any role
 * for the expected values, and Debian's chromium through playwright-core.
 *
 *   ICPML_UI_TEST_DB        connection string as `authenticator` (the server's)
 *   ICPML_UI_CHROMIUM       browser binary (default /usr/bin/chromium)
 *   ICPML_UI_SCREENSHOTS    a directory: save the README screenshots there
 */
import crypto from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { createServer, signJwt } from '../../dev/server.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
export const uiRoot = path.resolve(here, '../..');

export function requireEnv() {
  const db = process.env.ICPML_UI_TEST_DB;
  if (!db) {
    throw new Error('ICPML_UI_TEST_DB is not set: run these tests through test/run test (it creates the database from ui/test/fixture.sql)');
  }
  return db;
}

/** Start the development server over the test database; returns its URL, a token maker and SQL helpers. */
export async function startStack() {
  const db = requireEnv();
  const secret = crypto.randomBytes(32).toString('hex');
  const { server, pool } = createServer({ db, jwtSecret: secret, staticDir: path.join(uiRoot, 'demo-dist'), devTokens: true });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(undefined)));
  const addr = /** @type {import('node:net').AddressInfo} */ (server.address());
  const url = `http://127.0.0.1:${addr.port}`;
  const sqlPool = new pg.Pool({ connectionString: db, max: 2 });

  /**
   * Run SQL as a role with JWT claims, as the server would, and roll back.
   * @param {{ role: string, sub?: string }} claims @param {string} text @param {unknown[]} [values]
   */
  async function sqlAs(claims, text, values = []) {
    const c = await sqlPool.connect();
    try {
      await c.query('BEGIN');
      await c.query(`SET LOCAL ROLE ${c.escapeIdentifier(claims.role)}`);
      await c.query(`SELECT set_config('request.jwt.claims', $1, true)`, [JSON.stringify(claims)]);
      return (await c.query(text, values)).rows;
    } finally {
      await c.query('ROLLBACK').catch(() => {});
      c.release();
    }
  }
  const service = (/** @type {string} */ text, /** @type {unknown[]} */ values = []) => sqlAs({ role: 'service_role' }, text, values);
  const user = (/** @type {string} */ sub, /** @type {string} */ text, /** @type {unknown[]} */ values = []) =>
    sqlAs({ role: 'authenticated', sub }, text, values);
  /** @param {Record<string, unknown>} claims */
  const token = (claims) => signJwt({ exp: Math.floor(Date.now() / 1000) + 600, ...claims }, secret);
  const anonKey = signJwt({ role: 'anon' }, secret);

  async function stop() {
    await new Promise((resolve) => server.close(() => resolve(undefined)));
    await pool.end();
    await sqlPool.end();
  }
  return { url, secret, token, anonKey, service, user, stop };
}

/** Debian's chromium, headless, with the flags this machine needs (no sandbox as root, no background networking). */
export async function launchBrowser() {
  const { chromium } = await import('playwright-core');
  return chromium.launch({
    executablePath: process.env.ICPML_UI_CHROMIUM ?? '/usr/bin/chromium',
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--disable-dev-shm-usage',
    ],
  });
}

/**
 * Users and accounts the tests use: two users, an account each of them sees,
 * and an account the first cannot see (another industry) but the second can.
 * @param {Awaited<ReturnType<typeof startStack>>} s
 */
export async function pickSubjects(s) {
  const users = await s.service(`SELECT user_id::text FROM public.sales_users ORDER BY user_id`);
  for (const a of users) {
    for (const b of users) {
      if (a.user_id === b.user_id) continue;
      const hidden = await s.service(
        `SELECT account_id::int FROM public.account_signals
         WHERE industry NOT IN (SELECT industry FROM public.user_territories WHERE user_id = $1)
           AND industry IN (SELECT industry FROM public.user_territories WHERE user_id = $2)
         ORDER BY account_id LIMIT 1`,
        [a.user_id, b.user_id],
      );
      if (hidden.length === 1) {
        const visible = await s.user(a.user_id, `SELECT account_id::int FROM public.account_signals ORDER BY account_id LIMIT 1`);
        return { u1: a.user_id, u2: b.user_id, hidden: hidden[0].account_id, visible: visible[0].account_id };
      }
    }
  }
  throw new Error('fixture: no pair of users with different territories');
}
