import { describe, expect, it } from 'vitest';
import { events, read, write } from '../../test/checker/histories.ts';
import { type CheckerError, isCheckerError } from './errors.ts';
import { type HistoryEvent, pairHistory, parseHistoryJsonLines } from './history.ts';

function pairingError(evs: unknown[]): CheckerError {
  try {
    pairHistory(evs);
  } catch (e) {
    if (isCheckerError(e)) return e;
    throw e;
  }
  throw new Error('expected a CheckerError');
}

const inv = (process: number, f: string, value: unknown, time: number): HistoryEvent => ({
  type: 'invoke',
  process,
  f,
  value,
  time,
});
const done = (
  type: 'ok' | 'fail' | 'info',
  process: number,
  f: string,
  value: unknown,
  time: number,
): HistoryEvent => ({ type, process, f, value, time });

describe('pairHistory', () => {
  it('pairs invocations with completions into operations', () => {
    const h = pairHistory(
      events(write(0, 1, 0, 10, { key: 'x' }), read(1, 1, 5, 12, { key: 'x' })),
    );
    expect(h.operations).toEqual([
      {
        id: 0,
        process: 0,
        f: 'write',
        key: 'x',
        input: 1,
        output: 1,
        outcome: 'ok',
        call: 0,
        return: 10,
        gaveUpAt: undefined,
      },
      {
        id: 1,
        process: 1,
        f: 'read',
        key: 'x',
        input: null,
        output: 1,
        outcome: 'ok',
        call: 5,
        return: 12,
        gaveUpAt: undefined,
      },
    ]);
    expect(h.counts).toEqual({ events: 4, ok: 2, fail: 0, info: 0, pending: 0 });
  });

  it('treats info and never-completed operations as returning at +infinity', () => {
    const h = pairHistory([
      inv(0, 'write', 1, 0),
      inv(1, 'write', 2, 1),
      done('info', 0, 'write', 1, 5),
    ]);
    expect(h.operations.map((op) => [op.outcome, op.return, op.gaveUpAt])).toEqual([
      ['info', Number.POSITIVE_INFINITY, 5],
      ['info', Number.POSITIVE_INFINITY, undefined],
    ]);
    expect(h.counts).toMatchObject({ info: 1, pending: 1 });
  });

  it('keeps failed operations, marked fail', () => {
    const h = pairHistory([inv(0, 'write', 1, 0), done('fail', 0, 'write', 1, 3)]);
    expect(h.operations[0]).toMatchObject({ outcome: 'fail', return: 3 });
  });

  it('rejects a completion without an invocation', () => {
    const e = pairingError([inv(0, 'read', null, 0), done('ok', 1, 'read', 1, 2)]);
    expect(e.code).toBe('UNMATCHED_COMPLETION');
    expect(e.message).toMatch(
      /event 2: process 1 completes 'read' with 'ok' but has no outstanding/,
    );
  });

  it('rejects a second invocation while one is outstanding', () => {
    const e = pairingError([inv(0, 'read', null, 0), inv(0, 'write', 1, 1)]);
    expect(e.code).toBe('BAD_ORDER');
    expect(e.message).toMatch(/one operation at a time/);
  });

  it('rejects reusing a process after an indeterminate operation', () => {
    const e = pairingError([
      inv(0, 'write', 1, 0),
      done('info', 0, 'write', 1, 1),
      inv(0, 'read', null, 2),
    ]);
    expect(e.code).toBe('BAD_ORDER');
    expect(e.message).toMatch(/new process number/);
  });

  it('rejects a completion that does not match its invocation', () => {
    const e = pairingError([inv(0, 'read', null, 0), done('ok', 0, 'write', 1, 1)]);
    expect(e.code).toBe('MISMATCHED_COMPLETION');
  });

  it('rejects time going backwards within a process', () => {
    const e = pairingError([inv(0, 'read', null, 5), done('ok', 0, 'read', 1, 4)]);
    expect(e.code).toBe('BAD_ORDER');
    expect(e.message).toMatch(/goes back in time/);
  });

  it('rejects malformed events, naming the field', () => {
    expect(pairingError([{ type: 'invoke', process: 0, f: 'read', time: 'x' }]).message).toMatch(
      /time is "x"/,
    );
    expect(pairingError([{ type: 'begin', process: 0, f: 'read', time: 0 }]).message).toMatch(
      /type is "begin"/,
    );
    expect(pairingError([{ type: 'invoke', process: 1.5, f: 'read', time: 0 }]).code).toBe(
      'BAD_EVENT',
    );
  });
});

describe('parseHistoryJsonLines', () => {
  it('parses one event per line, skipping blank and # lines, numeric keys as strings', () => {
    const text = [
      '# a comment',
      '{"type":"invoke","process":0,"f":"write","key":1,"value":3,"time":0}',
      '',
      '{"type":"ok","process":0,"f":"write","key":1,"value":3,"time":2}',
    ].join('\n');
    const parsed = parseHistoryJsonLines(text);
    expect(parsed.lines).toEqual([2, 4]);
    expect(parsed.events[0]).toMatchObject({ key: '1', value: 3 });
  });

  it('names the line of bad JSON and of pairing errors', () => {
    expect(() => parseHistoryJsonLines('{"type":"invoke",\n')).toThrow(/line 1: not valid JSON/);
    const parsed = parseHistoryJsonLines(
      '\n{"type":"ok","process":0,"f":"read","value":1,"time":2}',
    );
    expect(() =>
      pairHistory(parsed.events, { positionOf: (i) => `line ${parsed.lines[i]}` }),
    ).toThrow(/^line 2: process 0 completes/);
  });
});
