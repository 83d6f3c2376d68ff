import { describe, expect, it } from 'vitest';
import { createLogger, formatRecord, isText, type LogTarget } from './log.ts';

function target(isTTY: boolean, hasColours = false): LogTarget & { text: () => string } {
  let text = '';
  return {
    write: (t) => void (text += t),
    isTTY,
    hasColours,
    text: () => text,
  };
}

describe('log lines', () => {
  it('a record reads as time, level, message, key=value fields', () => {
    const time = new Date(2026, 0, 2, 3, 4, 5, 6).getTime();
    const line = JSON.stringify({
      level: 40,
      time,
      pid: 1,
      hostname: 'h',
      msg: 'waiting for the seed',
      seed: '/ip4/10.0.0.1/tcp/4001',
      retryMs: 300,
      addrs: ['/ip4/a', '/ip4/b'],
      reason: 'connection refused',
    });
    expect(formatRecord(line, false)).toBe(
      '03:04:05.006  WARN   waiting for the seed  seed=/ip4/10.0.0.1/tcp/4001  retryMs=300  addrs=/ip4/a,/ip4/b  reason="connection refused"\n',
    );
  });
  it('colours the level and field names only when asked', () => {
    const line = JSON.stringify({ level: 50, time: 0, msg: 'bad', k: 'v' });
    expect(formatRecord(line, true)).toContain('\x1b[31mERROR');
    expect(formatRecord(line, false)).not.toContain('\x1b[');
  });
  it('passes a line that is not JSON through', () => {
    expect(formatRecord('plain', false)).toBe('plain\n');
  });
});

describe('createLogger', () => {
  it('auto: text on a terminal, JSON otherwise; json and text force it', () => {
    expect(isText('auto', { isTTY: true })).toBe(true);
    expect(isText('auto', { isTTY: false })).toBe(false);
    expect(isText('json', { isTTY: true })).toBe(false);
    expect(isText('text', { isTTY: false })).toBe(true);
    const tty = target(true);
    createLogger('info', 'auto', tty).info({ id: 'x' }, 'node started');
    expect(tty.text()).toMatch(/^\d\d:\d\d:\d\d\.\d{3} {2}INFO {3}node started {2}id=x\n$/);
    const pipe = target(false);
    createLogger('info', 'auto', pipe).info({ id: 'x' }, 'node started');
    expect(JSON.parse(pipe.text())).toMatchObject({ level: 30, msg: 'node started', id: 'x' });
  });
});
