// index.html of a run: self-contained (inline CSS, SVG and script; no network). The verdicts, the
// figures and the nemesis schedule are written as HTML; the three plots (latency of every
// operation coloured by outcome, throughput and availability per second, each with the nemesis
// intervals as bands) are drawn in the browser from the run's data embedded as JSON, and the
// failing window of an invalid kv history is the checker's own timeline (jepsen/checker/render).

import {
  type CheckResult,
  casRegister,
  type HistoryEvent,
  pairHistory,
  renderTimelineSvg,
} from '../checker/index.ts';
import { escapeXml } from '../checker/render.ts';
import type { RunOptions, RunResult } from './run.ts';
import type { SetResult } from './set_checker.ts';
import type { OpPoint, RunStats } from './stats.ts';
import type { VmResult, VmSample } from './vm_checker.ts';
import { OBSERVE_EVERY_MS } from './vmms.ts';

export interface ReportInput {
  readonly options: RunOptions;
  readonly result: RunResult;
  readonly points: readonly OpPoint[];
  readonly kvHistory: readonly HistoryEvent[];
  /** The vms observer's samples (empty without the vms workload). */
  readonly vmSamples?: readonly VmSample[];
}

const esc = escapeXml;

const STYLE = `
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; max-width: 1200px; }
h1 .verdict, td.verdict { font-weight: bold; }
.valid, .ok { color: #17803d; } .invalid, .violation { color: #c62828; } .unknown { color: #b26a00; }
table { border-collapse: collapse; margin: 8px 0 16px; } td, th { border: 1px solid #ccc; padding: 3px 8px; text-align: left; }
th { background: #f4f4f4; } svg.plot { background: #fff; border: 1px solid #ddd; display: block; margin: 6px 0 18px; }
.timeline { overflow-x: auto; border: 1px solid #ddd; } .legend span { margin-right: 14px; }
.sw { display: inline-block; width: 10px; height: 10px; margin-right: 4px; vertical-align: middle; }
`;

const pct = (x: number | undefined): string => (x === undefined ? '–' : `${(x * 100).toFixed(1)}%`);
const ms = (x: number | undefined): string => (x === undefined ? '–' : `${x.toFixed(1)} ms`);

function statsTable(s: RunStats): string {
  const rows: [string, string][] = [
    ['operations', `${s.operations} (${s.ok} ok, ${s.fail} fail, ${s.info} indeterminate)`],
    [
      'latency of ok operations',
      `p50 ${ms(s.latencyP50Ms)} · p99 ${ms(s.latencyP99Ms)} · max ${ms(s.latencyMaxMs)}`,
    ],
    ['availability during faults', pct(s.availabilityDuringFaults)],
    ['availability without faults', pct(s.availabilityQuiet)],
    [
      'availability per nemesis',
      Object.entries(s.availabilityByNemesis)
        .map(([n, a]) => `${n} ${pct(a)}`)
        .join(' · ') || '–',
    ],
    [
      'recovery after each heal',
      s.recoveryMs.map((r) => (r === undefined ? '–' : `${Math.round(r)}`)).join(', ') +
        ` ms (max ${ms(s.recoveryMaxMs)})`,
    ],
  ];
  return `<table>${rows.map(([k, v]) => `<tr><th>${k}</th><td>${esc(v)}</td></tr>`).join('')}</table>`;
}

function nemesisTable(r: RunResult): string {
  if (r.nemesis.length === 0) return '<p>No nemesis.</p>';
  const rows = r.nemesis.map(
    (iv, i) =>
      `<tr><td>${i + 1}</td><td>${esc(iv.nemesis)}</td><td>${(iv.start / 1000).toFixed(1)} s</td>` +
      `<td>${((iv.end ?? iv.start) / 1000).toFixed(1)} s</td><td>${esc(iv.description)}</td>` +
      `<td>${ms(r.stats.recoveryMs[i])}</td></tr>`,
  );
  return `<table><tr><th>#</th><th>nemesis</th><th>start</th><th>end</th><th>what</th><th>recovery</th></tr>${rows.join('')}</table>`;
}

