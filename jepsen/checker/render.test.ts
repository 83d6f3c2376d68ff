import { describe, expect, it } from 'vitest';
import { events, read, write } from '../../test/checker/histories.ts';
import { pairHistory } from './history.ts';
import { checkOperations } from './linearizability.ts';
import { casRegister } from './model.ts';
import { escapeXml, renderReportHtml, renderTimelineSvg, selectOperations } from './render.ts';

const staleRead = pairHistory(
  events(
    write(0, 1, 0, 1, { key: 'x' }),
    write(0, 2, 2, 3, { key: 'x' }),
    write(1, 7, 2, 4, { key: 'x', outcome: 'fail' }),
    write(2, 3, 2, 6, { key: 'x', outcome: 'info' }),
    read(1, 1, 5, 6, { key: 'x' }),
    write(3, 5, 0, 1, { key: 'y' }),
  ),
);

const idOf = (label: string): number =>
  staleRead.operations.find((op) => casRegister.describeOperation(op) === label)!.id;

/** The markup of one operation's group on the timeline. */
function groupOf(svg: string, id: number): string {
  const start = svg.indexOf(`data-op="${id}"`);
  expect(start).toBeGreaterThan(-1);
  return svg.slice(svg.lastIndexOf('<g', start), svg.indexOf('</g>', start));
}

describe('renderReportHtml', () => {
  const result = checkOperations(casRegister, staleRead.operations);
  const html = renderReportHtml(result, staleRead, casRegister, { source: 'stale.jsonl' });

  it('shows the verdict, the explanation and the failing key’s operations', () => {
    expect(result.verdict).toBe('violation');
    expect(html).toMatch(/^<!doctype html>/);
    expect(html).toContain('<span class="verdict violation">violation</span>');
    expect(html).toContain('Key x: what went wrong');
    expect(html).toContain(escapeXml(result.violation!.explanation));
    for (const label of ['write 1', 'write 2', 'write 7 (fail)', 'write 3 ?', 'read → 1']) {
      expect(html).toContain(`>${label}</text>`);
    }
    expect(html).not.toContain('>write 5</text>'); // key y is not drawn
  });

  it('draws the window in red, the blocked read darker, failed and indeterminate ops apart', () => {
    const blocked = result.violation!.blocked.id;
    expect(groupOf(html, blocked)).toContain('class="op ok window blocked"');
    expect(groupOf(html, blocked)).toContain('could not be linearized');
    expect(groupOf(html, idOf('write 2'))).toContain('class="op ok window"');
    expect(groupOf(html, idOf('write 1'))).toContain('class="op ok"');
    expect(groupOf(html, idOf('write 7 (fail)'))).toContain('class="op fail"');
    const info = groupOf(html, idOf('write 3 ?'));
    expect(info).toContain('class="bar-open"'); // open-ended
    expect(info).toContain('class="gave-up"'); // the client gave up at t=6
  });

  it('numbers the partial linearization in order', () => {
    const order = [...html.matchAll(/class="order-num"[^>]*>(\d+)</g)].map((m) => m[1]);
    expect(order).toEqual(result.violation!.partialLinearization.map((_, i) => String(i + 1)));
    expect(html).toContain('class="order-line"');
  });
});

describe('renderTimelineSvg', () => {
  it('gives each process a lane and escapes labels', () => {
    const svg = renderTimelineSvg(staleRead.operations, { describe: () => '<b>&' });
    expect(svg).toMatch(/^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/);
    for (const p of [0, 1, 2, 3]) expect(svg).toContain(`>p${p}</text>`);
    expect(svg).toContain('&lt;b&gt;&amp;');
    expect(svg).not.toContain('<b>');
  });

  it('draws a linearizable history with its linearization', () => {
    const ok = pairHistory(events(write(0, 1, 0, 1), read(1, 1, 0, 5)));
    const result = checkOperations(casRegister, ok.operations);
    const html = renderReportHtml(result, ok, casRegister);
    expect(html).toContain('<span class="verdict ok">ok</span>');
    expect([...html.matchAll(/class="order-num"/g)]).toHaveLength(2);
  });

  it('cuts a long history down to the operations around the highlighted ones', () => {
    const many = pairHistory(
      events(...Array.from({ length: 500 }, (_, i) => write(0, i, 2 * i, 2 * i + 1))),
    );
    const { drawn, omitted } = selectOperations(many.operations, new Set([300]), 100);
    expect(drawn).toHaveLength(100);
    expect(omitted).toBe(400);
    expect(drawn.map((op) => op.id)).toContain(300);
    const svg = renderTimelineSvg(many.operations, { highlight: new Set([300]), opsMax: 100 });
    expect(svg).toContain('400 operations far from the violation are not drawn');
  });
});
