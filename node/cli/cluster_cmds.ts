// `pcr` commands that talk to a running cluster: status, members, nodes, kv, operator raft.

import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { VALUE_BYTES_MAX } from '../state/kv_limits.ts';
import { CliError, type ConnectOptions, call, connect, EXIT, print, table } from './client.ts';
import {
  address,
  fetchMembers,
  label,
  type MemberRow,
  nameOf,
  resolveNode,
  resolveNodeOver,
  shortId,
} from './members.ts';

/** `3d 4h`, `5h 2m`, `4m 10s`, `12s`. */
export function duration(s: number): string {
  if (!Number.isFinite(s) || s < 0) return '-';
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = Math.floor(s % 60);
  if (d > 0) return `${d}d ${h}h`;
  if (h > 0) return `${h}h ${m}m`;
  if (m > 0) return `${m}m ${sec}s`;
  return `${sec}s`;
}

/** Options every client command takes. */
export function withConnect(cmd: Command): Command {
  return cmd
    .option('--addr <multiaddr>', 'a member to talk to (default: PCR_ADDR, or the local node)')
    .option('--data-dir <dir>', "the local node's data dir (its address and the cluster secret)")
    .option(
      '--secret-file <file>',
      'the cluster secret (default: PCR_SECRET_FILE, or the data dir)',
    )
    .option('--timeout <seconds>', 'give up after this long (default 15)')
    .option('--json', 'print JSON for machines');
}

type Opts = ConnectOptions & { stale?: boolean; limit?: string; absent?: boolean };

/**
 * A value from exactly one source: the argument, standard input (`-`) or a file; refused at once,
 * before any connection, when it is longer than the state machine's VALUE_BYTES_MAX.
 */
async function valueFrom(arg: string | undefined, file: string | undefined): Promise<string> {
  if ((arg === undefined) === (file === undefined)) {
    throw new CliError(
      'give the value once: as an argument, - to read standard input, or --file PATH',
      EXIT.usage,
    );
  }
  let value: string;
  if (file !== undefined) {
    value = await readFile(file, 'utf8').catch((e: NodeJS.ErrnoException) => {
      throw new CliError(
        `--file ${file}: ${e.code === 'ENOENT' ? 'no such file' : e.message}`,
        EXIT.usage,
      );
    });
  } else if (arg === '-') {
    const chunks: Buffer[] = [];
    let bytes = 0;
    for await (const c of process.stdin as AsyncIterable<Buffer>) {
      bytes += c.length;
      // Stop reading once over the bound: the value is refused whatever follows.
      if (bytes > VALUE_BYTES_MAX) break;
      chunks.push(c);
    }
    if (bytes > VALUE_BYTES_MAX) throw tooLong(`more than ${VALUE_BYTES_MAX}`);
    value = Buffer.concat(chunks).toString('utf8');
  } else {
    value = arg!;
  }
  const size = Buffer.byteLength(value);
  if (size > VALUE_BYTES_MAX) throw tooLong(String(size));
  return value;
}

function tooLong(size: string): CliError {
  return new CliError(
    `the value is ${size} bytes, longer than VALUE_BYTES_MAX (${VALUE_BYTES_MAX} bytes): ` +
      'store large data in the Nix store (pcr store push) and put its path here',
    EXIT.usage,
  );
}

function members(value: Record<string, unknown>): Record<string, unknown>[] {
  return (value.members as Record<string, unknown>[]) ?? [];
}

/** Member rows for a table: name, short ID, first address; the rest as answered. */
function memberRows(value: Record<string, unknown>): Record<string, unknown>[] {
  return members(value).map((m) => ({
    ...m,
    name: m.name ?? '-',
    id: shortId(String(m.id)),
    address: address(m.addrs as string[] | undefined),
  }));
}

