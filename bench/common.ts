// What every benchmark shares: the machine line printed beside the figures, and option parsing
// with a clear message (exit 2) for a bad option.

import { readFileSync } from 'node:fs';
import os from 'node:os';

export interface Machine {
  readonly node: string;
  readonly cpu: string;
  readonly cores: number;
}

export function machine(): Machine {
  return {
    node: process.version,
    cpu: os.cpus()[0]?.model ?? 'unknown',
    cores: os.availableParallelism(),
  };
}

/** "Node v20.20.2, <cpu>, 2 cores (<note>)" */
export function machineLine(m: Machine, note: string): string {
  return `Node ${m.node}, ${m.cpu}, ${m.cores} cores (${note})`;
}

type NumberOption = { readonly default: number; readonly min: number; readonly integer?: boolean };
type FlagOption = { readonly flag: true };
export type OptionSpec = Readonly<Record<string, NumberOption | FlagOption>>;
export type Options<S extends OptionSpec> = {
  [K in keyof S]: S[K] extends FlagOption ? boolean : number;
};

/** Parses `--name value` numbers and `--flag` switches; anything else exits 2 with the usage. */
export function parseOptions<S extends OptionSpec>(argv: readonly string[], spec: S): Options<S> {
  const out: Record<string, number | boolean> = {};
  for (const [k, o] of Object.entries(spec)) out[k] = 'flag' in o ? false : o.default;
  const usage = Object.entries(spec)
    .map(([k, o]) => ('flag' in o ? `--${k}` : `--${k} N`))
    .join(', ');
  const fail = (why: string): never => {
    process.stderr.write(`bench: ${why} (options: ${usage})\n`);
    process.exit(2);
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const name = a.startsWith('--') ? a.slice(2) : '';
    const o = spec[name];
    if (o === undefined) fail(`unknown option ${a}`);
    else if ('flag' in o) out[name] = true;
    else {
      const v = Number(argv[++i]);
      if (!Number.isFinite(v) || v < o.min || (o.integer === true && !Number.isSafeInteger(v))) {
        fail(
          `${a} needs ${o.integer === true ? 'an integer' : 'a number'} >= ${o.min}, got ${JSON.stringify(argv[i] ?? '')}`,
        );
      }
      out[name] = v;
    }
  }
  return out as Options<S>;
}

export function fmtInt(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

/**
 * An aligned table: the first column left-aligned, the others right-aligned, a rule under the
 * header. One line per row, joined with newlines.
 */
export function formatTable(
  header: readonly string[],
  rows: readonly (readonly string[])[],
): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: readonly string[]): string =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

/** Linux's USER_HZ: /proc/<pid>/stat counts CPU time in these ticks. */
const CLOCK_TICKS_PER_S = 100;

/** CPU seconds a process has used so far (user + system, from /proc). */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_S;
}
