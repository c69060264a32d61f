#!/usr/bin/env node
// @ts-check
/*
 * icpml UI development server — DEVELOPMENT AND TESTS ONLY, never production.
 *
 * Production traffic goes through Supabase's PostgREST. There is no PostgREST
 * binary in Debian 12 and none on npm, so this file follows the part of
 * PostgREST's contract that supabase-js and @icpml/ui use, closely enough
 * that the same client code runs against either:
 *
 *   GET|POST /rest/v1/rpc/<fn>   a function of the schema chosen by the
 *                                Accept-Profile (GET) / Content-Profile (POST)
 *                                header; named arguments from the query
 *                                string (GET) or the JSON body (POST); GET runs
 *                                in a READ ONLY transaction and refuses
 *                                VOLATILE functions (405), as PostgREST's
 *                                read-only GET would fail on their writes
 *   GET  /rest/v1/<table>        select=, column filters (eq, neq, gt, gte,
 *                                lt, lte, in, is), order=, limit=, offset=
 *   POST /rest/v1/<table>        insert a JSON object or array
 *                                (Prefer: return=minimal | representation)
 *
 * Each request is one transaction on a connection logged in as
 * `authenticator`: the role comes from the JWT in `Authorization: Bearer`
 * (HS256, signature and `exp` verified; `anon` without a token), then
 * `SET LOCAL ROLE`, and `request.jwt.claims`, `request.method`,
 * `request.path` and `request.headers` are set with set_config(..., true) so
 * that auth.uid(), row-level security and icpml's own caller checks see what
 * they see under PostgREST. Errors come back as PostgREST's
 * {code, message, details, hint} with its SQLSTATE -> HTTP status mapping.
 *
 * Function and column names from a request are looked up in the catalogs and
 * quoted; values are always bound parameters. Not implemented (PostgREST
 * has them): resource embedding, PATCH/DELETE, counts and Content-Range,
 * CSV, the schema cache (the catalogs are read on every request).
 *
 * It also serves a directory of static files (the demo dashboard) and, with
 * --dev-tokens, hands out signed tokens at /dev/token so a demo page can act
 * as any sales user or as service_role. Bind it to loopback only.
 *
 *   node dev/server.mjs --db postgresql://authenticator@/icpml_demo?host=/tmp/x&port=5432 \
 *        --port 55040 --jwt-secret SECRET [--static demo-dist] [--dev-tokens]
 */
import http from 'node:http';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';

/** @typedef {{ status: number, code: string, message: string, details?: string|null, hint?: string|null }} ApiError */

// --- JWT (HS256) -------------------------------------------------------------

/** @param {Buffer|string} b */
function b64url(b) {
  return Buffer.from(b).toString('base64url');
}

/**
 * Sign claims with HS256.
 * @param {Record<string, unknown>} claims
 * @param {string} secret
 */
export function signJwt(claims, secret) {
  const head = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const body = b64url(JSON.stringify(claims));
  const sig = crypto.createHmac('sha256', secret).update(`${head}.${body}`).digest();
  return `${head}.${body}.${b64url(sig)}`;
}

/**
 * Verify an HS256 token; returns its claims or throws an ApiError.
 * @param {string} token
 * @param {string} secret
 * @returns {Record<string, any>}
 */
export function verifyJwt(token, secret) {
  const bad = (/** @type {string} */ message, code = 'PGRST301') =>
    Object.assign(new Error(message), { api: { status: 401, code, message, details: null, hint: null } });
  const parts = token.split('.');
  if (parts.length !== 3) throw bad('JWT cryptographic operation failed');
  let header, claims;
  try {
    header = JSON.parse(Buffer.from(parts[0], 'base64url').toString('utf8'));
    claims = JSON.parse(Buffer.from(parts[1], 'base64url').toString('utf8'));
  } catch {
    throw bad('JWT cryptographic operation failed');
  }
  if (header.alg !== 'HS256') throw bad('JWT algorithm not supported');
  const want = crypto.createHmac('sha256', secret).update(`${parts[0]}.${parts[1]}`).digest();
  const got = Buffer.from(parts[2], 'base64url');
  if (got.length !== want.length || !crypto.timingSafeEqual(got, want)) throw bad('JWT cryptographic operation failed');
  if (typeof claims !== 'object' || claims === null || Array.isArray(claims)) throw bad('JWT claims are not an object');
  const now = Math.floor(Date.now() / 1000);
  if (typeof claims.exp === 'number' && now >= claims.exp) throw bad('JWT expired', 'PGRST303');
  if (typeof claims.nbf === 'number' && now < claims.nbf) throw bad('JWT not yet valid', 'PGRST303');
  return claims;
}

