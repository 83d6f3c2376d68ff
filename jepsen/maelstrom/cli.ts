// The router harness from the command line: a Maelstrom-like lin-kv test of `pcr maelstrom`
// processes, without Maelstrom. Prints the outcome counts, the nemesis schedule and the checker's
// verdict. Exit codes: 0 linearizable, 1 not linearizable (or a node died or wrote garbage),
// 2 unknown (checker budget) or bad usage.
//   npm run maelstrom:test -- --nodes 3 --time 20 --nemesis partition

import { writeFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { LIN_KV_TEST_DEFAULTS, type LinKvTestOptions, runLinKvTest } from './harness.ts';

const D = LIN_KV_TEST_DEFAULTS;
const USAGE = `usage: npm run maelstrom:test -- [options]

Runs N real \`pcr maelstrom\` processes behind a Maelstrom-like router, drives the lin-kv
workload against them, optionally partitions the network, and checks the history.

options:
  --nodes N               node processes (default ${D.nodeCount})
  --time S                workload length in seconds (default ${D.timeMs / 1000})
  --nemesis partition|none
                          random halves, then heal, in turn (default ${D.nemesis})
  --nemesis-interval S    seconds between nemesis actions (default ${D.nemesisIntervalMs / 1000})
  --final-heal S          seconds at the end with the network whole (default ${D.finalHealMs / 1000})
  --clients N             concurrent clients (default ${D.clients})
  --keys N                keys the clients use (default ${D.keys})
  --latency-ms MAX|MIN-MAX
                          node-to-node latency, uniform (default 0)
  --seed N                seed of the workload and the nemesis
  --history PATH          write the history as JSON lines (for jepsen/checker/cli.ts)
  --verbose               print the nodes' stderr
  -h, --help              this text

exit codes: 0 linearizable, 1 not linearizable or a node failed, 2 unknown or bad usage`;

function num(name: string, value: string | undefined, min: number): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isFinite(n) || n < min) throw new Error(`--${name} must be a number >= ${min}`);
  return n;
}

function latency(value: string | undefined): LinKvTestOptions['latencyMs'] | undefined {
  if (value === undefined) return undefined;
  const m = /^(\d+)(?:-(\d+))?$/.exec(value);
  if (m === null) throw new Error('--latency-ms must be MAX or MIN-MAX (milliseconds)');
  const a = Number(m[1]);
  const b = m[2] === undefined ? undefined : Number(m[2]);
  return b === undefined ? { min: 0, max: a } : { min: Math.min(a, b), max: Math.max(a, b) };
}

export async function main(argv: readonly string[]): Promise<number> {
  let options: Partial<LinKvTestOptions>;
  let historyPath: string | undefined;
  try {
    const { values } = parseArgs({
      args: [...argv],
      options: {
        nodes: { type: 'string' },
        time: { type: 'string' },
        nemesis: { type: 'string' },
        'nemesis-interval': { type: 'string' },
        'final-heal': { type: 'string' },
        clients: { type: 'string' },
        keys: { type: 'string' },
        'latency-ms': { type: 'string' },
        seed: { type: 'string' },
        history: { type: 'string' },
        verbose: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    });
    if (values.help === true) {
      console.log(USAGE);
      return 0;
    }
    const nemesis = values.nemesis ?? D.nemesis;
    if (nemesis !== 'partition' && nemesis !== 'none') {
      throw new Error(`--nemesis must be partition or none, got '${nemesis}'`);
    }
    const sec = (name: string, v: string | undefined, min: number): number | undefined => {
      const n = num(name, v, min);
      return n === undefined ? undefined : Math.round(n * 1000);
    };
    const entries: [keyof LinKvTestOptions, unknown][] = [
      ['nodeCount', num('nodes', values.nodes, 1)],
      ['timeMs', sec('time', values.time, 1)],
      ['nemesis', nemesis],
      ['nemesisIntervalMs', sec('nemesis-interval', values['nemesis-interval'], 0.1)],
      ['finalHealMs', sec('final-heal', values['final-heal'], 0)],
      ['clients', num('clients', values.clients, 1)],
      ['keys', num('keys', values.keys, 1)],
      ['latencyMs', latency(values['latency-ms'])],
      ['seed', num('seed', values.seed, 0)],
    ];
    options = Object.fromEntries(entries.filter(([, v]) => v !== undefined));
    if (values.verbose === true) {
      options = { ...options, onNodeLog: (id, line) => console.error(`[${id}] ${line}`) };
    }
    historyPath = values.history;
  } catch (e) {
    console.error(`${(e as Error).message}\n\n${USAGE}`);
    return 2;
  }

  const report = await runLinKvTest({ ...options, log: (line) => console.log(line) });
  if (historyPath !== undefined) {
    writeFileSync(historyPath, report.history.map((e) => JSON.stringify(e)).join('\n') + '\n');
    console.log(`history written to ${historyPath}`);
  }
  const c = report.counts;
  console.log(`seed ${report.seed} (workload and nemesis choices; process timing is not replayed)`);
  console.log(`operations: ${c.ok} ok, ${c.fail} fail, ${c.info} info`);
  for (const [f, k] of Object.entries(c.byF)) {
    console.log(`  ${f.padEnd(5)} ${k.ok} ok, ${k.fail} fail, ${k.info} info`);
  }
  console.log(
    `ok after the final heal: ${report.okAfterFinalHeal}` +
      (report.finalHealAtMs === undefined
        ? ''
        : ` (healed at t=${(report.finalHealAtMs / 1000).toFixed(1)}s)`),
  );
  const r = report.router;
  console.log(
    `network: ${r.routed} messages routed, ${r.dropped} dropped by partitions, ` +
      `${r.lateReplies} late replies`,
  );
  for (const k of report.check.perKey) {
    console.log(`  key ${k.key}: ${k.verdict}, ${k.operations} operations checked`);
  }
  if (report.check.violation !== undefined) console.log(report.check.violation.explanation);
  for (const p of report.problems) console.log(`problem: ${p}`);
  const valid = report.check.verdict === 'ok';
  console.log(
    `verdict: ${valid ? 'valid (linearizable)' : report.check.verdict} in ` +
      `${(report.elapsedMs / 1000).toFixed(1)} s`,
  );
  if (report.problems.length > 0 || report.check.verdict === 'violation') return 1;
  return valid ? 0 : 2;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (e: unknown) => {
      console.error(e instanceof Error ? (e.stack ?? e.message) : String(e));
      process.exitCode = 1;
    },
  );
}
