// `pcr store ...`: the cluster's Nix store. info and where ask the member (and, through it, the
// others); fetch pulls a closure onto a member (the one --on names) with a progress bar; push
// makes a path from the local Nix store available to the cluster; verify checks every NAR and
// repairs the damaged from the members; stats shows the counters.

import { randomBytes } from 'node:crypto';
import type { Command } from 'commander';
import { plural } from '../plural.ts';
import {
  CliError,
  type Connection,
  type ConnectOptions,
  call,
  connect,
  EXIT,
  print,
  table,
} from './client.ts';
import { withConnect } from './cluster_cmds.ts';
import type { CliContext } from './context.ts';
import { callWithMembers, fetchMembers, label, type MemberRow, resolveNode } from './members.ts';
import { registerGcCommand } from './store_gc_cmd.ts';
import { registerTokenCommands } from './store_token_cmds.ts';

type Opts = ConnectOptions & { on?: string; to?: string[] };

const collect = (v: string, prev: string[] = []): string[] => [...prev, v];
/** A fetch can take long: unless --timeout says otherwise, wait up to an hour. */
const FETCH_TIMEOUT_S = '3600';
const PROGRESS_MS = 200;

function mib(n: unknown): string {
  return `${(Number(n) / 2 ** 20).toFixed(1)} MiB`;
}

function bar(p: { paths: number; pathsDone: number; bytes: number; bytesDone: number }): string {
  const frac = p.bytes > 0 ? p.bytesDone / p.bytes : p.paths > 0 ? p.pathsDone / p.paths : 1;
  const width = 30;
  const full = Math.round(frac * width);
  return `[${'#'.repeat(full)}${'.'.repeat(width - full)}] ${(frac * 100).toFixed(0).padStart(3)}%  ${p.pathsDone}/${p.paths} paths  ${mib(p.bytesDone)}/${mib(p.bytes)}`;
}

/** The address of the member `node` names (name, short ID, prefix or ID), asked of the member we reach. */
async function addrOf(o: Opts, node: string): Promise<string> {
  const r = await call(o, { op: 'members' });
  const ms = r.members as { id: string; name?: string; addrs: string[] }[];
  const id = resolveNode(node, ms);
  const m = ms.find((x) => x.id === id)!;
  const addr = m.addrs.find((a) => a.includes('/127.0.0.1/')) ?? m.addrs[0];
  if (addr === undefined) throw new CliError(`member ${node} has no address`, EXIT.unreachable);
  return addr.includes('/p2p/') ? addr : `${addr}/p2p/${m.id}`;
}

/** What the store holds first, then its traffic, then the rest, as answered. */
const STATS_ORDER = ['kind', 'paths', 'bytes', 'maxBytes', 'pinned', 'inQuarantine'];
const STATS_BYTES = new Set([
  'bytes',
  'maxBytes',
  'bytesServed',
  'bytesFetched',
  'cacheBytesServed',
  'uploadBytesReceived',
]);

/** `store stats` rows; byte counts also in MiB once they are large. */
export function statsRows(r: Record<string, unknown>): { counter: string; value: unknown }[] {
  const rank = (k: string): number => {
    const i = STATS_ORDER.indexOf(k);
    return i < 0 ? STATS_ORDER.length : i;
  };
  return Object.entries(r)
    .filter(([k]) => k !== 'ok')
    .sort(([a], [b]) => rank(a) - rank(b))
    .map(([k, v]) => ({
      counter: k,
      value: STATS_BYTES.has(k) && Number(v) >= 2 ** 20 ? `${v} (${mib(v)})` : v,
    }));
}

