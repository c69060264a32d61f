/*
 * Plain words for icpml's factor names: the rule factors (engineering_roles,
 * company_size_fit, ...) and the feature names of a trained model (the
 * columns of the feature relation, `tech_stack=<token>` for a technology).
 */
import type { Factor } from './types.js';

const fmtInt = (v: unknown) => (typeof v === 'number' ? Math.round(v).toLocaleString('en-US') : String(v));

/** "$12M", "$850k", "$3.2B". */
export function formatUsd(v: unknown): string {
  const n = typeof v === 'string' ? Number(v) : typeof v === 'number' ? v : NaN;
  if (!Number.isFinite(n)) return String(v);
  if (n >= 1e9) return `$${(n / 1e9).toFixed(n >= 1e10 ? 0 : 1)}B`;
  if (n >= 1e6) return `$${(n / 1e6).toFixed(n >= 1e7 ? 0 : 1)}M`;
  if (n >= 1e3) return `$${Math.round(n / 1e3)}k`;
  return `$${Math.round(n)}`;
}

/** "3 days ago", "5 months ago" for an ISO date or timestamp. */
export function timeAgo(iso: string, now: Date = new Date()): string {
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return iso;
  const days = Math.floor((now.getTime() - t) / 86_400_000);
  if (days < 1) return 'today';
  if (days === 1) return 'yesterday';
  if (days < 60) return `${days} days ago`;
  const months = Math.round(days / 30.4);
  if (months < 24) return `${months} months ago`;
  return `${Math.round(days / 365)} years ago`;
}

const yesNo = (v: unknown, yes: string, no: string) => (v === true || v === 1 ? yes : v === false || v === 0 ? no : null);

/** A model sees dates as an age in days; the rules see the date itself. */
function when(v: unknown): string {
  if (typeof v === 'number') {
    const d = Math.round(v);
    return d < 60 ? `${d} days ago` : d < 730 ? `${Math.round(d / 30.4)} months ago` : `${Math.round(d / 365)} years ago`;
  }
  return typeof v === 'string' ? timeAgo(v) : String(v);
}

type Describe = (value: unknown) => string;

const known: Record<string, Describe> = {
  engineering_roles: (v) => `Open engineering roles: ${fmtInt(v)}`,
  engineering_role_count: (v) => `Open engineering roles: ${fmtInt(v)}`,
  open_engineering_roles: (v) => yesNo(v, 'Hiring engineers now', 'Not hiring engineers') ?? 'Hiring engineers: unknown',
  has_open_engineering_roles: (v) => yesNo(v, 'Hiring engineers now', 'Not hiring engineers') ?? 'Hiring engineers: unknown',
  total_open_roles: (v) => `Open roles in total: ${fmtInt(v)}`,
  engineering_blog: (v) => yesNo(v, 'Has an engineering blog', 'No engineering blog') ?? 'Engineering blog: unknown',
  has_engineering_blog: (v) => yesNo(v, 'Has an engineering blog', 'No engineering blog') ?? 'Engineering blog: unknown',
  company_size: (v) => `Company size: ${fmtInt(v)} employees`,
  company_size_fit: (v) => `Company size: ${fmtInt(v)} employees`,
  recent_funding: (v) => `Last funding round ${when(v)}`,
  funding_date: (v) => `Last funding round ${when(v)}`,
  funding_amount: (v) => `Last round raised ${formatUsd(v)}`,
  funding_amount_usd: (v) => `Last round raised ${formatUsd(v)}`,
  tech_stack_alignment: (v) => `Tech stack: ${Array.isArray(v) ? v.join(', ') : String(v)}`,
  tech_stack: (v) => `Tech stack: ${Array.isArray(v) ? v.join(', ') : String(v)}`,
  industry: (v) => `Industry: ${String(v)}`,
  researched_at: (v) => `Last researched ${when(v)}`,
};

const unknownLabel: Record<string, string> = {
  engineering_roles: 'Open engineering roles: unknown',
  engineering_role_count: 'Open engineering roles: unknown',
  total_open_roles: 'Open roles: unknown',
  company_size: 'Company size: unknown',
  company_size_fit: 'Company size: unknown',
  recent_funding: 'No known funding round',
  funding_date: 'No known funding round',
  funding_amount: 'Funding amount: unknown',
  funding_amount_usd: 'Funding amount: unknown',
  tech_stack_alignment: 'Tech stack: unknown',
  tech_stack: 'Tech stack: unknown',
  industry: 'Industry: unknown',
  researched_at: 'Never researched',
};

/** "has_engineering_blog" -> "Has engineering blog". */
export function humanize(name: string): string {
  const s = name.replace(/[_=]+/g, ' ').trim();
  return s.charAt(0).toUpperCase() + s.slice(1);
}

/** A factor as a sales user reads it: "Open engineering roles: 3". */
export function describeFactor(f: Pick<Factor, 'factor' | 'value'>): string {
  const name = f.factor;
  if (name === 'bias' || name === '(bias)') return 'Baseline for every account';
  const tech = /^tech_stack=(.+)$/.exec(name);
  if (tech) {
    const v = f.value;
    if (v === null || v === undefined) return `Uses ${tech[1]}: unknown`;
    return yesNo(v, `Uses ${tech[1]}`, `Does not use ${tech[1]}`) ?? `Uses ${tech[1]}: ${String(v)}`;
  }
  if (f.value === null || f.value === undefined) return unknownLabel[name] ?? `${humanize(name)}: unknown`;
  const d = known[name];
  return d ? d(f.value) : `${humanize(name)}: ${Array.isArray(f.value) ? f.value.join(', ') : String(f.value)}`;
}

/** "raises the fit" / "lowers the fit", with strength. */
export function describeEffect(contribution: number): string {
  const a = Math.abs(contribution);
  const strength = a >= 0.75 ? 'strongly ' : a < 0.15 ? 'slightly ' : '';
  return contribution >= 0 ? `${strength}raises the fit` : `${strength}lowers the fit`;
}

/** A feature name of a model report in words ("tech_stack=go" -> "Uses go"). */
export function featureLabel(name: string): string {
  const tech = /^tech_stack=(.+)$/.exec(name);
  if (tech) return `Uses ${tech[1]}`;
  const labels: Record<string, string> = {
    engineering_role_count: 'Open engineering roles',
    has_open_engineering_roles: 'Hiring engineers',
    total_open_roles: 'Open roles in total',
    has_engineering_blog: 'Engineering blog',
    company_size: 'Company size',
    funding_amount_usd: 'Funding amount',
    funding_date: 'Funding recency',
    researched_at: 'Research recency',
    industry: 'Industry',
  };
  return labels[name] ?? humanize(name);
}

/** Whether a score came from a trained model or the rules, in words. */
export function describeSource(model: string | null, version: number | null): string {
  if (model === null) return 'no score';
  if (model === 'rules') return 'rule-based score';
  return version === null ? `${model} model` : `model v${version}`;
}