export function registerClusterCommands(program: Command): void {
  withConnect(
    program.command('status').description('leader, term, commit and applied index, members'),
  ).action(async (o: Opts) => {
    const r = await call(o, { op: 'status' });
    const ms = members(r) as unknown as MemberRow[];
    print(o, r, () =>
      [
        `node     ${label(String(r.id), ms)}`,
        `state    ${r.state}`,
        `leader   ${label(String(r.leader), ms)}`,
        `term     ${r.term}`,
        `commit   ${r.commit}`,
        `applied  ${r.applied}`,
        '',
        table(memberRows(r), ['name', 'id', 'role', 'leader', 'match', 'active', 'address']),
      ].join('\n'),
    );
  });

  withConnect(
    program.command('members').description('members of the cluster and their roles'),
  ).action(async (o: Opts) => {
    const r = await call(o, { op: 'members' });
    print(o, r.members, () => table(memberRows(r), ['name', 'id', 'role', 'leader', 'address']));
  });

  withConnect(program.command('nodes').description('gossiped metrics of every node')).action(
    async (o: Opts) => {
      const c = await connect(o);
      const [r, m] = await Promise.all([
        c.request({ op: 'nodes' }),
        c.request({ op: 'members' }),
      ]).finally(() => c.close());
      const ms = members(m) as unknown as MemberRow[];
      const nodes = (r.nodes as Record<string, unknown>[]).map((n) => ({
        ...n,
        name: nameOf(String(n.id), ms) ?? '-',
        id: shortId(String(n.id)),
        mem: `${Math.round((Number(n.memTotal) - Number(n.memFree)) / 2 ** 20)}/${Math.round(Number(n.memTotal) / 2 ** 20)} MiB`,
        disk: `${Math.round(Number(n.diskFree) / 2 ** 30)} GiB free`,
        seen: `${(Number(n.lastSeenMs) / 1000).toFixed(1)}s ago`,
        uptime: duration(Number(n.uptimeS)),
      }));
      print(o, r.nodes, () =>
        table(nodes, [
          'name',
          'id',
          'health',
          'seen',
          'cpus',
          'load1',
          'mem',
          'disk',
          'vmms',
          'version',
          'uptime',
        ]),
      );
    },
  );

  const kv = program.command('kv').description('the replicated key-value space');
  withConnect(kv.command('get <key>').description('read a key (linearizable unless --stale)'))
    .option('--stale', 'read the local state without asking the leader')
    .action(async (key: string, o: Opts) => {
      const r = await call(o, { op: 'kv.get', key, stale: o.stale === true });
      print(o, r, () => String(r.value));
    });
  withConnect(
    kv
      .command('put <key> [value]')
      .description('write a key: the value as an argument, - for standard input, or --file'),
  )
    .option('--file <path>', 'read the value from a file')
    .action(async (key: string, value: string | undefined, o: Opts & { file?: string }) => {
      const v = await valueFrom(value, o.file);
      const r = await call(o, { op: 'kv.put', key, value: v });
      print(o, r, () => `revision ${r.revision}`);
    });
  withConnect(kv.command('cas <key> <from> <to>').description('set <to> if the value is <from>'))
    .option(
      '--absent',
      'treat <from> as "the key does not exist" (pass any placeholder for <from>)',
    )
    .action(async (key: string, from: string, to: string, o: Opts) => {
      const r = await call(o, { op: 'kv.cas', key, from: o.absent === true ? null : from, to });
      print(o, r, () => `revision ${r.revision}`);
    });
  withConnect(kv.command('del <key>').description('delete a key')).action(
    async (key: string, o: Opts) => {
      const r = await call(o, { op: 'kv.del', key });
      print(o, r, () => `revision ${r.revision}`);
    },
  );
  withConnect(kv.command('list [prefix]').description('keys with a prefix, in order'))
    .option('--limit <n>', 'at most this many')
    .option('--stale', 'read the local state without asking the leader')
    .action(async (prefix: string | undefined, o: Opts) => {
      const r = await call(o, {
        op: 'kv.list',
        prefix: prefix ?? '',
        stale: o.stale === true,
        ...(o.limit !== undefined ? { limit: Number(o.limit) } : {}),
      });
      print(o, r.entries, () =>
        table(r.entries as Record<string, unknown>[], ['key', 'value', 'revision']),
      );
    });

  const raft = program
    .command('operator')
    .description('operator commands')
    .command('raft')
    .description('the Raft group');
  withConnect(
    raft.command('list-peers').description('voters and learners, with replication progress'),
  ).action(async (o: Opts) => {
    const r = await call(o, { op: 'status' });
    print(o, r.members, () =>
      table(memberRows(r), ['name', 'id', 'role', 'leader', 'match', 'active']),
    );
  });
  withConnect(
    raft
      .command('transfer-leader [node]')
      .description('move leadership (to the most caught-up voter by default)'),
  ).action(async (node: string | undefined, o: Opts) => {
    const c = await connect(o);
    try {
      const ms = await fetchMembers(c);
      const to = node !== undefined ? resolveNode(node, ms) : undefined;
      const r = await c.request({ op: 'raft.transfer', ...(to !== undefined ? { to } : {}) });
      print(o, r, () => `leader is now ${label(String(r.leader), ms)}`);
    } finally {
      await c.close();
    }
  });
  withConnect(
    raft.command('remove-peer <node>').description('remove a member from the Raft group'),
  ).action(async (node: string, o: Opts) => {
    const c = await connect(o);
    try {
      const id = await resolveNodeOver(c, node);
      const r = await c.request({ op: 'raft.remove', id });
      print(o, r, () => `removed ${node} (${id})`);
    } finally {
      await c.close();
    }
  });
}
