// Timelines of histories, for people: one lane per process, one bar per operation from its call
// to its return, labelled with what it did. Indeterminate operations are drawn open-ended (they may
// take effect at any time after their call), failed ones greyed (they had no effect), the failing
// window in red, the operation that could not be linearized in darker red, and the order of the
// longest linearizable prefix as numbered points joined by a line.
//
// The time axis is ordinal: each call and return gets its own slot, in the order the checker sorts
// them (calls before returns at equal times), and bars are widened to fit their labels. Overlaps
// therefore mean exactly what the checker took them to mean: concurrency. This module only draws;
// it reads results of linearizability.ts and never decides anything.

import { describeInterval, type Operation, type PairedHistory } from './history.ts';
import type { CheckResult, KeyResult } from './linearizability.ts';
import type { AnyModel } from './model.ts';

/** More operations than this in one timeline are cut down to those around the violation. */
export const TIMELINE_OPS_MAX = 80;
/** Operations kept before the first highlighted one when a timeline is cut down. */
const CONTEXT_OPS_BEFORE = 60;

const FONT_PX = 12;
const CHAR_WIDTH_PX = 7.3; // monospace at FONT_PX
const LABEL_PAD_PX = 8;
const SLOT_GAP_PX = 10;
const LANE_HEIGHT_PX = 56;
const BAR_HEIGHT_PX = 24;
const BAR_TOP_IN_LANE_PX = 22; // room above the bar for order badges
const MARGIN_LEFT_PX = 64;
const AXIS_HEIGHT_PX = 30;
const OPEN_END_PX = 70; // how far an indeterminate bar runs past its label
const MARGIN_RIGHT_PX = 24;
const AXIS_LABEL_SPACING_PX = 48;
const LANE_LABEL_REPEAT_PX = 1000;

export interface TimelineOptions {
  /** Bar labels (default: f, input and output as JSON). */
  readonly describe?: (op: Operation) => string;
  /** Operation ids drawn in red: the failing window. */
  readonly highlight?: ReadonlySet<number>;
  /** The operation that could not be linearized. */
  readonly blocked?: number;
  /** Operation ids in linearization order: numbered and joined on the timeline. */
  readonly order?: readonly number[];
  readonly opsMax?: number;
}

export function escapeXml(s: string): string {
  return s
    .replaceAll('&', '&amp;')
    .replaceAll('<', '&lt;')
    .replaceAll('>', '&gt;')
    .replaceAll('"', '&quot;')
    .replaceAll("'", '&#39;');
}

function defaultDescribe(op: Operation): string {
  const out = op.outcome === 'info' ? '?' : JSON.stringify(op.output ?? null);
  return `${op.f} ${JSON.stringify(op.input ?? null)} → ${out}`;
}

const textWidth = (s: string): number => [...s].length * CHAR_WIDTH_PX;
const fmt = (x: number): string => (Math.round(x * 10) / 10).toString();

/** The operations to draw: all of them, or (if too many) those around the highlighted ones. */
export function selectOperations(
  ops: readonly Operation[],
  keep: ReadonlySet<number>,
  opsMax: number,
): { drawn: Operation[]; omitted: number } {
  const sorted = [...ops].sort((a, b) => a.call - b.call || a.id - b.id);
  if (sorted.length <= opsMax) return { drawn: sorted, omitted: 0 };
  const marked = sorted.flatMap((op, i) => (keep.has(op.id) ? [i] : []));
  const last = marked.length === 0 ? sorted.length - 1 : Math.max(...marked);
  const first = marked.length === 0 ? last : Math.min(...marked);
  // A span ending a little after the last marked operation, reaching back as far as allowed.
  const end = Math.min(sorted.length, last + 1 + Math.floor(opsMax / 10));
  const start = Math.max(0, Math.min(first - CONTEXT_OPS_BEFORE, end - opsMax));
  const picked = new Set(sorted.slice(start, end).map((op) => op.id));
  for (const id of keep) picked.add(id);
  let drawn = sorted.filter((op) => picked.has(op.id));
  if (drawn.length > opsMax) {
    const extra = drawn.length - opsMax;
    let dropped = 0;
    drawn = drawn.filter((op) => keep.has(op.id) || dropped++ >= extra);
  }
  return { drawn, omitted: ops.length - drawn.length };
}

interface Slot {
  readonly time: number;
  readonly kind: 0 | 1; // 0 call, 1 return or gave-up
  readonly op: Operation;
  readonly edge: 'call' | 'return' | 'gaveUp';
}

