/* Row shapes of icpml's functions and the reference schema, as PostgREST returns them. */

export type Priority = 'high' | 'medium' | 'low';

/** One entry of `icp_score(...).factors`. */
export interface Factor {
  factor: string;
  /** The raw input (number, boolean, text, array or null). */
  value: unknown;
  /** In logit units: positive raises the fit, negative lowers it. */
  contribution: number;
}

/** `icpml.icp_score_result`; every field but account_id is null for unknown or hidden accounts in a batch. */
export interface IcpScore {
  account_id: number;
  score: number | null;
  priority: Priority | null;
  probability: number | null;
  /** 'rules' or 'xgboost'. */
  model: string | null;
  model_version: number | null;
  factors: Factor[] | null;
  factor_method: string | null;
}

/** A row of `explain_icp_score`. */
export interface ShapRow {
  feature: string;
  value: string | null;
  contribution: number;
  method: string;
}

/** The `reason` jsonb of a recommendation. */
export interface RecommendationReason {
  summary: string;
  icp_score?: number;
  priority?: Priority;
  industry?: string | null;
  top_signals?: { signal: string; value: number; contribution: number }[];
  /** True when this slot explores (the policy is testing an uncertain account). */
  exploration?: boolean;
  policy?: string;
  experiment?: string;
  variant?: string;
}

/**
 * A row of `recommend_accounts`. Only the columns @icpml/ui relies on are
 * typed: the policy's ranking value is deliberately not (it is being renamed).
 */
export interface Recommendation {
  rank: number;
  account_id: number;
  icp_score: number | null;
  priority: Priority | null;
  reason: RecommendationReason | null;
  recommendation_id: number;
}

export type InteractionType = 'view' | 'research' | 'save' | 'contact' | 'meeting' | 'dismiss';

export interface Interaction {
  user_id: string;
  account_id: number;
  interaction_type: InteractionType;
  created_at: string;
}

/** A row of the reference `account_signals` table. */
export interface AccountSignals {
  account_id: number;
  account_name?: string | null;
  industry?: string | null;
  engineering_role_count?: number | null;
  has_open_engineering_roles?: boolean | null;
  total_open_roles?: number | null;
  has_engineering_blog?: boolean | null;
  updated_at?: string | null;
}

/** A row of the reference `research_runs` table. */
export interface ResearchRun {
  research_run_id: number;
  account_id: number;
  company_size: number | null;
  funding_amount_usd: number | string | null;
  funding_date: string | null;
  tech_stack: string[] | null;
  fit_verdict: string | null;
  created_at: string;
}

export interface RocPoint {
  threshold: number;
  fpr: number;
  tpr: number;
}

export interface Calibration {
  bin: number;
  mean_predicted: number;
  observed_rate: number;
  n: number;
}

export interface FeatureImportance {
  feature: string;
  gain: number;
  weight: number;
}

export interface CvMetrics {
  roc_auc?: number;
  pr_auc?: number;
  log_loss?: number;
  brier?: number;
  precision_at_10?: number;
  lift_at_10?: number;
  roc_auc_folds?: number[];
}

/** The parts of `describe_model()` the report shows. */
export interface ModelDescription {
  version: number;
  status: string;
  created_at: string;
  n_rows: number;
  n_positive: number;
  relation?: string;
  label_column?: string;
  xgboost_version?: string;
  metrics?: { cv?: { model?: CvMetrics; rules?: CvMetrics } };
  params?: Record<string, unknown>;
}

/** A row of `experiment_results`. */
export interface ExperimentRow {
  variant: string;
  weight: number;
  users: number;
  impressions: number;
  finalized: number;
  reward: number;
  reward_per_impression: number | null;
  ci_low: number | null;
  ci_high: number | null;
  lift: number | null;
  p_value: number | null;
  srm_p_value: number | null;
  /** Always-valid (sequential, mSPRT) interval and p-value (icpml 0.4.0 on). */
  seq_ci_low?: number | null;
  seq_ci_high?: number | null;
  seq_p_value?: number | null;
  /** CUPED with a pre-period covariate (icpml 0.4.0 on); NULL without pre-period data. */
  cuped_seq_p_value?: number | null;
  variance_reduction?: number | null;
}

/** A row of `icpml.experiments`. */
export interface ExperimentSummary {
  name: string;
  variants: string[];
  weights: number[] | null;
  status: string;
  description: string | null;
  started_at: string;
  stopped_at: string | null;
}
