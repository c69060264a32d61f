/*
 * Small hand-rolled SVG charts: a viewBox scaled to the container's width
 * (responsive), fixed aspect ratio (no layout jump), role="img" with a label,
 * and the numbers as a table for screen readers and keyboard users.
 */
import { useId, type ReactNode } from 'react';

export const W = 360;
export const H = 240;
export const M = { top: 12, right: 12, bottom: 36, left: 44 };

export function scale(d0: number, d1: number, r0: number, r1: number) {
  const k = d1 === d0 ? 0 : (r1 - r0) / (d1 - d0);
  return (v: number) => r0 + (v - d0) * k;
}

export function ticks(d0: number, d1: number, n = 5): number[] {
  const out: number[] = [];
  for (let i = 0; i <= n; i++) out.push(d0 + ((d1 - d0) * i) / n);
  return out;
}

const fmt = (v: number) => (Math.abs(v) >= 100 ? String(Math.round(v)) : String(Math.round(v * 100) / 100));

/** A figure: caption, the chart, and its data table behind a disclosure. */
export function ChartFigure(props: {
  title: string;
  description: string;
  children: ReactNode;
  table: { columns: string[]; rows: (string | number)[][] };
  className?: string;
  chart?: string;
}) {
  const id = useId();
  return (
    <figure className={`icpml-chart ${props.className ?? ''}`} data-chart={props.chart}>
      <figcaption id={`${id}-t`} className="icpml-chart__title">
        {props.title}
      </figcaption>
      <div className="icpml-chart__frame">{props.children}</div>
      <p id={`${id}-d`} className="icpml-chart__desc">
        {props.description}
      </p>
      <details className="icpml-chart__data">
        <summary>Show the numbers</summary>
        <div className="icpml-chart__table-wrap">
          <table>
            <thead>
              <tr>
                {props.table.columns.map((c) => (
                  <th key={c} scope="col">
                    {c}
                  </th>
                ))}
              </tr>
            </thead>
            <tbody>
              {props.table.rows.map((r, i) => (
                <tr key={i}>
                  {r.map((v, j) => (
                    <td key={j}>{v}</td>
                  ))}
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      </details>
    </figure>
  );
}

export interface XYPoint {
  x: number;
  y: number;
  /** Marker radius (default 2.5). */
  r?: number;
  label?: string;
}

/** An x/y chart on [0, 1] x [0, 1] with optional diagonal, a line through points and/or markers. */
export function XYChart(props: {
  label: string;
  points: XYPoint[];
  xLabel: string;
  yLabel: string;
  line?: boolean;
  markers?: boolean;
  diagonal?: string;
  kind: string;
}) {
  const x = scale(0, 1, M.left, W - M.right);
  const y = scale(0, 1, H - M.bottom, M.top);
  const path = props.points.map((p, i) => `${i === 0 ? 'M' : 'L'}${x(p.x).toFixed(1)},${y(p.y).toFixed(1)}`).join('');
  return (
    <svg viewBox={`0 0 ${W} ${H}`} role="img" aria-label={props.label} className="icpml-svg" preserveAspectRatio="xMidYMid meet">
      <Axes xTicks={ticks(0, 1)} yTicks={ticks(0, 1)} x={x} y={y} xLabel={props.xLabel} yLabel={props.yLabel} />
      {props.diagonal && (
        <line x1={x(0)} y1={y(0)} x2={x(1)} y2={y(1)} className="icpml-svg__reference">
          <title>{props.diagonal}</title>
        </line>
      )}
      {props.line && <path d={path} className="icpml-svg__line" />}
      {props.markers !== false &&
        props.points.map((p, i) => (
          <circle
            key={i}
            cx={x(p.x)}
            cy={y(p.y)}
            r={p.r ?? 2.5}
            className="icpml-svg__point"
            data-kind={props.kind}
          >
            {p.label && <title>{p.label}</title>}
          </circle>
        ))}
    </svg>
  );
}

export function Axes(props: {
  xTicks: number[];
  yTicks: number[];
  x: (v: number) => number;
  y: (v: number) => number;
  xLabel: string;
  yLabel: string;
  xFormat?: (v: number) => string;
  yFormat?: (v: number) => string;
}) {
  const xf = props.xFormat ?? fmt;
  const yf = props.yFormat ?? fmt;
  const x0 = M.left;
  const y0 = H - M.bottom;
  return (
    <g className="icpml-svg__axes" aria-hidden="true">
      {props.yTicks.map((t) => (
        <g key={`y${t}`}>
          <line x1={x0} x2={W - M.right} y1={props.y(t)} y2={props.y(t)} className="icpml-svg__grid" />
          <text x={x0 - 6} y={props.y(t) + 3.5} textAnchor="end" className="icpml-svg__tick">
            {yf(t)}
          </text>
        </g>
      ))}
      {props.xTicks.map((t) => (
        <text key={`x${t}`} x={props.x(t)} y={y0 + 14} textAnchor="middle" className="icpml-svg__tick">
          {xf(t)}
        </text>
      ))}
      <line x1={x0} x2={W - M.right} y1={y0} y2={y0} className="icpml-svg__axis" />
      <line x1={x0} x2={x0} y1={M.top} y2={y0} className="icpml-svg__axis" />
      <text x={(x0 + W - M.right) / 2} y={H - 4} textAnchor="middle" className="icpml-svg__label">
        {props.xLabel}
      </text>
      <text
        x={12}
        y={(M.top + y0) / 2}
        textAnchor="middle"
        transform={`rotate(-90 12 ${(M.top + y0) / 2})`}
        className="icpml-svg__label"
      >
        {props.yLabel}
      </text>
    </g>
  );
}

/** Horizontal bars, largest first; `value` in any unit. */
export function BarList(props: { label: string; items: { label: string; value: number; title?: string }[]; kind: string; unit?: string }) {
  const max = Math.max(1e-9, ...props.items.map((i) => i.value));
  const row = 22;
  const left = 150;
  const h = props.items.length * row + 8;
  const x = scale(0, max, left, W - 40);
  return (
    <svg viewBox={`0 0 ${W} ${h}`} role="img" aria-label={props.label} className="icpml-svg icpml-svg--bars">
      {props.items.map((it, i) => (
        <g key={it.label} transform={`translate(0 ${4 + i * row})`}>
          <text x={left - 6} y={row / 2 + 3.5} textAnchor="end" className="icpml-svg__tick">
            {it.label.length > 24 ? `${it.label.slice(0, 23)}…` : it.label}
          </text>
          <rect x={left} y={3} width={Math.max(1, x(it.value) - left)} height={row - 8} className="icpml-svg__bar" data-kind={props.kind}>
            <title>{it.title ?? `${it.label}: ${fmt(it.value)}${props.unit ?? ''}`}</title>
          </rect>
          <text x={x(it.value) + 4} y={row / 2 + 3.5} className="icpml-svg__tick">
            {fmt(it.value)}
          </text>
        </g>
      ))}
    </svg>
  );
}

/** A grey block the size of a chart, while it loads. */
export function ChartSkeleton(props: { title: string; height?: number }) {
  const h = props.height ?? H;
  return (
    <figure className="icpml-chart" aria-busy="true">
      <figcaption className="icpml-chart__title">{props.title}</figcaption>
      <div className="icpml-chart__frame">
        <svg
          viewBox={`0 0 ${W} ${h}`}
          className={`icpml-svg${props.height ? ' icpml-svg--auto' : ''}`}
          aria-label={`Loading ${props.title}`}
          role="img"
        >
          <rect x={0} y={0} width={W} height={h} className="icpml-skeleton-fill" />
        </svg>
      </div>
      <p className="icpml-chart__desc" />
      <p className="icpml-chart__data-placeholder" />
    </figure>
  );
}