/** Bar fills: plain, in the failing window, could not be linearized (as in SVG_STYLE). */
const FILL = { normal: '#dbeafe', window: '#fee2e2', blocked: '#fca5a5' } as const;

const SVG_STYLE = `
  text { font: ${FONT_PX}px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; fill: #1f2937; }
  .lane-bg { fill: #f8fafc; } .lane-bg.odd { fill: #eef2f7; }
  .lane-label { font-weight: 600; fill: #475569; } .lane-label.repeat { fill: #cbd5e1; }
  .axis text { font-size: 10px; fill: #64748b; } .axis line { stroke: #cbd5e1; stroke-width: 1; }
  .bar { fill: #dbeafe; } .window .bar { fill: #fee2e2; } .blocked .bar { fill: #fca5a5; }
  .bar, .bar-edge { stroke: #2563eb; stroke-width: 1.2; }
  .window .bar, .window .bar-edge { stroke: #dc2626; stroke-width: 1.8; }
  .blocked .bar, .blocked .bar-edge { stroke: #991b1b; stroke-width: 3; }
  .bar-edge { fill: none; stroke-dasharray: 5 3; }
  .fail .bar { fill: #f3f4f6; stroke: #9ca3af; stroke-dasharray: 4 3; }
  .fail text { fill: #9ca3af; }
  .gave-up { stroke: #64748b; stroke-width: 2; }
  .order-line { fill: none; stroke: #6d28d9; stroke-width: 1.5; stroke-opacity: 0.55; }
  .order-badge { fill: #6d28d9; } .order-num { fill: #fff; font-size: 10px; font-weight: 700; }
`;

function gradient(id: string, color: string): string {
  return (
    `<linearGradient id="${id}" x1="0" x2="1" y1="0" y2="0">` +
    `<stop offset="0" stop-color="${color}" stop-opacity="1"/>` +
    `<stop offset="1" stop-color="${color}" stop-opacity="0"/></linearGradient>`
  );
}

