// The checker's command line: reads a history (JSON lines, one event per line, see README.md),
// prints the verdict with a per-key table, and writes an HTML timeline next to the history when it
// is not linearizable. Exit codes: 0 linearizable, 1 violation, 2 unknown (budget ran out) or bad
// input. Run: npx tsx jepsen/checker/cli.ts [options] <history.jsonl>

import { readFileSync, writeFileSync } from 'node:fs';
import { basename, dirname, extname, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { isCheckerError } from './errors.ts';
import { describeInterval, type Operation, pairHistory, parseHistoryJsonLines } from './history.ts';
import { CHECK_TIMEOUT_MS_DEFAULT, type CheckResult, checkOperations } from './linearizability.ts';
import { type AnyModel, casRegister, kvMap } from './model.ts';
import { renderReportHtml } from './render.ts';

export const EXIT_OK = 0;
export const EXIT_VIOLATION = 1;
export const EXIT_UNKNOWN_OR_BAD_INPUT = 2;

const MODELS: Readonly<Record<string, AnyModel>> = { register: casRegister, kv: kvMap };

const USAGE = `usage: npx tsx jepsen/checker/cli.ts [options] <history.jsonl>

Checks that a history of a key-value store (Maelstrom lin-kv semantics) is linearizable.
Each line of the file is one event:
  {"type":"invoke","process":0,"f":"write","key":"x","value":3,"time":10}
  {"type":"ok","process":0,"f":"write","key":"x","value":3,"time":12}

options:
  --model register|kv   register: one cas-register per key (default); kv: a map of keys
  --timeout-ms N        give up with 'unknown' after N ms (default ${CHECK_TIMEOUT_MS_DEFAULT})
  --steps-max N         give up with 'unknown' after N search steps (deterministic)
  --html PATH           where to write the timeline (default: next to the history, .html)
  --render              write the timeline even when the history is linearizable
  --json                print the result as JSON instead of text
  -h, --help            this text

exit codes: 0 linearizable, 1 not linearizable, 2 unknown or bad input`;

export interface Io {
  readonly out: (line: string) => void;
  readonly err: (line: string) => void;
}

function numberOption(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0)
    throw new Error(`--${name} must be a number >= 0, got '${value}'`);
  return n;
}

function summaryJson(result: CheckResult): unknown {
  const v = result.violation;
  /** An operation for JSON: +infinity (indeterminate) becomes null. */
  const brief = (op: Operation) => ({
    id: op.id,
    process: op.process,
    f: op.f,
    key: op.key,
    input: op.input,
    output: op.output,
    outcome: op.outcome,
    call: op.call,
    return: Number.isFinite(op.return) ? op.return : null,
  });
  return {
    verdict: result.verdict,
    model: result.model,
    steps: result.steps,
    elapsedMs: result.elapsedMs,
    ignored: result.ignored,
    perKey: result.perKey.map(({ linearization: _, furthestStuck, ...k }) => ({
      ...k,
      ...(furthestStuck === undefined
        ? {}
        : {
            furthestStuck: {
              op: brief(furthestStuck.op),
              linearizedBefore: furthestStuck.linearizedBefore,
            },
          }),
    })),
    ...(v === undefined
      ? {}
      : {
          violation: {
            key: v.key,
            blocked: brief(v.blocked),
            window: v.window.map(brief),
            partialLinearization: v.partialLinearization.map((op) => op.id),
            stateAfterPartial: v.stateAfterPartial,
            explanation: v.explanation,
          },
        }),
  };
}

function table(result: CheckResult): string[] {
  const rows = [['key', 'ops', 'verdict', 'steps', 'ms']];
  for (const k of result.perKey) {
    const verdict = k.unknownReason ? `${k.verdict} (${k.unknownReason})` : k.verdict;
    rows.push([k.key, String(k.operations), verdict, String(k.steps), k.elapsedMs.toFixed(1)]);
  }
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  return rows.map((r) =>
    r
      .map((cell, c) => cell.padEnd(widths[c]!))
      .join('  ')
      .trimEnd(),
  );
}

const OPTIONS = {
  model: { type: 'string', default: 'register' },
  'timeout-ms': { type: 'string' },
  'steps-max': { type: 'string' },
  html: { type: 'string' },
  render: { type: 'boolean', default: false },
  json: { type: 'boolean', default: false },
  help: { type: 'boolean', short: 'h', default: false },
} as const;