function kvSection(kv: CheckResult, history: readonly HistoryEvent[]): string {
  const parts = [
    `<h2>kv: linearizability per key <span class="${kv.verdict}">${kv.verdict}</span></h2>`,
    '<table><tr><th>key</th><th>verdict</th><th>operations checked</th><th>search steps</th></tr>',
    ...kv.perKey.map(
      (k) =>
        `<tr><td>${esc(k.key)}</td><td class="verdict ${k.verdict}">${k.verdict}</td>` +
        `<td>${k.operations}</td><td>${k.steps}</td></tr>`,
    ),
    '</table>',
    '<p>The checker\'s own page, with every key\'s timeline: <a href="checker.html">checker.html</a>.</p>',
  ];
  const v = kv.violation;
  if (v !== undefined) {
    const ops = pairHistory(history).operations.filter((op) => op.key === v.key);
    const svg = renderTimelineSvg(ops, {
      describe: (op) => casRegister.describeOperation(op),
      highlight: new Set(v.window.map((op) => op.id)),
      blocked: v.blocked.id,
      order: v.partialLinearization.map((op) => op.id),
    });
    parts.push(
      `<h2 id="failing-window">Failing window on key ${esc(v.key)}</h2>`,
      `<pre>${esc(v.explanation)}</pre>`,
      `<div class="timeline">${svg}</div>`,
    );
  }
  return parts.join('\n');
}

function setSection(s: SetResult): string {
  const list = (xs: readonly number[]): string =>
    xs.length === 0
      ? '0'
      : `${xs.length}: ${xs.slice(0, 50).join(', ')}${xs.length > 50 ? ', …' : ''}`;
  const rows: [string, string][] = [
    ['attempted adds', String(s.attempted)],
    ['acknowledged', String(s.acknowledged)],
    ['failed (definitely not added)', String(s.failed)],
    ['indeterminate', `${s.indeterminate} (${s.recovered} of them present at the end)`],
    ['lost (acknowledged, missing from a final read)', list(s.lost)],
    ['unexpected (never attempted, yet read)', list(s.unexpected)],
    [
      'stale (acknowledged before a read began, missing from it)',
      `${list(s.stale)} in ${s.staleReads} reads`,
    ],
    ['reads checked', String(s.reads)],
    ['nodes without a final read', s.unansweredFinal.join(', ') || 'none'],
  ];
  return (
    `<h2>set <span class="${s.valid ? 'valid' : 'invalid'}">${s.valid ? 'valid' : 'invalid'}</span></h2>` +
    `<table>${rows.map(([k, v]) => `<tr><th>${k}</th><td>${esc(v)}</td></tr>`).join('')}</table>`
  );
}

const NODE_COLOURS = [
  '#1565c0',
  '#2e7d32',
  '#6a1b9a',
  '#ef6c00',
  '#00838f',
  '#ad1457',
  '#5d4037',
  '#9e9d24',
  '#455a64',
];

/** Where each instance ran: [node, from, to, frozen] segments from consecutive samples. */
export function vmSegments(
  samples: readonly VmSample[],
): Map<string, [string, number, number, boolean][]> {
  const out = new Map<string, [string, number, number, boolean][]>();
  const open = new Map<string, [string, number, number, boolean]>();
  for (const s of samples) {
    const here = new Set<string>();
    for (const v of s.seen) {
      const k = `${v.instance}\u0000${v.node}\u0000${v.frozen}`;
      if (here.has(k)) continue;
      here.add(k);
      const seg = open.get(k);
      if (seg !== undefined) seg[2] = s.time + OBSERVE_EVERY_MS;
      else {
        const fresh: [string, number, number, boolean] = [
          v.node,
          s.time,
          s.time + OBSERVE_EVERY_MS,
          v.frozen,
        ];
        open.set(k, fresh);
        const list = out.get(v.instance) ?? [];
        list.push(fresh);
        out.set(v.instance, list);
      }
    }
    for (const k of [...open.keys()]) if (!here.has(k)) open.delete(k);
  }
  return out;
}