/** An SVG timeline of the operations (all of one partition, usually). */
export function renderTimelineSvg(
  ops: readonly Operation[],
  options: TimelineOptions = {},
): string {
  const describe = options.describe ?? defaultDescribe;
  const highlight = options.highlight ?? new Set<number>();
  const order = options.order ?? [];
  const keep = new Set<number>([
    ...highlight,
    ...(options.blocked === undefined ? [] : [options.blocked]),
  ]);
  const { drawn, omitted } = selectOperations(ops, keep, options.opsMax ?? TIMELINE_OPS_MAX);

  const labels = new Map(drawn.map((op) => [op.id, describe(op)]));
  const widthOf = (op: Operation): number => textWidth(labels.get(op.id)!) + 2 * LABEL_PAD_PX;
  const slots: Slot[] = [];
  for (const op of drawn) {
    slots.push({ time: op.call, kind: 0, op, edge: 'call' });
    if (Number.isFinite(op.return)) slots.push({ time: op.return, kind: 1, op, edge: 'return' });
    else if (op.gaveUpAt !== undefined) {
      slots.push({ time: op.gaveUpAt, kind: 1, op, edge: 'gaveUp' });
    }
  }
  slots.sort((a, b) => a.time - b.time || a.kind - b.kind || a.op.id - b.op.id);

  const xCall = new Map<number, number>();
  const xEnd = new Map<number, number>();
  const xGaveUp = new Map<number, number>();
  const slotX: number[] = [];
  let x = MARGIN_LEFT_PX + SLOT_GAP_PX;
  slots.forEach((s, i) => {
    if (i > 0) x += SLOT_GAP_PX;
    if (s.edge === 'return') x = Math.max(x, xCall.get(s.op.id)! + widthOf(s.op));
    if (s.edge === 'call') xCall.set(s.op.id, x);
    else if (s.edge === 'return') xEnd.set(s.op.id, x);
    else xGaveUp.set(s.op.id, x);
    slotX.push(x);
  });
  let right = x + SLOT_GAP_PX;
  for (const op of drawn) {
    if (!Number.isFinite(op.return))
      right = Math.max(right, xCall.get(op.id)! + widthOf(op) + OPEN_END_PX);
  }
  for (const op of drawn) if (!Number.isFinite(op.return)) xEnd.set(op.id, right);
  const width = right + MARGIN_RIGHT_PX;

  const processes = [...new Set(drawn.map((op) => op.process))].sort((a, b) => a - b);
  const laneOf = new Map(processes.map((p, i) => [p, i]));
  const height = AXIS_HEIGHT_PX + processes.length * LANE_HEIGHT_PX + 8;
  const barTop = (op: Operation): number =>
    AXIS_HEIGHT_PX + laneOf.get(op.process)! * LANE_HEIGHT_PX + BAR_TOP_IN_LANE_PX;

  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${fmt(width)}" height="${height}" ` +
      `viewBox="0 0 ${fmt(width)} ${height}" role="img" aria-label="history timeline">`,
  );
  out.push(`<style>${SVG_STYLE}</style>`);
  out.push(
    `<defs>${gradient('fade-normal', FILL.normal)}${gradient('fade-window', FILL.window)}` +
      `${gradient('fade-blocked', FILL.blocked)}</defs>`,
  );

  // Lanes.
  processes.forEach((p, i) => {
    const y = AXIS_HEIGHT_PX + i * LANE_HEIGHT_PX;
    out.push(
      `<rect class="lane-bg${i % 2 ? ' odd' : ''}" x="0" y="${y}" width="${fmt(width)}" height="${LANE_HEIGHT_PX}"/>`,
    );
    // Repeated along wide timelines (under the bars), so a lane can be named anywhere.
    for (let lx = 8; lx < width - MARGIN_LEFT_PX; lx += LANE_LABEL_REPEAT_PX) {
      out.push(
        `<text class="lane-label${lx > 8 ? ' repeat' : ''}" x="${lx}" y="${y + BAR_TOP_IN_LANE_PX + BAR_HEIGHT_PX / 2 + 4}">p${p}</text>`,
      );
    }
  });

  // Time axis: a label wherever there is room and the time changed.
  out.push('<g class="axis">');
  const openEnded = drawn.some((op) => !Number.isFinite(op.return));
  const labelsEndX = openEnded ? right - AXIS_LABEL_SPACING_PX / 2 : Infinity; // room for ∞
  let lastLabelX = -Infinity;
  let lastTime = Number.NaN;
  slots.forEach((s, i) => {
    const sx = slotX[i]!;
    if (s.time === lastTime || sx - lastLabelX < AXIS_LABEL_SPACING_PX || sx > labelsEndX) return;
    lastLabelX = sx;
    lastTime = s.time;
    out.push(
      `<line x1="${fmt(sx)}" x2="${fmt(sx)}" y1="${AXIS_HEIGHT_PX - 6}" y2="${height}" stroke-opacity="0.5"/>`,
    );
    out.push(
      `<text x="${fmt(sx)}" y="${AXIS_HEIGHT_PX - 10}" text-anchor="middle">${escapeXml(String(s.time))}</text>`,
    );
  });
  if (openEnded) {
    out.push(`<text x="${fmt(right)}" y="${AXIS_HEIGHT_PX - 10}" text-anchor="end">∞</text>`);
  }
  out.push('</g>');

  // The linearization order: a point inside each bar, left to right in order, joined by a line.
  const drawnById = new Map(drawn.map((op) => [op.id, op]));
  const points: { x: number; y: number; n: number }[] = [];
  let px = -Infinity;
  order.forEach((id, i) => {
    const x0 = xCall.get(id);
    if (x0 === undefined) return; // not drawn
    const op = drawnById.get(id)!;
    const x1 = xEnd.get(id)!;
    px = Math.min(Math.max(px + 6, x0 + 10), x1 - 6);
    points.push({ x: px, y: barTop(op) - 9, n: i + 1 });
  });
  // The line goes under the bars (they hide it where it would cross labels), the badges on top.
  if (points.length > 1) {
    const d = points.map((p, i) => `${i === 0 ? 'M' : 'L'}${fmt(p.x)},${fmt(p.y)}`).join(' ');
    out.push(`<path class="order-line" d="${d}"/>`);
  }
  // Bars.
  const position = new Map(order.map((id, i) => [id, i + 1]));
  for (const op of drawn) {
    const x0 = xCall.get(op.id)!;
    const x1 = xEnd.get(op.id)!;
    const y = barTop(op);
    const classes = ['op', op.outcome];
    if (highlight.has(op.id)) classes.push('window');
    if (op.id === options.blocked) classes.push('blocked');
    const notes = [`p${op.process} ${labels.get(op.id)!}`, describeInterval(op)];
    if (op.outcome === 'fail') notes.push('failed: had no effect, not checked');
    const pos = position.get(op.id);
    if (pos !== undefined) notes.push(`#${pos} in the linearization`);
    if (op.id === options.blocked) notes.push('could not be linearized');
    else if (highlight.has(op.id)) notes.push('in the failing window');
    out.push(`<g class="${classes.join(' ')}" data-op="${op.id}">`);
    out.push(`<title>${escapeXml(notes.join('\n'))}</title>`);
    if (Number.isFinite(op.return)) {
      out.push(
        `<rect class="bar" x="${fmt(x0)}" y="${y}" width="${fmt(Math.max(4, x1 - x0))}" height="${BAR_HEIGHT_PX}" rx="4"/>`,
      );
    } else {
      // Open-ended: fading fill, no right edge.
      // Solid up to the last OPEN_END_PX, which fade out. Fills are attributes, not CSS: some
      // SVG renderers ignore url() fills in style sheets.
      const tone =
        op.id === options.blocked ? 'blocked' : highlight.has(op.id) ? 'window' : 'normal';
      const xFade = x1 - OPEN_END_PX;
      out.push(
        `<rect fill="${FILL[tone]}" x="${fmt(x0)}" y="${y}" width="${fmt(xFade - x0)}" height="${BAR_HEIGHT_PX}"/>`,
        `<rect class="bar-open" fill="url(#fade-${tone})" x="${fmt(xFade)}" y="${y}" width="${OPEN_END_PX}" height="${BAR_HEIGHT_PX}"/>`,
      );
      const xOpen = x1 - OPEN_END_PX / 2; // the outline stops short: there is no return
      out.push(
        `<path class="bar-edge" d="M${fmt(xOpen)},${y} H${fmt(x0)} V${y + BAR_HEIGHT_PX} H${fmt(xOpen)}"/>`,
      );
      const g = xGaveUp.get(op.id);
      if (g !== undefined) {
        out.push(
          `<line class="gave-up" x1="${fmt(g)}" x2="${fmt(g)}" y1="${y - 3}" y2="${y + BAR_HEIGHT_PX + 3}"/>`,
        );
      }
    }
    out.push(
      `<text x="${fmt(x0 + LABEL_PAD_PX)}" y="${y + BAR_HEIGHT_PX / 2 + 4}">${escapeXml(labels.get(op.id)!)}</text>`,
    );
    out.push('</g>');
  }

  for (const p of points) {
    const label = String(p.n);
    const w = Math.max(16, textWidth(label) * 0.85 + 8);
    out.push(
      `<g class="order"><rect class="order-badge" x="${fmt(p.x - w / 2)}" y="${fmt(p.y - 8)}" width="${fmt(w)}" height="16" rx="8"/>` +
        `<text class="order-num" x="${fmt(p.x)}" y="${fmt(p.y + 3.5)}" text-anchor="middle">${label}</text></g>`,
    );
  }
  if (omitted > 0) {
    out.push(
      `<text x="${fmt(width - MARGIN_RIGHT_PX)}" y="${height - 2}" text-anchor="end" font-size="10">` +
        `${omitted} operations far from the violation are not drawn</text>`,
    );
  }
  out.push('</svg>');
  return out.join('\n');
}