function parse(argv: readonly string[]) {
  const args = parseArgs({ args: [...argv], options: OPTIONS, allowPositionals: true });
  return {
    ...args,
    timeoutMs: numberOption('timeout-ms', args.values['timeout-ms']),
    stepsMax: numberOption('steps-max', args.values['steps-max']),
  };
}

/** The command, callable from tests: returns the exit code instead of exiting. */
export function main(argv: readonly string[], io: Io): number {
  let args: ReturnType<typeof parse>;
  try {
    args = parse(argv);
  } catch (e) {
    io.err(`error: ${(e as Error).message}\n\n${USAGE}`);
    return EXIT_UNKNOWN_OR_BAD_INPUT;
  }
  const { timeoutMs, stepsMax } = args;
  if (args.values.help) {
    io.out(USAGE);
    return EXIT_OK;
  }
  const file = args.positionals[0];
  if (file === undefined || args.positionals.length > 1) {
    io.err(`error: give exactly one history file\n\n${USAGE}`);
    return EXIT_UNKNOWN_OR_BAD_INPUT;
  }
  const model = MODELS[args.values.model];
  if (model === undefined) {
    io.err(`error: unknown model '${args.values.model}'; use register or kv`);
    return EXIT_UNKNOWN_OR_BAD_INPUT;
  }

  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    io.err(`error: cannot read ${file}: ${(e as Error).message}`);
    return EXIT_UNKNOWN_OR_BAD_INPUT;
  }
  let result: CheckResult;
  let history: ReturnType<typeof pairHistory>;
  try {
    const parsed = parseHistoryJsonLines(text);
    history = pairHistory(parsed.events, { positionOf: (i) => `line ${parsed.lines[i]}` });
    result = checkOperations(model, history.operations, {
      ...(timeoutMs === undefined ? {} : { timeoutMs }),
      ...(stepsMax === undefined ? {} : { stepsMax }),
    });
  } catch (e) {
    if (!isCheckerError(e)) throw e;
    io.err(`error: ${file}: ${e.message}`);
    return EXIT_UNKNOWN_OR_BAD_INPUT;
  }

  let htmlPath: string | undefined;
  if (result.verdict === 'violation' || args.values.render) {
    htmlPath = args.values.html ?? join(dirname(file), `${basename(file, extname(file))}.html`);
    writeFileSync(htmlPath, renderReportHtml(result, history, model, { source: file }));
  }

  if (args.values.json) {
    io.out(
      JSON.stringify({ ...(summaryJson(result) as object), timeline: htmlPath ?? null }, null, 2),
    );
  } else {
    const c = history.counts;
    io.out(
      `${file}: ${history.operations.length} operations (${c.ok} ok, ${c.fail} fail, ` +
        `${c.info + c.pending} indeterminate), model ${result.model}`,
    );
    for (const line of table(result)) io.out(line);
    io.out('');
    if (result.violation) {
      io.out(result.violation.explanation);
      io.out('');
    }
    const where = result.violation ? ` (key ${result.violation.key})` : '';
    io.out(
      `verdict: ${result.verdict}${where} in ${result.elapsedMs.toFixed(1)} ms, ${result.steps} steps`,
    );
    if (result.verdict === 'unknown') {
      io.out(
        'the search ran out of budget: raise --timeout-ms / --steps-max, or check fewer operations per key',
      );
      for (const k of result.perKey) {
        if (k.furthestStuck === undefined) continue;
        const { op, linearizedBefore } = k.furthestStuck;
        io.out(
          `  key ${k.key}: furthest stuck on p${op.process} ${model.describeOperation(op)} ` +
            `${describeInterval(op)} after ${linearizedBefore} operations (a lead, not a proof)`,
        );
      }
    }
    if (htmlPath !== undefined) io.out(`timeline: ${htmlPath}`);
  }
  return result.verdict === 'ok'
    ? EXIT_OK
    : result.verdict === 'violation'
      ? EXIT_VIOLATION
      : EXIT_UNKNOWN_OR_BAD_INPUT;
}

const invokedDirectly =
  process.argv[1] !== undefined && import.meta.url === pathToFileURL(resolve(process.argv[1])).href;
if (invokedDirectly) {
  process.exitCode = main(process.argv.slice(2), {
    out: (line) => process.stdout.write(`${line}\n`),
    err: (line) => process.stderr.write(`${line}\n`),
  });
}