/** The vms verdict, its counts, the double runs, and a timeline of where each instance ran. */
function vmSection(v: VmResult, r: RunResult, samples: readonly VmSample[], nodes: number): string {
  const list = (xs: readonly string[]): string =>
    xs.length === 0 ? '0' : `${xs.length}: ${xs.join(', ')}`;
  const rec = Object.values(v.recoveryMs);
  const rows: [string, string][] = [
    ['double runs (an instance live on two nodes in one sample)', String(v.doubleRuns.length)],
    ['observer samples', `${v.samples} (every ${OBSERVE_EVERY_MS} ms, from the VMM processes)`],
    ['frozen copy beside a running one (samples)', String(v.frozenOverlaps)],
    ['lost (acknowledged run, missing after the heal)', list(v.lost)],
    ['unexpected (desired running, no run may have made it)', list(v.unexpected)],
    ['not running on one node within the bound after the heal', list(v.notRunning)],
    ['strays (running at the end, not desired)', list(v.strays)],
    [
      'recovery after the heal',
      rec.length === 0 ? '–' : `max ${Math.max(...rec)} ms over ${rec.length} VMs`,
    ],
  ];
  const doubles = v.doubleRuns.map(
    (d) =>
      `<tr><td>${esc(d.instance)}</td><td>${esc(d.nodes.join(', '))}</td><td>${(d.from / 1000).toFixed(1)} s</td><td>${(d.to / 1000).toFixed(1)} s</td><td>${d.samples}</td></tr>`,
  );
  const segs = vmSegments(samples);
  const names = [...segs.keys()].sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));
  const endMs = Math.max(1, ...samples.map((s) => s.time + OBSERVE_EVERY_MS));
  const [left, width, rowH] = [90, 1000, 12];
  const x = (t: number): number => left + (t / endMs) * width;
  const height = 24 + names.length * rowH;
  const bands = r.nemesis.map(
    (iv) =>
      `<rect class="vband" x="${x(iv.start).toFixed(1)}" y="0" width="${Math.max(1, x(iv.end ?? iv.start) - x(iv.start)).toFixed(1)}" height="${height - 20}" fill="#f3e5f5"><title>${esc(iv.description)}</title></rect>`,
  );
  const bars = names.flatMap((name, i) => [
    `<text x="${left - 4}" y="${i * rowH + 10}" text-anchor="end" font-size="10">${esc(name)}</text>`,
    ...segs.get(name)!.map(([node, from, to, frozen]) => {
      const colour = frozen
        ? '#bdbdbd'
        : NODE_COLOURS[(Number(node.slice(1)) - 1) % NODE_COLOURS.length];
      return `<rect class="vmseg" x="${x(from).toFixed(1)}" y="${i * rowH + 2}" width="${Math.max(1, x(to) - x(from)).toFixed(1)}" height="${rowH - 3}" fill="${colour}" opacity="0.8"><title>${esc(`${name} on ${node}${frozen ? ' (frozen)' : ''}: ${(from / 1000).toFixed(1)}-${(to / 1000).toFixed(1)} s`)}</title></rect>`;
    }),
  ]);
  const doubleMarks = v.doubleRuns.map((d) => {
    const i = names.indexOf(d.instance);
    return `<rect x="${x(d.from).toFixed(1)}" y="${i * rowH}" width="${Math.max(2, x(d.to + OBSERVE_EVERY_MS) - x(d.from)).toFixed(1)}" height="${rowH}" fill="none" stroke="#c62828" stroke-width="2"/>`;
  });
  const legend =
    Array.from(
      { length: nodes },
      (_, i) =>
        `<span><i class="sw" style="background:${NODE_COLOURS[i % NODE_COLOURS.length]}"></i>n${i + 1}</span>`,
    ).join('') +
    '<span><i class="sw" style="background:#bdbdbd"></i>frozen</span><span><i class="sw" style="background:#f3e5f5"></i>nemesis</span><span>red box: double run</span>';
  return (
    `<h2>vms <span class="${v.valid ? 'valid' : 'invalid'}">${v.valid ? 'valid' : 'invalid'}</span></h2>` +
    `<table>${rows.map(([k, val]) => `<tr><th>${k}</th><td>${esc(val)}</td></tr>`).join('')}</table>` +
    (doubles.length === 0
      ? ''
      : `<table><tr><th>instance</th><th>nodes</th><th>from</th><th>to</th><th>samples</th></tr>${doubles.join('')}</table>`) +
    `<h3>Where each VM instance ran (observed from the VMM processes)</h3><div class="legend">${legend}</div>` +
    `<svg class="plot" id="vms" width="${left + width + 10}" height="${height}">${bands.join('')}${bars.join('')}${doubleMarks.join('')}` +
    `<text x="${left}" y="${height - 6}" font-size="10">0 s</text><text x="${left + width}" y="${height - 6}" font-size="10" text-anchor="end">${(endMs / 1000).toFixed(0)} s</text></svg>`
  );
}