/** What `store push` did, for people: imported here, then fetched (or not) by each --to member. */
export function pushText(
  path: string,
  r: Record<string, unknown>,
  ms: readonly MemberRow[],
): string {
  const imported = Number(r.imported);
  return [
    imported === 0
      ? `${path}: already in the member's store (nothing imported)`
      : `${path}: ${plural(imported, 'path')} imported into the member's store`,
    ...(r.replicated as string[]).map((id) => `fetched by ${label(id, ms)}`),
    ...Object.entries(r.failed as Record<string, string>).map(
      ([id, why]) => `NOT fetched by ${label(id, ms)}: ${why}`,
    ),
  ].join('\n');
}

export function verifyText(r: Record<string, unknown>): string {
  const damaged = r.damaged as { path: string; reason: string }[];
  const left = r.quarantined as { path: string; reason: string }[];
  const failed = Object.entries(r.failed as Record<string, string>);
  return [
    `checked ${plural(Number(r.checked), 'path')} (${mib(r.bytes)}): ${damaged.length} damaged`,
    ...damaged.map((d) => `damaged       ${d.path}: ${d.reason}`),
    ...(r.repaired as string[]).map((p) => `repaired      ${p}`),
    ...failed.map(([p, why]) => `NOT repaired  ${p}: ${why}`),
    left.length === 0
      ? 'no damage remains'
      : `${plural(left.length, 'path')} ${left.length === 1 ? 'remains' : 'remain'} quarantined (pcr store verify --repair fetches ${left.length === 1 ? 'it' : 'them'} from the members):`,
    ...left.map((q) => `  ${q.path}: ${q.reason}`),
  ].join('\n');
}

/**
 * `store push` over an open connection (also `pcr deploy`'s push): the member imports `path`'s
 * closure from the Nix store of its machine, then each member `to` names fetches it. Resolves to
 * the member's answer (`imported`, `replicated`, `failed`).
 */
export async function pushPath(
  c: Connection,
  path: string,
  to: readonly string[] = [],
  ms: readonly MemberRow[] = [],
): Promise<Record<string, unknown>> {
  return c.request({ op: 'store.push', path, to: to.map((x) => resolveNode(x, ms)) });
}

/** A push can take long: unless --timeout says otherwise, `store push` and `deploy` wait an hour. */
export const PUSH_TIMEOUT_S = FETCH_TIMEOUT_S;