const PAGE_STYLE = `
  body { font: 14px/1.45 system-ui, -apple-system, Segoe UI, sans-serif; margin: 24px; color: #111827; }
  h1 { font-size: 20px; margin: 0 0 4px; } h2 { font-size: 16px; margin: 24px 0 8px; }
  .verdict { display: inline-block; padding: 2px 10px; border-radius: 12px; font-weight: 700; color: #fff; }
  .verdict.ok { background: #15803d; } .verdict.violation { background: #b91c1c; } .verdict.unknown { background: #a16207; }
  pre { background: #f8fafc; border: 1px solid #e2e8f0; padding: 12px; overflow-x: auto; font-size: 12.5px; }
  table { border-collapse: collapse; font-size: 13px; } td, th { padding: 2px 12px 2px 0; text-align: left; }
  .timeline { overflow-x: auto; border: 1px solid #e2e8f0; }
  .legend { display: flex; flex-wrap: wrap; gap: 6px 18px; font-size: 13px; margin: 8px 0; }
  .legend span { display: inline-flex; align-items: center; gap: 6px; }
  .sw { display: inline-block; width: 28px; height: 12px; border-radius: 3px; border: 1.5px solid; }
`;

const LEGEND = `<div class="legend">
  <span><i class="sw" style="background:#dbeafe;border-color:#2563eb"></i>operation, from call to return</span>
  <span><i class="sw" style="background:#fee2e2;border-color:#dc2626"></i>in the failing window</span>
  <span><i class="sw" style="background:#fca5a5;border-color:#991b1b;border-width:3px"></i>could not be linearized</span>
  <span><i class="sw" style="background:linear-gradient(90deg,#dbeafe,transparent);border-color:#2563eb;border-style:dashed;border-right:none"></i>indeterminate (info): may take effect any time after its call; a tick marks when the client gave up</span>
  <span><i class="sw" style="background:#f3f4f6;border-color:#9ca3af;border-style:dashed"></i>failed: had no effect, not checked</span>
  <span><i class="sw" style="background:#6d28d9;border-color:#6d28d9;border-radius:8px;width:16px"></i>order of the (partial) linearization</span>
</div>`;

