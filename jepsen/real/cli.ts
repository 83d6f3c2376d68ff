// `npm run jepsen -- --nodes 5 --time 60 --nemesis partition,kill,pause,loss --workload kv,set
// --seed 7`: a Jepsen run against real `pcr node start` processes in network namespaces (needs
// root, ip and iptables). Prints the verdict and the figures; exit 0 valid, 1 invalid, 2 unknown
// or error. `--clean` removes what a crashed harness left (namespaces, links, processes).
// Ctrl-C or SIGTERM stops the workload, heals, and removes everything before exiting.

import '../../node/polyfill.ts';
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import { parseNemeses } from './nemesis.ts';
import { HarnessError, NODES_MAX, preflight, releaseLock, removeAll, takeLock } from './netns.ts';
import { RUN_DEFAULTS, type RunResult, runJepsen, WORKLOADS, type Workload } from './run.ts';

/** Runs shorter than this leave no room for a fault and the final heal. */
export const TIME_S_MIN = 10;

function intIn(min: number, max: number): (v: string) => number {
  return (v) => {
    const n = Number(v);
    if (!Number.isSafeInteger(n) || n < min || n > max) {
      throw new InvalidArgumentError(`expected an integer from ${min} to ${max}`);
    }
    return n;
  };
}

function parseWorkloads(v: string): Workload[] {
  const names = v.split(',').map((s) => s.trim());
  for (const n of names) {
    if (!(WORKLOADS as readonly string[]).includes(n)) {
      throw new InvalidArgumentError(
        `unknown workload ${JSON.stringify(n)}: expected kv, set, vms or a list of them`,
      );
    }
  }
  return [...new Set(names)] as Workload[];
}

function printResult(r: RunResult): void {
  const s = r.stats;
  const f = (x: number | undefined, unit = ' ms'): string =>
    x === undefined ? '-' : `${x.toFixed(1)}${unit}`;
  const p = (x: number | undefined): string => (x === undefined ? '-' : `${(x * 100).toFixed(1)}%`);
  console.log(`operations: ${s.operations} (${s.ok} ok, ${s.fail} fail, ${s.info} indeterminate)`);
  console.log(
    `latency (ok): p50 ${f(s.latencyP50Ms)}, p99 ${f(s.latencyP99Ms)}, max ${f(s.latencyMaxMs)}`,
  );
  console.log(
    `availability: ${p(s.availabilityDuringFaults)} during faults, ${p(s.availabilityQuiet)} without`,
  );
  const byNemesis = Object.entries(s.availabilityByNemesis)
    .map(([n, a]) => `${n} ${p(a)}`)
    .join(', ');
  if (byNemesis !== '') console.log(`availability per nemesis: ${byNemesis}`);
  console.log(`recovery after heal: max ${f(s.recoveryMaxMs)} over ${r.nemesis.length} faults`);
  if (r.kv !== undefined) {
    const keys = r.kv.perKey.map((k) => `${k.key}:${k.verdict}`).join(' ');
    console.log(`kv: ${r.kv.verdict} (${keys})`);
  }
  if (r.set !== undefined) {
    const x = r.set;
    console.log(
      `set: ${x.valid ? 'valid' : 'invalid'}: ${x.acknowledged}/${x.attempted} acknowledged, ` +
        `${x.lost.length} lost, ${x.unexpected.length} unexpected, ${x.stale.length} stale ` +
        `(in ${x.staleReads} reads), ${x.recovered}/${x.indeterminate} indeterminate present`,
    );
  }
  if (r.vms !== undefined) {
    const v = r.vms;
    const rec = Object.values(v.recoveryMs);
    console.log(
      `vms: ${v.valid ? 'valid' : 'invalid'}: ${v.doubleRuns.length} double runs, ` +
        `${v.lost.length} lost, ${v.unexpected.length} unexpected, ${v.notRunning.length} not running ` +
        `after the heal, ${v.strays.length} strays; ${v.samples} samples, ` +
        `${v.frozenOverlaps} frozen overlaps; recovery max ${rec.length === 0 ? '-' : `${Math.max(...rec)} ms`} over ${rec.length} VMs`,
    );
    for (const d of v.doubleRuns) {
      console.log(
        `  double run: ${d.instance} on ${d.nodes.join(' and ')} from ${(d.from / 1000).toFixed(1)} s to ${(d.to / 1000).toFixed(1)} s (${d.samples} samples)`,
      );
    }
  }
  console.log(`verdict: ${r.verdict}`);
  console.log(`report: ${join(r.resultsDir, 'index.html')}`);
}