export function registerStoreCommands(program: Command, ctx: CliContext): void {
  const store = program.command('store').description("the cluster's Nix store");
  registerTokenCommands(store);
  registerGcCommand(store);

  withConnect(
    store.command('info <path>').description('a store path: its narinfo, or who holds it'),
  ).action(async (path: string, o: Opts) => {
    const { r, ms } = await callWithMembers(o, { op: 'store.info', path });
    print(o, r, () => {
      if (r.here !== true) {
        const holders = r.holders as string[];
        return holders.length === 0
          ? `${path}: not here, and no member holds it`
          : `${path}: not here; held by ${holders.map((id) => label(id, ms)).join(', ')}`;
      }
      const i = r.info as Record<string, unknown>;
      return [
        `StorePath: ${i.path}`,
        `NarHash: ${i.narHash}`,
        `NarSize: ${i.narSize}`,
        `References: ${(i.references as string[]).map((x) => x.slice(11)).join(' ')}`,
        ...(i.deriver !== undefined ? [`Deriver: ${String(i.deriver).slice(11)}`] : []),
        ...(i.sigs as string[]).map((s) => `Sig: ${s}`),
      ].join('\n');
    });
  });

  withConnect(store.command('where <path>').description('which members hold a store path')).action(
    async (path: string, o: Opts) => {
      const { r, ms } = await callWithMembers(o, { op: 'store.where', path });
      const holders = r.holders as string[];
      // Members that did not answer may hold it too (older members do not send the field).
      const silent = ((r.unanswered as string[] | undefined) ?? []).map((id) => label(id, ms));
      print(o, holders, () =>
        holders.length > 0
          ? holders.map((id) => label(id, ms)).join('\n')
          : silent.length > 0
            ? `no member that answered holds ${path}`
            : `no member holds ${path}`,
      );
      if (silent.length > 0)
        ctx.io.err(
          `pcr: ${plural(silent.length, 'member')} did not answer: ${silent.join(', ')}\n`,
        );
      // Not found only when every member answered; else nobody can tell (as for a member down).
      if (holders.length === 0) ctx.exitCode = silent.length > 0 ? EXIT.unreachable : EXIT.notFound;
    },
  );

  withConnect(
    store
      .command('fetch <path>')
      .description("fetch a path's closure from the members that hold it, verified"),
  )
    .option('--on <node>', 'fetch onto this member instead of the one we talk to')
    .action(async (path: string, o: Opts) => {
      const target: Opts = {
        ...o,
        timeout: o.timeout ?? FETCH_TIMEOUT_S,
        ...(o.on !== undefined ? { addr: await addrOf(o, o.on) } : {}),
      };
      const c = await connect(target);
      const progressId = randomBytes(8).toString('hex');
      const tty = process.stderr.isTTY === true && o.json !== true;
      let done = false;
      const poll = (async () => {
        while (!done) {
          await new Promise((r) => setTimeout(r, PROGRESS_MS));
          const p = await c.request({ op: 'store.progress', progressId }).catch(() => undefined);
          if (!done && tty && p?.progress !== undefined) {
            process.stderr.write(`\r${bar(p.progress as Parameters<typeof bar>[0])}`);
          }
        }
      })();
      try {
        const r = await c.request({ op: 'store.fetch', path, progressId });
        done = true;
        await poll;
        if (tty) process.stderr.write('\n');
        print(o, r, () =>
          Number(r.fetched) === 0
            ? `${path}: already here (${plural(Number(r.present), 'path')})`
            : `${path}: fetched ${plural(Number(r.fetched), 'path')} (${mib(r.bytes)}), ${r.present} already here, ${plural(Number(r.retries), 'retry', 'retries')}, from ${plural(Object.keys(r.fromPeers as object).length, 'member')}`,
        );
      } finally {
        done = true;
        await c.close();
      }
    });

  withConnect(
    store
      .command('push <path>')
      .description('make a path of the local Nix store available to the cluster (its closure)'),
  )
    .option('--to <node>', 'also have this member fetch it (repeatable)', collect)
    .action(async (path: string, o: Opts) => {
      const c = await connect({ ...o, timeout: o.timeout ?? FETCH_TIMEOUT_S });
      let r: Record<string, unknown>;
      let ms: Awaited<ReturnType<typeof fetchMembers>>;
      try {
        ms = o.to !== undefined || o.json !== true ? await fetchMembers(c) : [];
        r = await pushPath(c, path, o.to ?? [], ms);
      } finally {
        await c.close();
      }
      const failed = r.failed as Record<string, string>;
      print(o, r, () => pushText(path, r, ms));
      if (Object.keys(failed).length > 0) ctx.exitCode = EXIT.failed;
    });

  withConnect(
    store
      .command('verify')
      .description("check every NAR of the member's store; damaged ones are quarantined"),
  )
    .option('--repair', 'fetch the damaged paths again from the members')
    .action(async (o: Opts & { repair?: boolean }) => {
      const r = await call(
        { ...o, timeout: o.timeout ?? FETCH_TIMEOUT_S },
        { op: 'store.verify', repair: o.repair === true },
      );
      print(o, r, () => verifyText(r));
      // Damage that remains (found now or earlier, not repaired) is the refused-data code.
      // (ctx.exitCode, not process.exitCode: the dispatcher exits with ctx's.)
      if ((r.quarantined as unknown[]).length > 0) ctx.exitCode = EXIT.corrupt;
    });

  withConnect(store.command('stats').description("the member's store: size and counters")).action(
    async (o: Opts) => {
      const r = await call(o, { op: 'store.stats' });
      print(o, r, () => table(statsRows(r), ['counter', 'value']));
    },
  );
}