/** The data the plots are drawn from: compact arrays, times in seconds. */
function plotData(input: ReportInput): string {
  const outcomes = ['ok', 'fail', 'info'];
  const data = {
    timeS: input.options.timeMs / 1000,
    timeoutMs: 2000,
    ops: input.points.map((p) => [
      Math.round(p.start) / 1000,
      Math.round((p.end - p.start) * 10) / 10,
      outcomes.indexOf(p.outcome),
      `${p.workload} ${p.f} ${p.key ?? ''} on ${p.node}`,
    ]),
    bands: input.result.nemesis.map((iv) => [
      iv.start / 1000,
      (iv.end ?? iv.start) / 1000,
      iv.nemesis,
      iv.description,
    ]),
  };
  return JSON.stringify(data).replaceAll('<', '\\u003c');
}

export function renderRunReport(input: ReportInput): string {
  const { options: o, result: r } = input;
  const head =
    `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Jepsen: ${r.verdict}</title>` +
    `<style>${STYLE}</style></head><body>`;
  const parts = [
    head,
    `<h1>Jepsen on real processes: <span class="verdict ${r.verdict}">${r.verdict}</span></h1>`,
    `<p>${o.nodes} nodes · ${o.timeMs / 1000} s · nemesis ${esc(o.nemeses.join(',') || 'none')} · ` +
      `workload ${esc(o.workloads.join(','))} · seed ${o.seed}${o.staleReads ? ' · <b>planted fault: stale reads</b>' : ''}</p>`,
    statsTable(r.stats),
    '<h2>Latency of each operation</h2>',
    '<div class="legend"><span><i class="sw" style="background:#2e7d32"></i>ok</span><span><i class="sw" style="background:#ef6c00"></i>fail</span><span><i class="sw" style="background:#c62828"></i>indeterminate (drawn at the timeout)</span><span id="band-legend"></span></div>',
    '<svg class="plot" id="latency" width="1100" height="320"></svg>',
    '<h2>Throughput (operations completed per second, by outcome)</h2>',
    '<svg class="plot" id="throughput" width="1100" height="200"></svg>',
    '<h2>Availability (share of operations invoked each second that succeeded)</h2>',
    '<svg class="plot" id="availability" width="1100" height="160"></svg>',
    '<h2>Nemesis schedule</h2>',
    nemesisTable(r),
    r.kv === undefined ? '' : kvSection(r.kv, input.kvHistory),
    r.set === undefined ? '' : setSection(r.set),
    r.vms === undefined ? '' : vmSection(r.vms, r, input.vmSamples ?? [], o.nodes),
    '<h2>Files</h2><ul><li><a href="results.json">results.json</a></li>',
    '<li><a href="nemesis.jsonl">nemesis.jsonl</a></li>',
    r.kv === undefined ? '' : '<li><a href="history-kv.jsonl">history-kv.jsonl</a></li>',
    r.set === undefined
      ? ''
      : '<li><a href="history-set.jsonl">history-set.jsonl</a> and <a href="final-reads.json">final-reads.json</a></li>',
    r.vms === undefined
      ? ''
      : '<li><a href="history-vms.jsonl">history-vms.jsonl</a> and <a href="vm-samples.jsonl">vm-samples.jsonl</a></li>',
    ...Array.from(
      { length: o.nodes },
      (_, i) => `<li><a href="logs/n${i + 1}.log">logs/n${i + 1}.log</a></li>`,
    ),
    '</ul>',
    `<script type="application/json" id="data">${plotData(input)}</script>`,
    `<script>${PLOT_SCRIPT}</script>`,
    '</body></html>',
  ];
  return parts.join('\n');
}

