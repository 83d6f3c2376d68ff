import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { answer } from './api/router.ts';
import { EXIT } from './cli/client.ts';
import { ERROR_EXIT, ERRORS, type ErrorCode, RESULT_ERROR } from './errors.ts';
import { ERROR } from './maelstrom/protocol.ts';
import type { Outcome } from './raft/node.ts';

describe('one error vocabulary', () => {
  it('keeps each code through the API: duplicate stays DUPLICATE, STOPPED stays STOPPED', () => {
    const stopped: Outcome = { ok: false, code: 'STOPPED', message: 'm', indeterminate: true };
    expect(answer(stopped)).toEqual({ ok: false, error: { code: 'STOPPED', message: 'm' } });
    for (const [result, code] of Object.entries(RESULT_ERROR)) {
      const o = {
        ok: true,
        index: 1,
        result: { ok: false, code: result, message: 'm' },
      } as Outcome;
      expect(answer(o)).toEqual({ ok: false, error: { code, message: 'm' } });
    }
  });

  it('uses the exit codes pcr names and the codes Maelstrom defines', () => {
    for (const [name, n] of Object.entries(ERROR_EXIT)) {
      expect(EXIT[name as keyof typeof EXIT], name).toBe(n);
    }
    const maelstrom = new Set<number>(Object.values(ERROR));
    for (const [code, k] of Object.entries(ERRORS))
      expect(maelstrom.has(k.maelstrom), code).toBe(true);
  });

  it('is the table of docs/errors.md, row for row', () => {
    const doc = readFileSync(new URL('../docs/errors.md', import.meta.url), 'utf8');
    const rows = doc
      .split('\n')
      .filter((l) => /^\| `[A-Z_]+`/.test(l))
      .map((l) => l.split('|').map((c) => c.trim()));
    const documented = new Map(
      rows.map((r) => [r[1]!.replaceAll('`', ''), { outcome: r[3], exit: r[4], maelstrom: r[5] }]),
    );
    expect([...documented.keys()].sort()).toEqual(Object.keys(ERRORS).sort());
    for (const [code, k] of Object.entries(ERRORS)) {
      expect(documented.get(code as ErrorCode), code).toEqual({
        outcome: k.outcome,
        exit: String(k.exit),
        maelstrom: String(k.maelstrom),
      });
    }
  });
});
