// `npm run test:stress -- --runs N [--load K] [-- vitest args]`: the whole suite (or the files the
// vitest args name) N times in a row while K busy-loop processes keep the cores loaded, then a
// table of every test that failed at least once, with its failure count. A flake is found here
// before CI finds it; its cause is then fixed (docs/operations.md, "A suite that never flakes").
//
// Each run is a fresh `vitest run` with the JSON reporter; the load generators run at the same
// priority as the tests, so they compete for the CPU as other tenants of a shared machine do.

import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

interface Args {
  runs: number;
  load: number;
  vitestArgs: string[];
}

/** More runs than this is a typo, not a plan (each run of the suite takes minutes). */
export const STRESS_RUNS_MAX = 1000;

export class UsageError extends Error {}

function usage(msg: string): never {
  throw new UsageError(
    `test:stress: ${msg}\nusage: npm run test:stress -- --runs N [--load K] [-- vitest args]`,
  );
}

export function parseArgs(argv: readonly string[]): Args {
  const args: Args = { runs: 10, load: availableParallelism(), vitestArgs: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') {
      args.vitestArgs = argv.slice(i + 1);
      break;
    }
    const value = argv[i + 1];
    const n = Number(value);
    if (a === '--runs' || a === '--load') {
      if (value === undefined || !Number.isSafeInteger(n) || n < (a === '--runs' ? 1 : 0))
        usage(`${a} takes a whole number${a === '--runs' ? ' >= 1' : ' >= 0'}, not ${value}`);
      if (a === '--runs' && n > STRESS_RUNS_MAX) usage(`--runs is at most ${STRESS_RUNS_MAX}`);
      if (a === '--runs') args.runs = n;
      else args.load = n;
      i++;
      continue;
    }
    usage(`unknown argument ${a}`);
  }
  return args;
}

interface VitestJson {
  numFailedTests: number;
  numPassedTests: number;
  testResults: {
    name: string;
    status: string;
    message?: string;
    assertionResults: { fullName: string; status: string; failureMessages: string[] }[];
  }[];
}

function startLoad(k: number): () => void {
  const procs = Array.from({ length: k }, () =>
    spawn(process.execPath, ['-e', 'for(;;){}'], { stdio: 'ignore' }),
  );
  return () => {
    for (const p of procs) p.kill('SIGKILL');
  };
}

function runVitest(outFile: string, extra: readonly string[]): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn(
      'npx',
      [
        'vitest',
        'run',
        '--reporter=dot',
        '--reporter=json',
        `--outputFile.json=${outFile}`,
        ...extra,
      ],
      { stdio: ['ignore', 'inherit', 'inherit'] },
    );
    child.on('exit', (code) => resolve(code ?? 1));
  });
}

async function main(): Promise<void> {
  let args: Args;
  try {
    args = parseArgs(process.argv.slice(2));
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    process.stderr.write(`${e.message}\n`);
    process.exit(2);
  }
  const dir = await mkdtemp(join(tmpdir(), 'pcr-stress-'));
  const failures = new Map<string, { count: number; first: string }>();
  const stopLoad = startLoad(args.load);
  const started = Date.now();
  let cleanRuns = 0;
  try {
    for (let run = 1; run <= args.runs; run++) {
      const out = join(dir, `run-${run}.json`);
      process.stdout.write(`\n== stress run ${run}/${args.runs} (load: ${args.load} busy loops)\n`);
      const code = await runVitest(out, args.vitestArgs);
      const r = JSON.parse(await readFile(out, 'utf8').catch(() => '{}')) as Partial<VitestJson>;
      let failed = 0;
      for (const file of r.testResults ?? []) {
        const bad = file.assertionResults.filter((t) => t.status === 'failed');
        // A file that failed outside any test (an import error, a hook) counts under its name.
        if (bad.length === 0 && file.status === 'failed') {
          bad.push({ fullName: '(file)', status: 'failed', failureMessages: [file.message ?? ''] });
        }
        for (const t of bad) {
          const key = `${file.name.replace(`${process.cwd()}/`, '')} > ${t.fullName}`;
          const f = failures.get(key) ?? {
            count: 0,
            first: (t.failureMessages[0] ?? '').split('\n')[0]!,
          };
          f.count++;
          failures.set(key, f);
          failed++;
          // Said at once, so a stress run cut short still tells what failed.
          process.stdout.write(`== run ${run} FAILED: ${key}\n`);
        }
      }
      if (r.testResults === undefined)
        failures.set(`(run ${run}: no report, exit ${code})`, { count: 1, first: '' });
      if (failed === 0 && code === 0) cleanRuns++;
      process.stdout.write(`== run ${run}: ${r.numPassedTests ?? 0} passed, ${failed} failed\n`);
    }
  } finally {
    stopLoad();
    await rm(dir, { recursive: true, force: true });
  }
  const minutes = ((Date.now() - started) / 60_000).toFixed(1);
  process.stdout.write(
    `\n${args.runs} runs in ${minutes} min under ${args.load} busy loops: ${cleanRuns} without a failure\n`,
  );
  if (failures.size === 0) {
    process.stdout.write('no test failed\n');
    return;
  }
  process.stdout.write('failures  test  (first message)\n');
  for (const [name, f] of [...failures].sort((a, b) => b[1].count - a[1].count)) {
    process.stdout.write(
      `${String(f.count).padStart(8)}  ${name}\n          ${f.first.slice(0, 160)}\n`,
    );
  }
  process.exitCode = 1;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) await main();
