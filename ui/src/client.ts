/*
 * The calls @icpml/ui makes, over a supabase-js client or any client with
 * PostgREST's query-builder shape (@supabase/postgrest-js's PostgrestClient).
 *
 * Every icpml function is called by RPC with named arguments in schema
 * `icpml`: STABLE functions with GET (`{ get: true }`: PostgREST runs them in a
 * read-only transaction, which works on a read replica too), VOLATILE ones
 * (recommend_accounts logs what it serves) with POST. The app's own tables
 * (user_interactions, account_signals, research_runs) are read and written as
 * the signed-in user, so row-level security applies.
 */
import type {
  AccountSignals,
  Calibration,
  ExperimentRow,
  ExperimentSummary,
  FeatureImportance,
  IcpScore,
  Interaction,
  InteractionType,
  ModelDescription,
  Recommendation,
  ResearchRun,
  RocPoint,
  ShapRow,
} from './types.js';

/** What a PostgREST call resolves to (supabase-js and postgrest-js alike). */
export interface PostgrestResult {
  data: unknown;
  error: { message: string; code?: string; details?: string | null; hint?: string | null } | null;
  status?: number;
}

/** The filter builder methods @icpml/ui uses. */
export interface FilterBuilder extends PromiseLike<PostgrestResult> {
  eq(column: string, value: unknown): FilterBuilder;
  gte(column: string, value: unknown): FilterBuilder;
  in(column: string, values: readonly unknown[]): FilterBuilder;
  order(column: string, options?: { ascending?: boolean }): FilterBuilder;
  limit(count: number): FilterBuilder;
}

/** `client.schema(name)`: RPC and table access in one schema. */
export interface SchemaClient {
  rpc(fn: string, args?: Record<string, unknown>, options?: { get?: boolean }): PromiseLike<PostgrestResult>;
  from(relation: string): {
    select(columns?: string): FilterBuilder;
    insert(values: Record<string, unknown> | Record<string, unknown>[]): PromiseLike<PostgrestResult>;
  };
}

/**
 * A supabase-js `SupabaseClient`, a postgrest-js `PostgrestClient`, or
 * anything else whose `.schema(name)` has the methods of `SchemaClient`.
 * Typed loosely on purpose: supabase-js's deeply generic builders make a
 * structural check of the whole shape too expensive for TypeScript.
 */
export interface IcpmlClient {
  schema(name: string): object;
}

const schemaOf = (client: IcpmlClient, name: string) => client.schema(name) as SchemaClient;

/** Where the app keeps its Phase 1 tables (the reference schema's names by default). */
export interface AppTables {
  schema: string;
  interactions: string;
  signals: string;
  research: string;
}

export const defaultTables: AppTables = {
  schema: 'public',
  interactions: 'user_interactions',
  signals: 'account_signals',
  research: 'research_runs',
};

/** An error from the database or the endpoint, with PostgREST's fields. */
export class IcpmlError extends Error {
  code: string | null;
  details: string | null;
  hint: string | null;
  constructor(e: { message: string; code?: string; details?: string | null; hint?: string | null }) {
    super(e.message);
    this.name = 'IcpmlError';
    this.code = e.code ?? null;
    this.details = e.details ?? null;
    this.hint = e.hint ?? null;
  }
  /** Unknown account, or one that row-level security hides (icpml reports both alike). */
  get notFound(): boolean {
    return this.code === 'P0002';
  }
  /** The caller lacks a grant (PostgREST answers 401/403). */
  get forbidden(): boolean {
    return this.code === '42501';
  }
}

async function unwrap<T>(p: PromiseLike<PostgrestResult>): Promise<T> {
  let r: PostgrestResult;
  try {
    r = await p;
  } catch (e) {
    throw new IcpmlError({ message: e instanceof Error ? e.message : String(e), code: 'FETCH' });
  }
  if (r.error) throw new IcpmlError(r.error);
  return r.data as T;
}

const icpml = (c: IcpmlClient) => schemaOf(c, 'icpml');

/** `icpml.icp_score(account_id)` (GET). */
export function icpScore(client: IcpmlClient, accountId: number): Promise<IcpScore> {
  return unwrap<IcpScore>(icpml(client).rpc('icp_score', { account_id: accountId }, { get: true }));
}

/** `icpml.icp_score_batch(account_ids)` (GET): one row per id, in order; unknown or hidden ids have NULL scores. */
export function icpScoreBatch(client: IcpmlClient, accountIds: readonly number[]): Promise<IcpScore[]> {
  if (accountIds.length === 0) return Promise.resolve([]);
  return unwrap<IcpScore[]>(icpml(client).rpc('icp_score_batch', { account_ids: [...accountIds] }, { get: true }));
}

/** `icpml.explain_icp_score(account_id)` (GET): every contribution (TreeSHAP with a model). */
export function explainIcpScore(client: IcpmlClient, accountId: number): Promise<ShapRow[]> {
  return unwrap<ShapRow[]>(icpml(client).rpc('explain_icp_score', { account_id: accountId }, { get: true }));
}

