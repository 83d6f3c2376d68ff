// Speed of the deterministic simulator: virtual seconds simulated per wall-clock second, for a
// 5-node cluster with 10 clients at 100 operations per second in total under the partition
// nemesis (random halves, isolated nodes, isolated leaders, majorities rings, bridges). Everything
// a run does counts: the real RaftNodes, the codec, the simulated disks and network, the history,
// the linearizability check and the hash. One warm-up run (JIT), then several seeds.
//
//   npm run bench:sim -- [--seconds N] [--runs N] [--json]

import { runSimulation } from '../sim/run.ts';
import { formatTable, machine, machineLine, parseOptions } from './common.ts';

/** The anchor: a simulator that runs at least 100x real time makes long fault runs cheap. */
const TARGET_SPEED = 100;
const NODES = 5;
const CLIENTS = 10;
const RATE_OPS_PER_S = 100;
const WARMUP_VIRTUAL_MS = 20_000;

function main(): void {
  const { seconds, runs, json } = parseOptions(process.argv.slice(2), {
    seconds: { default: 60, min: 1 }, // virtual, per run
    runs: { default: 5, min: 1, integer: true },
    json: { flag: true },
  });
  const env = machine();
  const options = (seed: number, timeMs: number) => ({
    seed,
    nodes: NODES,
    timeMs,
    nemesis: ['partition'] as const,
    workload: { clients: CLIENTS, rate: RATE_OPS_PER_S },
  });
  runSimulation(options(1_000_000, WARMUP_VIRTUAL_MS));

  let virtualMs = 0;
  let wallMs = 0;
  let loopWallMs = 0;
  let checkWallMs = 0;
  let events = 0;
  let ops = 0;
  let messages = 0;
  const perRun: {
    seed: number;
    virtualS: number;
    wallS: number;
    speed: number;
    verdict: string;
  }[] = [];
  for (let seed = 1; seed <= runs; seed++) {
    const r = runSimulation(options(seed, seconds * 1000));
    if (r.failed) throw new Error(`seed ${seed} failed: the benchmark needs a healthy run`);
    virtualMs += r.virtualMs;
    wallMs += r.wallMs;
    loopWallMs += r.loopWallMs;
    checkWallMs += r.checkWallMs;
    events += r.events;
    ops += r.ops.invoked;
    messages += r.network.sent;
    perRun.push({
      seed,
      virtualS: r.virtualMs / 1000,
      wallS: r.wallMs / 1000,
      speed: r.speed,
      verdict: r.check.verdict,
    });
  }
  const speed = virtualMs / wallMs;
  const result = {
    env,
    case: `${NODES} nodes, ${CLIENTS} clients at ${RATE_OPS_PER_S} ops/s, partition nemesis`,
    runs,
    virtualSPerRun: seconds,
    speed,
    targetSpeed: TARGET_SPEED,
    ratio: speed / TARGET_SPEED,
    loopSpeed: virtualMs / loopWallMs,
    checkShare: checkWallMs / wallMs,
    eventsPerWallS: events / (wallMs / 1000),
    opsPerVirtualS: ops / (virtualMs / 1000),
    messagesPerVirtualS: messages / (virtualMs / 1000),
    heapUsedMiB: process.memoryUsage().heapUsed / 2 ** 20,
    perRun,
  };
  if (json) {
    console.log(JSON.stringify(result, null, 2));
    return;
  }
  console.log(machineLine(env, 'the run uses one'));
  console.log(
    `${result.case}; ${runs} runs of ${seconds} virtual s after a ${WARMUP_VIRTUAL_MS / 1000} s warm-up`,
  );
  console.log('');
  console.log(
    formatTable(
      ['figure', 'measured', 'target', 'ratio'],
      [
        [
          'virtual s per wall s',
          speed.toFixed(1),
          String(TARGET_SPEED),
          `${result.ratio.toFixed(2)}x`,
        ],
      ],
    ),
  );
  console.log('');
  console.log(
    `event loop alone ${result.loopSpeed.toFixed(1)}x real time; the check and hash take ` +
      `${(result.checkShare * 100).toFixed(1)}% of the wall time`,
  );
  console.log(
    `${Math.round(result.eventsPerWallS).toLocaleString('en-US')} events per wall s; per virtual s: ` +
      `${result.opsPerVirtualS.toFixed(0)} client operations, ${result.messagesPerVirtualS.toFixed(0)} Raft messages`,
  );
  for (const r of perRun) {
    console.log(
      `  seed ${r.seed}: ${r.virtualS.toFixed(1)} virtual s in ${r.wallS.toFixed(2)} s (${r.speed.toFixed(1)}x), checker ${r.verdict}`,
    );
  }
}

main();
