import { useId, useState } from 'react';
import { icpScore, type IcpmlClient } from '../client.js';
import { errorText, useAsync, useIcpml } from '../context.js';
import type { IcpScore } from '../types.js';
import { describeEffect, describeFactor, describeSource } from '../words.js';

export interface ScoreBadgeProps {
  accountId: number;
  /** A score already fetched (e.g. by icp_score_batch): shown as is, nothing is fetched. */
  score?: IcpScore | null;
  client?: IcpmlClient;
  /** Show the priority word next to the score (default true). */
  showPriority?: boolean;
}

/**
 * An account's ICP score 1-10 in its priority colour; hover or focus shows
 * where it comes from (model or rules) and the top factors in plain words.
 */
export function ScoreBadge(props: ScoreBadgeProps) {
  if (props.score !== undefined) return <BadgeView accountId={props.accountId} score={props.score} showPriority={props.showPriority} />;
  return <FetchingBadge {...props} />;
}

function FetchingBadge(props: ScoreBadgeProps) {
  const { client } = useIcpml(props.client);
  const s = useAsync(() => icpScore(client, props.accountId), `score:${props.accountId}`);
  if (s.status === 'loading') {
    return (
      <span className="icpml-badge icpml-badge--loading" aria-busy="true" data-account={props.accountId}>
        <span className="icpml-badge__pill" aria-label="Loading ICP score">
          <span className="icpml-badge__score">&nbsp;</span>
        </span>
      </span>
    );
  }
  if (s.status === 'error') {
    const reason = s.error.notFound ? 'account not found or not visible to you' : errorText(s.error);
    return <BadgeView accountId={props.accountId} score={null} missing={reason} showPriority={props.showPriority} />;
  }
  return <BadgeView accountId={props.accountId} score={s.data} showPriority={props.showPriority} />;
}

function BadgeView(props: { accountId: number; score: IcpScore | null; missing?: string; showPriority?: boolean }) {
  const [open, setOpen] = useState(false);
  const tipId = useId();
  const s = props.score;
  const showPriority = props.showPriority ?? true;
  if (!s || s.score === null) {
    const why = props.missing ?? 'account not found or not visible to you';
    return (
      <span className="icpml-badge" data-priority="none" data-account={props.accountId} data-score="">
        <span className="icpml-badge__pill" role="img" aria-label={`No ICP score: ${why}`} title={`No ICP score: ${why}`}>
          <span className="icpml-badge__score">–</span>
        </span>
      </span>
    );
  }
  // a score without its source (e.g. from recommend_accounts alone) says nothing about it
  const source = s.model === null ? null : describeSource(s.model, s.model_version);
  const factors = s.factors ?? [];
  const label = `ICP score ${s.score} of 10, ${s.priority ?? 'unknown'} priority${source ? `, ${source}` : ''}`;
  return (
    <span
      className="icpml-badge"
      data-priority={s.priority ?? 'none'}
      data-account={props.accountId}
      data-score={s.score}
      onMouseEnter={() => setOpen(true)}
      onMouseLeave={() => setOpen(false)}
    >
      <button
        type="button"
        className="icpml-badge__pill"
        aria-label={label}
        aria-describedby={tipId}
        aria-expanded={open}
        onFocus={() => setOpen(true)}
        onBlur={() => setOpen(false)}
        onClick={() => setOpen((o) => !o)}
        onKeyDown={(e) => {
          if (e.key === 'Escape') setOpen(false);
        }}
      >
        <span className="icpml-badge__score">{s.score}</span>
        <span className="icpml-badge__of">/10</span>
        {showPriority && <span className="icpml-badge__priority">{s.priority}</span>}
      </button>
      <span role="tooltip" id={tipId} className="icpml-badge__tip" hidden={!open}>
        <span className="icpml-badge__tip-title">
          ICP fit {s.score}/10 · {s.priority} priority
        </span>
        <span className="icpml-badge__tip-source">
          {source === null ? 'ICP score' : source === 'rule-based score' ? 'Rule-based score (no model deployed)' : `Scored by ${source}`}
          {s.probability !== null && `, ${Math.round(s.probability * 100)} % estimated fit`}
        </span>
        {factors.length > 0 ? (
          <ul className="icpml-badge__factors">
            {factors.map((f, i) => (
              <li key={i} data-direction={f.contribution >= 0 ? 'up' : 'down'}>
                <span aria-hidden="true" className="icpml-badge__arrow">
                  {f.contribution >= 0 ? '▲' : '▼'}
                </span>{' '}
                {describeFactor(f)} <span className="icpml-badge__effect">({describeEffect(f.contribution)})</span>
              </li>
            ))}
          </ul>
        ) : (
          <span className="icpml-badge__nofactors">No factor breakdown for this score.</span>
        )}
      </span>
    </span>
  );
}