async function main(argv: string[]): Promise<number> {
  const program = new Command('jepsen')
    .description('Jepsen against real pcr processes in network namespaces (root)')
    .option('--nodes <n>', `nodes (3 to ${NODES_MAX})`, intIn(3, NODES_MAX), RUN_DEFAULTS.nodes)
    .option(
      '--time <s>',
      'seconds of workload',
      intIn(TIME_S_MIN, 3600),
      RUN_DEFAULTS.timeMs / 1000,
    )
    .option(
      '--nemesis <list>',
      'partition,kill,pause,loss,skew or none',
      'partition,kill,pause,loss',
    )
    .option('--workload <list>', 'kv, set, vms, or a list (kv,set)', parseWorkloads, [
      ...RUN_DEFAULTS.workloads,
    ])
    .option('--seed <n>', 'seeds the nemesis schedule and the operations', intIn(0, 2 ** 31), 1)
    .option('--results <dir>', 'results folder (default: jepsen/results/<time>-seed<seed>)')
    .option('--fault-s <s>', 'seconds each fault lasts', intIn(1, 600), RUN_DEFAULTS.faultMs / 1000)
    .option('--quiet-s <s>', 'seconds between faults', intIn(1, 600), RUN_DEFAULTS.quietMs / 1000)
    .option('--planted <fault>', 'planted bug to prove the checkers: stale-reads')
    .option('--clean', 'only remove what a crashed run left, then exit')
    .exitOverride();
  program.parse(argv);
  const a = program.opts();
  preflight();
  if (a.clean === true) {
    // Refuses while a live harness holds the lock: its namespaces are not leftovers.
    takeLock();
    await removeAll();
    releaseLock();
    console.log('removed every pcrj namespace, link, process and work dir');
    return 0;
  }
  if (a.planted !== undefined && a.planted !== 'stale-reads') {
    throw new HarnessError(
      `unknown planted fault ${JSON.stringify(a.planted)}: expected stale-reads`,
    );
  }
  const timeMs = (a.time as number) * 1000;
  const finalHealMs = Math.min(RUN_DEFAULTS.finalHealMs, Math.floor(timeMs / 3));
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const resultsDir = resolve(
    (a.results as string | undefined) ?? join('jepsen', 'results', `${stamp}-seed${a.seed}`),
  );
  mkdirSync(resultsDir, { recursive: true });
  const abort = new AbortController();
  let signals = 0;
  const onSignal = (sig: string): void => {
    signals++;
    console.error(
      `${sig}: stopping the workload, healing and cleaning up${signals > 1 ? ' (again)' : ''}`,
    );
    abort.abort();
  };
  process.on('SIGINT', () => onSignal('SIGINT'));
  process.on('SIGTERM', () => onSignal('SIGTERM'));
  const result = await runJepsen({
    ...RUN_DEFAULTS,
    nodes: a.nodes as number,
    timeMs,
    finalHealMs,
    nemeses: parseNemeses(a.nemesis as string),
    workloads: a.workload as Workload[],
    seed: a.seed as number,
    faultMs: (a.faultS as number) * 1000,
    quietMs: (a.quietS as number) * 1000,
    staleReads: a.planted === 'stale-reads',
    resultsDir,
    log: (line) => console.log(line),
    signal: abort.signal,
  });
  printResult(result);
  if (abort.signal.aborted) {
    console.log('interrupted: no final reads, so the set verdict above proves nothing');
    return 2;
  }
  return result.verdict === 'valid' ? 0 : result.verdict === 'invalid' ? 1 : 2;
}

main(process.argv).then(
  (code) => process.exit(code),
  (e: unknown) => {
    const err = e as Error & { code?: string; exitCode?: number };
    if (err.code?.startsWith('commander.'))
      process.exit(err.code === 'commander.helpDisplayed' ? 0 : 2);
    console.error(
      `jepsen: ${err instanceof HarnessError ? err.message : (err.stack ?? String(e))}`,
    );
    process.exit(2);
  },
);
