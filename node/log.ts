// The daemon's logger: pino, writing JSON lines to stderr, or on a terminal one readable line per
// record (time, level, message, key=value fields; colour when the terminal has it), like Nomad's
// and Consul's agents. `--log-format json|text|auto` chooses; auto is text on a TTY.
// formatRecord is pure (tested alone); createLogger wires it to a stream.

import pino, { type Logger } from 'pino';

import type { LogFormat } from './log_format.ts';

export { LOG_FORMATS, type LogFormat } from './log_format.ts';

const LEVEL_NAMES: Record<number, string> = {
  10: 'TRACE',
  20: 'DEBUG',
  30: 'INFO',
  40: 'WARN',
  50: 'ERROR',
  60: 'FATAL',
};

/** ANSI colours per level (SGR codes). */
const LEVEL_COLOURS: Record<number, string> = {
  10: '90',
  20: '36',
  30: '32',
  40: '33',
  50: '31',
  60: '35',
};

/** Pino's own fields, not shown as key=value. */
const HIDDEN = new Set(['level', 'time', 'msg', 'pid', 'hostname']);

function fieldValue(v: unknown): string {
  const list = Array.isArray(v) && v.every((x) => typeof x === 'string') ? v.join(',') : undefined;
  const s = list ?? (typeof v === 'string' ? v : JSON.stringify(v));
  return s !== undefined && /^[^\s"=]+$/.test(s) ? s : JSON.stringify(s ?? String(v));
}

function clock(ms: number): string {
  const d = new Date(ms);
  const p = (n: number, w = 2): string => String(n).padStart(w, '0');
  return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
}

/** One pino JSON record as a readable line (with a newline); a line that is not JSON as is. */
export function formatRecord(line: string, colour: boolean): string {
  let r: Record<string, unknown>;
  try {
    r = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return line.endsWith('\n') ? line : `${line}\n`;
  }
  const level = typeof r.level === 'number' ? r.level : 30;
  const name = (LEVEL_NAMES[level] ?? String(level)).padEnd(5);
  const time = typeof r.time === 'number' ? clock(r.time) : '';
  const fields = Object.entries(r)
    .filter(([k]) => !HIDDEN.has(k))
    .map(([k, v]) => `${colour ? `\x1b[2m${k}=\x1b[22m` : `${k}=`}${fieldValue(v)}`);
  const lvl = colour ? `\x1b[${LEVEL_COLOURS[level] ?? '0'}m${name}\x1b[39m` : name;
  const msg = typeof r.msg === 'string' ? r.msg : '';
  return `${[time, lvl, msg, ...fields].filter((x) => x !== '').join('  ')}\n`;
}

export interface LogTarget {
  readonly write: (text: string) => void;
  readonly isTTY: boolean;
  readonly hasColours: boolean;
}

function stderrTarget(): LogTarget {
  const s = process.stderr;
  return {
    write: (text) => void s.write(text),
    isTTY: s.isTTY === true,
    hasColours: s.isTTY === true && process.env.NO_COLOR === undefined && s.hasColors?.() === true,
  };
}

/** Whether `format` prints text on `target` (auto: text on a terminal). */
export function isText(format: LogFormat, target: Pick<LogTarget, 'isTTY'>): boolean {
  return format === 'text' || (format === 'auto' && target.isTTY);
}

export function createLogger(
  level: string,
  format: LogFormat,
  target: LogTarget = stderrTarget(),
): Logger {
  if (!isText(format, target)) {
    return pino({ level }, { write: (line: string) => target.write(line) });
  }
  const colour = target.hasColours;
  return pino({ level }, { write: (line: string) => target.write(formatRecord(line, colour)) });
}
