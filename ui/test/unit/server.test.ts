// @vitest-environment node
import { describe, expect, it } from 'vitest';
// @ts-ignore -- plain ESM with JSDoc types
import { httpStatusFor, signJwt, verifyJwt } from '../../dev/server.mjs';

const secret = 'test-secret-test-secret-test-secret';

const apiCode = (f: () => unknown) => {
  try {
    f();
  } catch (e) {
    return (e as { api: { status: number; code: string } }).api;
  }
  return null;
};

describe('development server: JWT', () => {
  it('accepts its own HS256 tokens and returns the claims', () => {
    const t = signJwt({ role: 'authenticated', sub: 'abc', exp: Math.floor(Date.now() / 1000) + 60 }, secret);
    expect(verifyJwt(t, secret)).toMatchObject({ role: 'authenticated', sub: 'abc' });
  });
  it('refuses a wrong signature, alg none, garbage and expired tokens', () => {
    const t = signJwt({ role: 'service_role' }, 'another-secret');
    expect(apiCode(() => verifyJwt(t, secret))).toMatchObject({ status: 401, code: 'PGRST301' });
    const [, body] = signJwt({ role: 'service_role' }, secret).split('.');
    const none = `${Buffer.from('{"alg":"none","typ":"JWT"}').toString('base64url')}.${body}.`;
    expect(apiCode(() => verifyJwt(none, secret))).toMatchObject({ status: 401 });
    expect(apiCode(() => verifyJwt('not-a-token', secret))).toMatchObject({ status: 401 });
    const old = signJwt({ role: 'authenticated', exp: Math.floor(Date.now() / 1000) - 1 }, secret);
    expect(apiCode(() => verifyJwt(old, secret))).toMatchObject({ status: 401, code: 'PGRST303' });
  });
});

describe('development server: SQLSTATE to HTTP status, as PostgREST', () => {
  it('maps the codes icpml raises', () => {
    expect(httpStatusFor('42501', true)).toBe(403);
    expect(httpStatusFor('42501', false)).toBe(401);
    expect(httpStatusFor('P0002', true)).toBe(500);
    expect(httpStatusFor('P0001', true)).toBe(400);
    expect(httpStatusFor('22023', true)).toBe(400);
    expect(httpStatusFor('25006', true)).toBe(405);
    expect(httpStatusFor('23505', true)).toBe(409);
    expect(httpStatusFor('55P03', true)).toBe(500);
    expect(httpStatusFor('42883', true)).toBe(404);
  });
});
