/* A fake IcpmlClient: canned answers per RPC / table, and a log of every call. */
import type { IcpmlClient, PostgrestResult, SchemaClient } from '../../src/client.js';

export interface Call {
  schema: string;
  kind: 'rpc' | 'select' | 'insert';
  name: string;
  args?: unknown;
  get?: boolean;
  filters?: [string, unknown][];
}

type Answer = PostgrestResult | ((call: Call) => PostgrestResult | Promise<PostgrestResult>);

export function fakeClient(answers: Record<string, Answer>) {
  const calls: Call[] = [];
  const answer = async (key: string, call: Call): Promise<PostgrestResult> => {
    calls.push(call);
    const a = answers[key];
    if (a === undefined) return { data: null, error: { message: `no fake answer for ${key}`, code: 'TEST' } };
    return typeof a === 'function' ? a(call) : a;
  };
  const client: IcpmlClient & { schema(name: string): SchemaClient } = {
    schema(schema: string): SchemaClient {
      return {
        rpc(fn, args, options) {
          return answer(`rpc:${fn}`, { schema, kind: 'rpc', name: fn, args, get: options?.get ?? false });
        },
        from(relation: string) {
          return {
            select() {
              const call: Call = { schema, kind: 'select', name: relation, filters: [] };
              const b = {
                eq: (c: string, v: unknown) => (call.filters!.push([`eq:${c}`, v]), b),
                gte: (c: string, v: unknown) => (call.filters!.push([`gte:${c}`, v]), b),
                in: (c: string, v: readonly unknown[]) => (call.filters!.push([`in:${c}`, v]), b),
                order: () => b,
                limit: () => b,
                then: <A, B>(ok?: (r: PostgrestResult) => A | PromiseLike<A>, bad?: (e: unknown) => B | PromiseLike<B>) =>
                  answer(`select:${relation}`, call).then(ok, bad),
              };
              return b;
            },
            insert(values) {
              return answer(`insert:${relation}`, { schema, kind: 'insert', name: relation, args: values });
            },
          };
        },
      };
    },
  };
  return { client, calls };
}

export const ok = (data: unknown): PostgrestResult => ({ data, error: null });
export const fail = (message: string, code: string, hint: string | null = null): PostgrestResult => ({
  data: null,
  error: { message, code, details: null, hint },
});