/** Draws the plots into the three SVGs; sets data-rendered on each when done. */
const PLOT_SCRIPT = `
(function () {
  const NS = 'http://www.w3.org/2000/svg';
  const d = JSON.parse(document.getElementById('data').textContent);
  const COLORS = ['#2e7d32', '#ef6c00', '#c62828'];
  const BAND = { partition: '#90caf9', kill: '#ef9a9a', pause: '#ce93d8', loss: '#ffe082', skew: '#a5d6a7' };
  const M = { l: 56, r: 12, t: 22, b: 28 };
  function el(parent, name, attrs, text) {
    const e = document.createElementNS(NS, name);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    parent.appendChild(e);
    return e;
  }
  function frame(svg, yTicks, yLabel) {
    const W = +svg.getAttribute('width'), H = +svg.getAttribute('height');
    const x = (t) => M.l + (t / d.timeS) * (W - M.l - M.r);
    const g = { W, H, x, y0: H - M.b, y1: M.t };
    for (const b of d.bands) {
      const r = el(svg, 'rect', { class: 'band', x: x(b[0]), y: M.t, width: Math.max(1, x(b[1]) - x(b[0])), height: H - M.t - M.b, fill: BAND[b[2]] || '#ddd', opacity: 0.45 });
      el(r, 'title', {}, b[3]);
    }
    el(svg, 'line', { x1: M.l, y1: H - M.b, x2: W - M.r, y2: H - M.b, stroke: '#444' });
    el(svg, 'line', { x1: M.l, y1: M.t, x2: M.l, y2: H - M.b, stroke: '#444' });
    const step = Math.max(5, Math.ceil(d.timeS / 12 / 5) * 5);
    for (let t = 0; t <= d.timeS; t += step) {
      el(svg, 'text', { x: x(t), y: H - 10, 'font-size': 11, 'text-anchor': 'middle' }, t + ' s');
    }
    for (const [v, y] of yTicks) {
      el(svg, 'text', { x: M.l - 6, y: y + 4, 'font-size': 11, 'text-anchor': 'end' }, v);
      el(svg, 'line', { x1: M.l, y1: y, x2: W - M.r, y2: y, stroke: '#eee' });
    }
    el(svg, 'text', { x: 8, y: 13, 'font-size': 11 }, yLabel);
    return g;
  }
  function latency() {
    const svg = document.getElementById('latency');
    const H = +svg.getAttribute('height');
    const lo = 0.1, hi = Math.max(d.timeoutMs, 10);
    const y = (v) => { const c = Math.min(hi, Math.max(lo, v)); return (H - M.b) - (Math.log10(c / lo) / Math.log10(hi / lo)) * (H - M.t - M.b); };
    const ticks = [];
    for (let v = lo; v <= hi; v *= 10) ticks.push([v >= 1 ? String(v) : v.toFixed(1), y(v)]);
    const g = frame(svg, ticks, 'ms (log)');
    for (const o of d.ops) {
      const v = o[2] === 2 ? hi : o[1];
      const c = el(svg, 'circle', { class: 'pt o' + o[2], cx: g.x(o[0]).toFixed(1), cy: y(v).toFixed(1), r: 1.8, fill: COLORS[o[2]], opacity: 0.6 });
      el(c, 'title', {}, o[3] + ': ' + o[1] + ' ms');
    }
    svg.setAttribute('data-rendered', String(d.ops.length));
  }
  function perSecond() {
    const n = Math.ceil(d.timeS) + 1;
    const done = [[], [], []].map(() => new Array(n).fill(0));
    const inv = new Array(n).fill(0), invOk = new Array(n).fill(0);
    for (const o of d.ops) {
      const s = Math.min(n - 1, Math.floor(o[0]));
      const e = Math.min(n - 1, Math.floor(o[0] + o[1] / 1000));
      done[o[2]][e]++;
      inv[s]++;
      if (o[2] === 0) invOk[s]++;
    }
    return { n, done, inv, invOk };
  }
  function lines(svg, series, yMax, fmt, label) {
    const H = +svg.getAttribute('height');
    const y = (v) => (H - M.b) - (v / yMax) * (H - M.t - M.b);
    const ticks = [0, 0.5, 1].map((f) => [fmt(f * yMax), y(f * yMax)]);
    const g = frame(svg, ticks, label);
    series.forEach((s, i) => {
      const pts = s.values.map((v, t) => (v === null ? null : g.x(t + 0.5).toFixed(1) + ',' + y(v).toFixed(1))).filter((p) => p !== null);
      el(svg, 'polyline', { class: 'series', points: pts.join(' '), fill: 'none', stroke: s.color, 'stroke-width': 1.5 });
    });
    svg.setAttribute('data-rendered', String(series.length));
  }
  latency();
  const ps = perSecond();
  const maxT = Math.max(1, ...ps.done.flat());
  lines(document.getElementById('throughput'), ps.done.map((v, i) => ({ values: v, color: COLORS[i] })), maxT, (v) => String(Math.round(v)), 'ops/s');
  const avail = ps.inv.map((c, i) => (c === 0 ? null : ps.invOk[i] / c));
  lines(document.getElementById('availability'), [{ values: avail, color: '#1565c0' }], 1, (v) => Math.round(v * 100) + '%', 'ok share');
  const legend = document.getElementById('band-legend');
  for (const k of Object.keys(BAND)) {
    if (!d.bands.some((b) => b[2] === k)) continue;
    const s = document.createElement('span');
    s.innerHTML = '<i class="sw" style="background:' + BAND[k] + '"></i>' + k;
    legend.appendChild(s);
  }
})();
`;