// --- PostgREST's error mapping ------------------------------------------------

/**
 * HTTP status for a SQLSTATE, as PostgREST maps them.
 * @param {string} code
 * @param {boolean} authenticated
 */
export function httpStatusFor(code, authenticated) {
  if (code === '42501') return authenticated ? 403 : 401;
  const exact = { '23503': 409, '23505': 409, '25006': 405, P0001: 400, '42883': 404, '42P01': 404, '42P17': 500 };
  if (code in exact) return exact[/** @type {keyof typeof exact} */ (code)];
  const prefix = {
    '08': 503, '09': 500, '0L': 403, '0P': 403, '25': 500, '28': 403, '2D': 500, '38': 500, '39': 500,
    '3B': 500, '40': 500, '53': 503, '54': 500, '55': 500, '57': 500, '58': 500, F0: 500, HV: 500,
    P0: 500, XX: 500,
  };
  return prefix[/** @type {keyof typeof prefix} */ (code.slice(0, 2))] ?? 400;
}

/**
 * @param {number} status @param {string} code @param {string} message
 * @param {string|null} [details] @param {string|null} [hint]
 */
function apiError(status, code, message, details = null, hint = null) {
  return Object.assign(new Error(message), { api: { status, code, message, details, hint } });
}

// --- the server ---------------------------------------------------------------

/**
 * @typedef {object} Options
 * @property {string} db             connection string (as authenticator)
 * @property {string} jwtSecret
 * @property {string[]} [schemas]    exposed schemas, the first is the default
 * @property {string} [anonRole]
 * @property {string} [staticDir]
 * @property {boolean} [devTokens]
 * @property {number} [poolSize]
 */

/**
 * Create the HTTP server (not yet listening) and its pool.
 * @param {Options} opts
 */
