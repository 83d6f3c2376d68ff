import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { events, read, write } from '../../test/checker/histories.ts';
import { EXIT_OK, EXIT_UNKNOWN_OR_BAD_INPUT, EXIT_VIOLATION, main } from './cli.ts';
import type { HistoryEvent } from './history.ts';

const dir = mkdtempSync(join(tmpdir(), 'pcr-checker-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function historyFile(name: string, evs: HistoryEvent[] | string): string {
  const path = join(dir, name);
  const text = typeof evs === 'string' ? evs : evs.map((e) => JSON.stringify(e)).join('\n');
  writeFileSync(path, text);
  return path;
}

function run(...argv: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const code = main(argv, { out: (l) => out.push(l), err: (l) => err.push(l) });
  return { code, out: out.join('\n'), err: err.join('\n') };
}

const x = { key: 'x' };

describe('cli', () => {
  it('exits 0 on a linearizable history and writes no timeline', () => {
    const file = historyFile('ok.jsonl', events(write(0, 1, 0, 1, x), read(1, 1, 2, 3, x)));
    const r = run(file);
    expect(r.code).toBe(EXIT_OK);
    expect(r.out).toContain('verdict: ok');
    expect(r.out).toMatch(/key\s+ops\s+verdict/);
    expect(existsSync(join(dir, 'ok.html'))).toBe(false);
  });

  it('exits 1 on a violation, explains it and writes the timeline next to the history', () => {
    const file = historyFile(
      'stale.jsonl',
      events(write(0, 1, 0, 1, x), write(0, 2, 2, 3, x), read(1, 1, 4, 5, x)),
    );
    const r = run('--model', 'kv', file);
    expect(r.code).toBe(EXIT_VIOLATION);
    expect(r.out).toContain('verdict: violation (key x)');
    expect(r.out).toContain('Stuck: p1 x: read → 1');
    const html = join(dir, 'stale.html');
    expect(r.out).toContain(`timeline: ${html}`);
    expect(readFileSync(html, 'utf8')).toContain('could not be linearized');
  });

  it('prints JSON for machines', () => {
    const file = historyFile('j.jsonl', events(write(0, 1, 0, 1, x), read(1, 9, 2, 3, x)));
    const r = run('--json', '--html', join(dir, 'j-timeline.html'), file);
    expect(r.code).toBe(EXIT_VIOLATION);
    const json = JSON.parse(r.out);
    expect(json.verdict).toBe('violation');
    expect(json.violation.blocked).toMatchObject({ f: 'read', output: 9 });
    expect(json.timeline).toBe(join(dir, 'j-timeline.html'));
  });

  it('exits 2 when the budget runs out', () => {
    const ops = Array.from({ length: 30 }, (_, p) => write(p, p, 0, 10));
    const file = historyFile('hard.jsonl', events(...ops, read(99, -1, 20, 21)));
    const r = run('--steps-max', '1000', file);
    expect(r.code).toBe(EXIT_UNKNOWN_OR_BAD_INPUT);
    expect(r.out).toContain('verdict: unknown');
    expect(r.out).toContain('raise --timeout-ms');
    expect(r.out).toMatch(/furthest stuck on p99 read → -1 t=20..21/);
  });

  it('exits 2 on bad input, naming the line', () => {
    const file = historyFile(
      'bad.jsonl',
      '{"type":"invoke","process":0,"f":"read","value":null,"time":0}\n\n' +
        '{"type":"ok","process":1,"f":"read","value":null,"time":1}\n',
    );
    const r = run(file);
    expect(r.code).toBe(EXIT_UNKNOWN_OR_BAD_INPUT);
    expect(r.err).toMatch(/line 3: process 1 completes 'read' with 'ok' but has no outstanding/);
    expect(run(join(dir, 'missing.jsonl')).err).toMatch(/cannot read/);
    expect(run('--model', 'queue', file).err).toMatch(/unknown model 'queue'/);
    expect(run('--timeout-ms', 'soon', file).code).toBe(EXIT_UNKNOWN_OR_BAD_INPUT);
    expect(run().code).toBe(EXIT_UNKNOWN_OR_BAD_INPUT);
  });
});