function keyTable(perKey: readonly KeyResult[]): string {
  const rows = perKey
    .map(
      (k) =>
        `<tr><td>${escapeXml(k.key)}</td><td>${k.operations}</td><td>${k.verdict}${k.unknownReason ? ` (${k.unknownReason})` : ''}</td>` +
        `<td>${k.steps}</td><td>${k.elapsedMs.toFixed(1)}</td></tr>`,
    )
    .join('');
  return `<table><tr><th>key</th><th>operations</th><th>verdict</th><th>steps</th><th>ms</th></tr>${rows}</table>`;
}

function opsOfKey(ops: readonly Operation[], key: string): Operation[] {
  if (key === '*') return [...ops];
  if (key === '(no key)') return ops.filter((op) => op.key === undefined);
  return ops.filter((op) => op.key === key);
}

export interface ReportOptions {
  /** Where the history came from, shown in the heading. */
  readonly source?: string;
  readonly opsMax?: number;
}

/**
 * A standalone HTML page: verdict, per-key table, the explanation, and timelines. On a violation,
 * the failing key's timeline with its window; otherwise one timeline per key, each with the
 * linearization found. Failed operations of a key are drawn too, greyed, for context.
 */
export function renderReportHtml(
  result: CheckResult,
  history: PairedHistory,
  model: AnyModel,
  options: ReportOptions = {},
): string {
  const describe = (op: Operation): string => model.describeOperation(op);
  const opsMax = options.opsMax ?? TIMELINE_OPS_MAX;
  const title = `Linearizability: ${result.verdict}${result.violation ? ` on key ${result.violation.key}` : ''}`;
  const parts: string[] = [];
  parts.push('<!doctype html>', '<html lang="en"><head><meta charset="utf-8">');
  parts.push(`<title>${escapeXml(title)}</title><style>${PAGE_STYLE}</style></head><body>`);
  parts.push(
    `<h1>Linearizability check <span class="verdict ${result.verdict}">${result.verdict}</span></h1>`,
  );
  const ops = history.operations.length;
  parts.push(
    `<div>${options.source ? `${escapeXml(options.source)} · ` : ''}model ${escapeXml(result.model)} · ` +
      `${ops} operations (${history.counts.ok} ok, ${history.counts.fail} fail, ` +
      `${history.counts.info + history.counts.pending} indeterminate) · ${result.steps} steps · ` +
      `${result.elapsedMs.toFixed(1)} ms</div>`,
  );
  parts.push(keyTable(result.perKey));
  const v = result.violation;
  if (v !== undefined) {
    parts.push(`<h2>Key ${escapeXml(v.key)}: what went wrong</h2>`);
    parts.push(`<pre>${escapeXml(v.explanation)}</pre>`);
    parts.push(`<h2>Timeline of key ${escapeXml(v.key)}</h2>`, LEGEND);
    const svg = renderTimelineSvg(opsOfKey(history.operations, v.key), {
      describe,
      highlight: new Set(v.window.map((op) => op.id)),
      blocked: v.blocked.id,
      order: v.partialLinearization.map((op) => op.id),
      opsMax,
    });
    parts.push(`<div class="timeline">${svg}</div>`);
  } else {
    parts.push(LEGEND);
    for (const k of result.perKey) {
      parts.push(`<h2>Key ${escapeXml(k.key)}: ${k.verdict}</h2>`);
      const svg = renderTimelineSvg(opsOfKey(history.operations, k.key), {
        describe,
        order: k.linearization ?? [],
        opsMax,
      });
      parts.push(`<div class="timeline">${svg}</div>`);
    }
  }
  // Wide timelines open scrolled to the operation that could not be linearized.
  parts.push(
    "<script>document.querySelector('.blocked')?.scrollIntoView({ block: 'nearest', inline: 'center' });</script>",
  );
  parts.push('</body></html>');
  return parts.join('\n');
}