export function createServer(opts) {
  const schemas = opts.schemas ?? ['public', 'icpml'];
  const anonRole = opts.anonRole ?? 'anon';
  const pool = new pg.Pool({ connectionString: opts.db, max: opts.poolSize ?? 4 });
  // keep timestamps and numbers as PostgreSQL prints them (JSON comes from json_agg)
  pool.on('error', (err) => console.error('pool:', err.message));

  const server = http.createServer((req, res) => {
    handle(req, res).catch((err) => {
      const a = err.api ?? { status: 500, code: 'PGRST000', message: String(err.message ?? err), details: null, hint: null };
      send(res, a.status, JSON.stringify({ code: a.code, message: a.message, details: a.details ?? null, hint: a.hint ?? null }));
    });
  });

  /** @param {http.ServerResponse} res @param {number} status @param {string|null} body @param {Record<string,string>} [headers] */
  function send(res, status, body, headers = {}) {
    res.writeHead(status, {
      'Access-Control-Allow-Origin': '*',
      'Access-Control-Expose-Headers': 'Content-Profile, Content-Range',
      ...(body !== null ? { 'Content-Type': 'application/json; charset=utf-8' } : {}),
      ...headers,
    });
    res.end(body ?? undefined);
  }

  /** @param {http.IncomingMessage} req */
  async function readBody(req) {
    const chunks = [];
    let size = 0;
    for await (const c of req) {
      size += c.length;
      if (size > 10 * 1024 * 1024) throw apiError(413, 'PGRST102', 'Request body too large');
      chunks.push(c);
    }
    const text = Buffer.concat(chunks).toString('utf8');
    if (text.trim() === '') return {};
    try {
      return JSON.parse(text);
    } catch {
      throw apiError(400, 'PGRST102', 'Empty or invalid json');
    }
  }

  /** @param {http.IncomingMessage} req @param {http.ServerResponse} res */
  async function handle(req, res) {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const method = req.method ?? 'GET';
    if (method === 'OPTIONS') {
      res.writeHead(204, {
        'Access-Control-Allow-Origin': '*',
        'Access-Control-Allow-Methods': 'GET, POST, OPTIONS',
        'Access-Control-Allow-Headers':
          'authorization, apikey, content-type, accept, accept-profile, content-profile, prefer, x-client-info, range',
        'Access-Control-Max-Age': '600',
      });
      res.end();
      return;
    }
    if (url.pathname.startsWith('/rest/v1/')) return rest(req, res, url, method);
    if (url.pathname === '/dev/token' && opts.devTokens) return devToken(res, url);
    if (url.pathname === '/dev/config.json' && opts.devTokens) {
      return send(res, 200, JSON.stringify({ anonKey: signJwt({ role: anonRole, iss: 'icpml-dev' }, opts.jwtSecret) }));
    }
    if ((method === 'GET' || method === 'HEAD') && opts.staticDir) return serveStatic(res, url);
    throw apiError(404, 'PGRST125', 'Invalid path specified in request URL');
  }

  /** @param {http.ServerResponse} res @param {URL} url */
  function devToken(res, url) {
    const role = url.searchParams.get('role') ?? 'authenticated';
    const sub = url.searchParams.get('sub');
    /** @type {Record<string, unknown>} */
    const claims = { role, iss: 'icpml-dev', exp: Math.floor(Date.now() / 1000) + 3600 };
    if (sub) claims.sub = sub;
    send(res, 200, JSON.stringify({ access_token: signJwt(claims, opts.jwtSecret), token_type: 'bearer' }));
  }

  const types = {
    '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8',
    '.svg': 'image/svg+xml', '.png': 'image/png', '.json': 'application/json', '.ico': 'image/x-icon',
  };

  /** @param {http.ServerResponse} res @param {URL} url */
  function serveStatic(res, url) {
    const root = path.resolve(/** @type {string} */ (opts.staticDir));
    let file = path.resolve(root, '.' + decodeURIComponent(url.pathname));
    if (!file.startsWith(root)) throw apiError(404, 'PGRST125', 'Not found');
    if (!fs.existsSync(file) || fs.statSync(file).isDirectory()) file = path.join(root, 'index.html');
    const ext = path.extname(file);
    res.writeHead(200, { 'Content-Type': types[/** @type {keyof typeof types} */ (ext)] ?? 'application/octet-stream' });
    fs.createReadStream(file).pipe(res);
  }

  /**
   * One REST request: authenticate, pick the schema, run in one transaction.
   * @param {http.IncomingMessage} req @param {http.ServerResponse} res @param {URL} url @param {string} method
   */
  async function rest(req, res, url, method) {
    if (method !== 'GET' && method !== 'HEAD' && method !== 'POST') {
      throw apiError(405, 'PGRST117', `Unsupported HTTP method: ${method}`);
    }
    const auth = req.headers.authorization;
    /** @type {Record<string, any>} */
    let claims = { role: anonRole };
    let fromToken = false;
    if (auth) {
      const m = /^Bearer\s+(\S+)$/i.exec(auth);
      if (!m) throw apiError(401, 'PGRST301', 'JWT cryptographic operation failed');
      claims = verifyJwt(m[1], opts.jwtSecret);
      fromToken = true;
    }
    const role = typeof claims.role === 'string' && claims.role !== '' ? claims.role : anonRole;
    const authenticated = fromToken && role !== anonRole;
    const readOnly = method === 'GET' || method === 'HEAD';
    const profile = /** @type {string|undefined} */ (req.headers[readOnly ? 'accept-profile' : 'content-profile']);
    const schema = profile ?? schemas[0];
    if (!schemas.includes(schema)) {
      throw apiError(406, 'PGRST106', `Invalid schema: ${schema}`, null, `Only the following schemas are exposed: ${schemas.join(', ')}`);
    }
    const single = (req.headers.accept ?? '').includes('application/vnd.pgrst.object+json');
    const body = readOnly ? null : await readBody(req);
    const rest = url.pathname.slice('/rest/v1/'.length);

    const client = await pool.connect();
    let status = 200;
    /** @type {string|null} */
    let out = null;
    try {
      await client.query(readOnly ? 'BEGIN ISOLATION LEVEL READ COMMITTED READ ONLY' : 'BEGIN ISOLATION LEVEL READ COMMITTED');
      try {
        // catalog look-ups run as authenticator, before the role switch
        const call = rest.startsWith('rpc/')
          ? await planRpc(client, schema, decodeURIComponent(rest.slice(4)), method, url, body)
          : await planTable(client, schema, decodeURIComponent(rest), method, url, body, String(req.headers.prefer ?? ''));
        await client.query(`SET LOCAL ROLE ${client.escapeIdentifier(role)}`);
        await client.query(
          `SELECT set_config('search_path', $1, true), set_config('request.jwt.claims', $2, true),
                  set_config('request.method', $3, true), set_config('request.path', $4, true),
                  set_config('request.headers', $5, true)`,
          [
            `${client.escapeIdentifier(schema)}, public`, JSON.stringify(claims), method, url.pathname,
            JSON.stringify(Object.fromEntries(Object.entries(req.headers).filter(([k]) => k !== 'authorization'))),
          ],
        );
        const r = await client.query({ text: call.sql, values: call.values, rowMode: 'array' });
        status = call.status;
        if (call.kind === 'void' || call.kind === 'minimal') {
          out = null;
        } else {
          out = /** @type {string|null} */ (r.rows[0]?.[0] ?? null);
          if (single) out = singleObject(out);
        }
        await client.query('COMMIT');
      } catch (err) {
        await client.query('ROLLBACK').catch(() => {});
        throw err;
      }
    } catch (err) {
      const e = /** @type {any} */ (err);
      if (e.api) throw err;
      if (typeof e.code === 'string' && /^[0-9A-Z]{5}$/.test(e.code)) {
        throw apiError(httpStatusFor(e.code, authenticated), e.code, e.message, e.detail ?? null, e.hint ?? null);
      }
      throw err;
    } finally {
      client.release();
    }
    const headers = { 'Content-Profile': schema };
    if (status === 204 || out === null) {
      res.writeHead(status === 200 ? 204 : status, { 'Access-Control-Allow-Origin': '*', ...headers });
      res.end();
      return;
    }
    send(res, status, method === 'HEAD' ? null : out, headers);
  }

  /** @param {string|null} json */
  function singleObject(json) {
    const v = json === null ? null : JSON.parse(json);
    if (Array.isArray(v)) {
      if (v.length !== 1) {
        throw apiError(406, 'PGRST116', 'JSON object requested, multiple (or no) rows returned',
          `The result contains ${v.length} rows`);
      }
      return JSON.stringify(v[0]);
    }
    return json;
  }

  /**
   * Resolve /rpc/<fn> and build its call.
   * @param {pg.PoolClient} client @param {string} schema @param {string} fn @param {string} method
   * @param {URL} url @param {any} body
   */
  async function planRpc(client, schema, fn, method, url, body) {
    const { rows } = await client.query(
      `SELECT p.provolatile, p.proretset, p.prorettype = 'pg_catalog.void'::regtype AS is_void,
              (t.typtype = 'c' OR p.prorettype = 'pg_catalog.record'::regtype) AS is_composite,
              p.pronargdefaults, p.prokind,
              coalesce(p.proargnames, '{}') AS names,
              coalesce(p.proargmodes::text[], array_fill('i'::text, ARRAY[p.pronargs])) AS modes,
              ARRAY(SELECT pg_catalog.format_type(a, NULL)
                    FROM unnest(coalesce(p.proallargtypes, p.proargtypes::oid[])) WITH ORDINALITY AS u(a, i)
                    ORDER BY i) AS types
       FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_type t ON t.oid = p.prorettype
       WHERE p.pronamespace = (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = $1) AND p.proname = $2
         AND p.prokind = 'f'`,
      [schema, fn],
    );
    /** @type {Record<string, any>} */
    const args = method === 'POST' ? body : Object.fromEntries(url.searchParams);
    if (typeof args !== 'object' || args === null || Array.isArray(args)) {
      throw apiError(400, 'PGRST102', 'Function arguments must be a JSON object');
    }
    const given = Object.keys(args);
    const notFound = () =>
      apiError(404, 'PGRST202', `Could not find the function ${schema}.${fn}(${given.sort().join(', ')}) in the schema cache`);
    if (rows.length === 0) throw notFound();
    if (rows.length > 1) {
      throw apiError(300, 'PGRST203', `Could not choose the best candidate function between overloads of ${schema}.${fn}`);
    }
    const p = rows[0];
    /** @type {{ name: string, type: string, required: boolean }[]} */
    const inputs = [];
    const ins = p.modes.map((/** @type {string} */ m, /** @type {number} */ i) => ({ m, i })).filter((/** @type {{m:string}} */ x) => x.m === 'i' || x.m === 'b' || x.m === 'v');
    ins.forEach((/** @type {{i:number}} */ x, /** @type {number} */ j) => {
      inputs.push({ name: p.names[x.i] ?? '', type: p.types[x.i], required: j < ins.length - p.pronargdefaults });
    });
    for (const k of given) if (!inputs.some((a) => a.name === k && k !== '')) throw notFound();
    for (const a of inputs) if (a.required && !given.includes(a.name)) throw notFound();
    if (method !== 'POST' && p.provolatile === 'v') {
      throw apiError(405, '25006', `cannot execute ${schema}.${fn} in a read-only transaction`, null,
        'The function is VOLATILE: call it with POST (supabase-js: rpc() without { get: true }).');
    }
    const used = inputs.filter((a) => given.includes(a.name));
    const q = (/** @type {string} */ s) => client.escapeIdentifier(s);
    const target = `${q(schema)}.${q(fn)}`;
    /** @type {unknown[]} */
    const values = [];
    let callArgs;
    let from = '';
    if (method === 'POST') {
      // as PostgREST: the JSON body becomes one typed record, its fields the arguments
      values.push(JSON.stringify(Object.fromEntries(used.map((a) => [a.name, args[a.name]]))));
      callArgs = used.map((a) => `${q(a.name)} => _args.${q(a.name)}`).join(', ');
      if (used.length > 0) from = ` FROM pg_catalog.json_to_record($1::json) AS _args(${used.map((a) => `${q(a.name)} ${a.type}`).join(', ')})`;
    } else {
      callArgs = used.map((a) => {
        values.push(args[a.name]);
        return `${q(a.name)} => $${values.length}::${a.type}`;
      }).join(', ');
    }
    const call = `${target}(${callArgs})`;
    let sql;
    let kind = 'json';
    if (p.is_void) {
      sql = `SELECT ${call}${from}`;
      kind = 'void';
    } else if (p.proretset) {
      sql = p.is_composite
        ? `SELECT coalesce(pg_catalog.json_agg(_r), '[]')::text FROM (SELECT _r.*${from === '' ? ' FROM' : from + ','} ${call} _r) _r`
        : `SELECT coalesce(pg_catalog.json_agg(_r._v), '[]')::text FROM (SELECT _v${from === '' ? ' FROM' : from + ','} ${call} AS _v) _r`;
    } else if (p.is_composite) {
      sql = `SELECT pg_catalog.to_json(_r)::text FROM (SELECT _r.*${from === '' ? ' FROM' : from + ','} ${call} _r) _r`;
    } else {
      sql = `SELECT pg_catalog.to_json(${call})::text${from}`;
    }
    return { sql, values, status: 200, kind };
  }

  /**
   * Resolve /<table> (GET: select, POST: insert) and build its statement.
   * @param {pg.PoolClient} client @param {string} schema @param {string} table @param {string} method
   * @param {URL} url @param {any} body @param {string} prefer
   */
  async function planTable(client, schema, table, method, url, body, prefer) {
    const { rows } = await client.query(
      `SELECT a.attname::text AS name
       FROM pg_catalog.pg_class c JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid
       WHERE c.relnamespace = (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = $1) AND c.relname = $2
         AND c.relkind IN ('r', 'v', 'm', 'p', 'f') AND a.attnum > 0 AND NOT a.attisdropped
       ORDER BY a.attnum`,
      [schema, table],
    );
    if (rows.length === 0) {
      throw apiError(404, '42P01', `Could not find the table '${schema}.${table}' in the schema cache`);
    }
    const columns = new Set(rows.map((r) => r.name));
    const q = (/** @type {string} */ s) => client.escapeIdentifier(s);
    const col = (/** @type {string} */ c) => {
      if (!columns.has(c)) throw apiError(400, '42703', `column ${table}.${c} does not exist`);
      return q(c);
    };
    const target = `${q(schema)}.${q(table)}`;
    if (method === 'POST') {
      const list = Array.isArray(body) ? body : [body];
      if (list.length === 0 || list.some((r) => typeof r !== 'object' || r === null || Array.isArray(r))) {
        throw apiError(400, 'PGRST102', 'All object keys must match');
      }
      const keys = url.searchParams.get('columns')?.split(',').map((s) => s.trim().replace(/^"|"$/g, '')) ?? Object.keys(list[0]);
      const cols = keys.map(col).join(', ');
      const representation = /return=representation/.test(prefer);
      const insert = `INSERT INTO ${target} (${cols}) SELECT ${cols} FROM pg_catalog.json_populate_recordset(NULL::${target}, $1::json)`;
      return representation
        ? { sql: `WITH _ins AS (${insert} RETURNING *) SELECT coalesce(pg_catalog.json_agg(_ins), '[]')::text FROM _ins`, values: [JSON.stringify(list)], status: 201, kind: 'json' }
        : { sql: insert, values: [JSON.stringify(list)], status: 201, kind: 'minimal' };
    }
    /** @type {unknown[]} */
    const values = [];
    const where = [];
    let select = '*';
    let order = '';
    let limit = '';
    for (const [key, raw] of url.searchParams) {
      if (key === 'select') {
        select = raw === '*' ? '*' : raw.split(',').map((s) => col(s.trim().replace(/^"|"$/g, ''))).join(', ');
      } else if (key === 'order') {
        order = ' ORDER BY ' + raw.split(',').map((term) => {
          const [c, ...mods] = term.split('.');
          const dir = mods.includes('desc') ? ' DESC' : ' ASC';
          const nulls = mods.includes('nullsfirst') ? ' NULLS FIRST' : mods.includes('nullslast') ? ' NULLS LAST' : '';
          return col(c) + dir + nulls;
        }).join(', ');
      } else if (key === 'limit' || key === 'offset') {
        if (!/^\d+$/.test(raw)) throw apiError(400, 'PGRST100', `"${raw}" is not a valid ${key}`);
        limit += ` ${key.toUpperCase()} ${raw}`;
      } else if (key !== 'columns') {
        const m = /^(not\.)?(eq|neq|gt|gte|lt|lte|in|is)\.(.*)$/s.exec(raw);
        if (!m) throw apiError(400, 'PGRST100', `failed to parse filter (${raw})`);
        const [, not, op, val] = m;
        const c = col(key);
        let cond;
        if (op === 'is') {
          const v = { null: 'NULL', true: 'TRUE', false: 'FALSE', unknown: 'UNKNOWN' }[val.toLowerCase()];
          if (!v) throw apiError(400, 'PGRST100', `failed to parse filter (${raw})`);
          cond = `${c} IS ${v}`;
        } else if (op === 'in') {
          const inner = /^\((.*)\)$/s.exec(val);
          if (!inner) throw apiError(400, 'PGRST100', `failed to parse filter (${raw})`);
          const items = inner[1] === '' ? [] : inner[1].split(',').map((s) => s.trim().replace(/^"(.*)"$/s, '$1'));
          values.push(items);
          cond = `${c} = ANY($${values.length})`;
        } else {
          values.push(val);
          const sym = { eq: '=', neq: '<>', gt: '>', gte: '>=', lt: '<', lte: '<=' }[op];
          cond = `${c} ${sym} $${values.length}`;
        }
        where.push(not ? `NOT (${cond})` : cond);
      }
    }
    const sql = `SELECT coalesce(pg_catalog.json_agg(_r), '[]')::text FROM (SELECT ${select} FROM ${target}` +
      (where.length ? ` WHERE ${where.join(' AND ')}` : '') + `${order}${limit}) _r`;
    return { sql, values, status: 200, kind: 'json' };
  }

  return { server, pool };
}

