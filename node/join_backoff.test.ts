import { describe, expect, it } from 'vitest';
import { JOIN_RETRY_MS_MAX, JOIN_RETRY_MS_MIN, JoinBackoff } from './join_backoff.ts';

describe('JoinBackoff', () => {
  it('doubles the delay from the minimum up to the bound, and waits it out', () => {
    const b = new JoinBackoff();
    let now = 0;
    const delays: number[] = [];
    for (let i = 0; i < 12; i++) {
      expect(b.due(now)).toBe(true);
      const f = b.failed('seed UNAVAILABLE', now);
      delays.push(f.retryMs);
      expect(b.due(now + f.retryMs - 1)).toBe(false);
      now += f.retryMs;
    }
    expect(delays[0]).toBe(JOIN_RETRY_MS_MIN);
    expect(delays[1]).toBe(JOIN_RETRY_MS_MIN * 2);
    expect(Math.max(...delays)).toBe(JOIN_RETRY_MS_MAX);
    expect(delays.at(-1)).toBe(JOIN_RETRY_MS_MAX);
  });

  it('reports a change only when the reason changes (the loop warns once per state)', () => {
    const b = new JoinBackoff();
    expect(b.failed('x UNAVAILABLE', 0).changed).toBe(true);
    expect(b.failed('x UNAVAILABLE', 1000).changed).toBe(false);
    expect(b.failed('x UNAVAILABLE', 2000).changed).toBe(false);
    expect(b.failed('x NO_LEADER', 3000).changed).toBe(true);
    expect(b.failed('x NO_LEADER', 4000).changed).toBe(false);
  });

  it('starts over after a success', () => {
    const b = new JoinBackoff();
    b.failed('x UNAVAILABLE', 0);
    b.failed('x UNAVAILABLE', 300);
    b.succeeded();
    expect(b.due(300)).toBe(true);
    const f = b.failed('x UNAVAILABLE', 300);
    expect(f).toEqual({ changed: true, retryMs: JOIN_RETRY_MS_MIN });
  });
});
