// npm run bench:store-verify: what checking a NAR as it is served costs (docs/store.md, "Damage").
// A node-local store holds one big path (--mib, default 256) and many small ones (--paths of
// --small-bytes). Each is read as the server reads it: raw (`store.nar`, what serving cost before)
// and verified (`openVerifiedNar`: the same read, hashed as it flows, judged at the end), and the
// big one is also fully checked by `verifyStore`. Anchor: the P2P transfer of the same big path
// (docs/store.md measured 1.56-1.66 s for 256 MiB), of which the added hash is a share.
// Usage: npm run bench:store-verify -- [--mib 256] [--paths 1000] [--small-bytes 1000] [--runs 3]

import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { formatSha256 } from '../node/store/hash.ts';
import { addPath } from '../node/store/ingest.ts';
import { LocalStore } from '../node/store/local_store.ts';
import { narString } from '../node/store/nar.ts';
import type { PathInfo, Store } from '../node/store/store.ts';
import { openVerifiedNar, verifyStore } from '../node/store/verify.ts';
import { fmtInt, formatTable, machine, machineLine, parseOptions } from './common.ts';

const opts = parseOptions(process.argv.slice(2), {
  mib: { default: 256, min: 1, integer: true },
  paths: { default: 1000, min: 1, integer: true },
  'small-bytes': { default: 1000, min: 1, integer: true },
  runs: { default: 3, min: 1, integer: true },
});
/** The anchor: pcr p2p of one 256 MiB path into a node-local store (docs/store.md, s). */
const P2P_256_MIB_S = 1.6;

/** A NAR of one regular file with `contents`, and its info. */
function regularPath(i: number, contents: Buffer): { info: PathInfo; nar: Buffer } {
  const nar = Buffer.concat([
    ...['nix-archive-1', '(', 'type', 'regular', 'contents'].map((t) => narString(t)),
    narString(contents),
    narString(')'),
  ]);
  return {
    info: {
      path: `/nix/store/${String(i).padStart(32, '0')}-bench-${i}`,
      narHash: formatSha256(createHash('sha256').update(nar).digest()),
      narSize: nar.length,
      references: [],
      sigs: [],
    },
    nar,
  };
}

/** Wall and CPU seconds of `f`. */
async function timed(f: () => Promise<void>): Promise<{ wallS: number; cpuS: number }> {
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  await f();
  const cpu = process.cpuUsage(cpu0);
  return {
    wallS: Number(process.hrtime.bigint() - t0) / 1e9,
    cpuS: (cpu.user + cpu.system) / 1e6,
  };
}

async function readRaw(store: Store, infos: readonly PathInfo[]): Promise<void> {
  for (const i of infos) for await (const _ of store.nar(i.path));
}

async function readVerified(store: Store, infos: readonly PathInfo[]): Promise<void> {
  for (const i of infos) for await (const _ of await openVerifiedNar(store, i));
}

const dir = await mkdtemp(join(tmpdir(), 'pcr-bench-verify-'));
try {
  const store = await LocalStore.open({ dir, maxBytes: 2 ** 40, fsync: false });
  const big = regularPath(0, randomBytes(opts.mib * 2 ** 20));
  await addPath(store, big.info, [big.nar]);
  const small: PathInfo[] = [];
  for (let i = 1; i <= opts.paths; i++) {
    const p = regularPath(i, randomBytes(opts['small-bytes']));
    await addPath(store, p.info, [p.nar]);
    small.push(p.info);
  }
  big.nar.fill(0); // the page cache holds the file; keep the process's memory small
  const rows: string[][] = [];
  const s = (x: number) => x.toFixed(3);
  for (let run = 1; run <= opts.runs; run++) {
    const rawBig = await timed(() => readRaw(store, [big.info]));
    const verBig = await timed(() => readVerified(store, [big.info]));
    const rawSmall = await timed(() => readRaw(store, small));
    const verSmall = await timed(() => readVerified(store, small));
    rows.push(
      [
        `${opts.mib} MiB, run ${run}`,
        s(rawBig.wallS),
        s(verBig.wallS),
        s(rawBig.cpuS),
        s(verBig.cpuS),
      ],
      [
        `${fmtInt(opts.paths)} x ${opts['small-bytes']} B, run ${run}`,
        s(rawSmall.wallS),
        s(verSmall.wallS),
        s(rawSmall.cpuS),
        s(verSmall.cpuS),
      ],
    );
    if (run === opts.runs) {
      const added = verBig.cpuS - rawBig.cpuS;
      const full = await timed(async () => {
        await verifyStore(store);
      });
      process.stdout.write(
        [
          `bench:store-verify — ${machineLine(machine(), 'one process, node-local store, warm page cache')}`,
          '',
          formatTable(['case', 'raw s', 'verified s', 'raw cpu s', 'verified cpu s'], rows),
          '',
          `verify of the whole store (${fmtInt(opts.paths + 1)} paths): ${s(full.wallS)} s wall, ${s(full.cpuS)} s CPU`,
          `hash cost while serving ${opts.mib} MiB: ${s(added)} s CPU (${fmtInt(opts.mib / Math.max(verBig.cpuS, 1e-9))} MiB/s verified)`,
          `beside the anchor (pcr p2p of 256 MiB, ${P2P_256_MIB_S} s): ${((added * (256 / opts.mib)) / P2P_256_MIB_S).toFixed(2)}x of the transfer's time`,
          '',
        ].join('\n'),
      );
    }
  }
} finally {
  await rm(dir, { recursive: true, force: true });
}