/** `icpml.recommend_accounts(user_id, k)` (POST: it logs what it serves, for feedback). */
export function recommendAccounts(
  client: IcpmlClient,
  userId: string,
  k = 10,
  options: { policy?: string; candidates?: number } = {},
): Promise<Recommendation[]> {
  const args: Record<string, unknown> = { user_id: userId, k };
  if (options.policy !== undefined) args.policy = options.policy;
  if (options.candidates !== undefined) args.candidates = options.candidates;
  return unwrap<Recommendation[]>(icpml(client).rpc('recommend_accounts', args));
}

/** Insert one row into the app's interactions table: the bandit's feedback. */
export async function recordInteraction(
  client: IcpmlClient,
  userId: string,
  accountId: number,
  type: InteractionType,
  tables: AppTables = defaultTables,
): Promise<void> {
  await unwrap<null>(
    schemaOf(client, tables.schema).from(tables.interactions).insert({
      user_id: userId,
      account_id: accountId,
      interaction_type: type,
    }),
  );
}

/** Names (and industries) of accounts, from the app's signals table, as the user sees them. */
export function accountSignals(
  client: IcpmlClient,
  accountIds: readonly number[],
  tables: AppTables = defaultTables,
): Promise<AccountSignals[]> {
  if (accountIds.length === 0) return Promise.resolve([]);
  return unwrap<AccountSignals[]>(
    schemaOf(client, tables.schema).from(tables.signals).select('*').in('account_id', [...accountIds]),
  );
}

/** One account's research runs since a date, oldest first. */
export function researchRuns(
  client: IcpmlClient,
  accountId: number,
  since: Date,
  tables: AppTables = defaultTables,
): Promise<ResearchRun[]> {
  return unwrap<ResearchRun[]>(
    schemaOf(client, tables.schema)
      .from(tables.research)
      .select('research_run_id,account_id,company_size,funding_amount_usd,funding_date,tech_stack,fit_verdict,created_at')
      .eq('account_id', accountId)
      .gte('created_at', since.toISOString())
      .order('created_at', { ascending: true }),
  );
}

/** The latest research run of an account, whenever it was. */
export async function latestResearchRun(
  client: IcpmlClient,
  accountId: number,
  tables: AppTables = defaultTables,
): Promise<ResearchRun | null> {
  const rows = await unwrap<ResearchRun[]>(
    schemaOf(client, tables.schema)
      .from(tables.research)
      .select('research_run_id,account_id,company_size,funding_amount_usd,funding_date,tech_stack,fit_verdict,created_at')
      .eq('account_id', accountId)
      .order('created_at', { ascending: false })
      .limit(1),
  );
  return rows[0] ?? null;
}

/** Every user's interactions with an account since a date (the team's engagement). */
export function accountInteractions(
  client: IcpmlClient,
  accountId: number,
  since: Date,
  tables: AppTables = defaultTables,
): Promise<Interaction[]> {
  return unwrap<Interaction[]>(
    schemaOf(client, tables.schema)
      .from(tables.interactions)
      .select('user_id,account_id,interaction_type,created_at')
      .eq('account_id', accountId)
      .gte('created_at', since.toISOString())
      .order('created_at', { ascending: true })
      .limit(5000),
  );
}

/** `icpml.describe_model(version)` (GET; administrative: service_role or a grant_admin role). */
export function describeModel(client: IcpmlClient, version?: number): Promise<ModelDescription> {
  return unwrap<ModelDescription>(
    icpml(client).rpc('describe_model', version === undefined ? {} : { version }, { get: true }),
  );
}

/** `icpml.model_roc_curve(version)` (GET; administrative). */
export function modelRocCurve(client: IcpmlClient, version?: number): Promise<RocPoint[]> {
  return unwrap<RocPoint[]>(icpml(client).rpc('model_roc_curve', version === undefined ? {} : { version }, { get: true }));
}

/** `icpml.model_calibration(version)` (GET; administrative). */
export function modelCalibration(client: IcpmlClient, version?: number): Promise<Calibration[]> {
  return unwrap<Calibration[]>(icpml(client).rpc('model_calibration', version === undefined ? {} : { version }, { get: true }));
}

/** `icpml.model_feature_importance(version)` (GET; administrative). */
export function modelFeatureImportance(client: IcpmlClient, version?: number): Promise<FeatureImportance[]> {
  return unwrap<FeatureImportance[]>(
    icpml(client).rpc('model_feature_importance', version === undefined ? {} : { version }, { get: true }),
  );
}

/** `icpml.experiment_results(name)` (GET; administrative). */
export function experimentResults(client: IcpmlClient, name: string): Promise<ExperimentRow[]> {
  return unwrap<ExperimentRow[]>(icpml(client).rpc('experiment_results', { name }, { get: true }));
}

/** The table `icpml.experiments`, newest first (administrative). */
export function listExperiments(client: IcpmlClient): Promise<ExperimentSummary[]> {
  return unwrap<ExperimentSummary[]>(
    icpml(client)
      .from('experiments')
      .select('name,variants,weights,status,description,started_at,stopped_at')
      .order('started_at', { ascending: false }),
  );
}