// --- command line ---------------------------------------------------------------

/** @param {string[]} argv */
function parseArgs(argv) {
  /** @type {Record<string, string|boolean>} */
  const o = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) throw new Error(`unexpected argument ${a}`);
    const key = a.slice(2);
    if (key === 'dev-tokens') o[key] = true;
    else o[key] = argv[++i];
  }
  return o;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const o = parseArgs(process.argv.slice(2));
  const db = /** @type {string} */ (o.db ?? process.env.ICPML_DEV_DB);
  const jwtSecret = /** @type {string} */ (o['jwt-secret'] ?? process.env.ICPML_DEV_JWT_SECRET);
  if (!db || !jwtSecret) {
    console.error('usage: node dev/server.mjs --db CONNSTRING --jwt-secret SECRET [--port N] [--host 127.0.0.1] [--static DIR] [--dev-tokens]');
    process.exit(2);
  }
  const { server } = createServer({
    db, jwtSecret,
    staticDir: /** @type {string|undefined} */ (o.static),
    devTokens: o['dev-tokens'] === true,
    schemas: typeof o.schemas === 'string' ? o.schemas.split(',') : undefined,
  });
  const port = Number(o.port ?? 55040);
  const host = /** @type {string} */ (o.host ?? '127.0.0.1');
  server.listen(port, host, () => {
    console.log(`icpml development server (not for production): http://${host}:${port}/`);
  });
  const stop = () => server.close(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}
