// `pcr top`: a live view of the cluster, refreshed every second, over the same API as the other
// commands (status, nodes, members, vm.list, store.stats on one connection). Three views: nodes
// (health, load, memory, VMs), VMs (state), store (traffic of the member we talk to); keys switch
// view and sort; q or Ctrl-C leaves with the terminal as it was (alternate screen, cursor, raw
// mode restored, also on an error). `--once` prints one frame without escapes (scripts, no TTY).
// renderFrame is pure: the tests drive it directly and through a pseudo-terminal.

import type { Command } from 'commander';
import { shortId } from '../names.ts';
import { CliError, type Connection, type ConnectOptions, connect, EXIT } from './client.ts';
import { duration, withConnect } from './cluster_cmds.ts';
import type { CliContext } from './context.ts';
import { label, type MemberRow } from './members.ts';

/** How often the view refreshes. */
export const TOP_REFRESH_MS = 1000;
/** VMs and nodes shown at most (the rest are counted in a last line). */
export const TOP_ROWS_MAX = 200;

export type View = 'nodes' | 'vms' | 'store';
export const VIEWS: readonly View[] = ['nodes', 'vms', 'store'];
export const SORTS: Record<View, readonly string[]> = {
  nodes: ['name', 'load', 'mem', 'vms'],
  vms: ['name', 'node', 'state'],
  store: ['counter'],
};

export interface Sample {
  readonly atMs: number;
  readonly status: Record<string, unknown>;
  readonly nodes: Record<string, unknown>[];
  readonly members: MemberRow[];
  readonly vms: Record<string, unknown>[];
  readonly store: Record<string, unknown>;
}

export interface TopState {
  view: View;
  sort: string;
}

function pad(cells: readonly string[][], header: readonly string[]): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((r) => r[i]!.length)));
  const line = (xs: readonly string[]): string =>
    xs
      .map((x, i) => x.padEnd(widths[i]!))
      .join('  ')
      .trimEnd();
  return [line(header), ...cells.map(line)];
}

const mib = (b: number): string => `${Math.round(b / 2 ** 20)}`;

function nodeRows(s: Sample, sort: string): string[] {
  const vmsOn = (id: string): number => s.vms.filter((v) => v.node === id).length;
  const rows = s.nodes.map((n) => {
    const id = String(n.id);
    const used = Number(n.memTotal) - Number(n.memFree);
    return {
      name: s.members.find((m) => m.id === id)?.name ?? '-',
      id,
      load: Number(n.load1),
      mem: used / Math.max(1, Number(n.memTotal)),
      vms: vmsOn(id),
      cells: [
        s.members.find((m) => m.id === id)?.name ?? '-',
        shortId(id),
        String(n.health),
        String(n.cpus),
        Number(n.load1).toFixed(2),
        `${mib(used)}/${mib(Number(n.memTotal))} MiB`,
        String(vmsOn(id)),
        duration(Number(n.uptimeS)),
      ],
    };
  });
  const key = sort as 'name' | 'load' | 'mem' | 'vms';
  rows.sort((a, b) =>
    key === 'name' ? a.name.localeCompare(b.name) : (b[key] as number) - (a[key] as number),
  );
  return pad(
    rows.slice(0, TOP_ROWS_MAX).map((r) => r.cells),
    ['NAME', 'ID', 'HEALTH', 'CPUS', 'LOAD1', 'MEM', 'VMS', 'UPTIME'],
  );
}

function vmRows(s: Sample, sort: string): string[] {
  const rows = s.vms.map((v) => ({
    name: String(v.name),
    version: v.version === undefined ? '-' : String(v.version),
    node: label(String(v.node), s.members),
    state: String(v.state),
    desired: String(v.desired),
    reason: v.reason === undefined ? '' : String(v.reason),
  }));
  const key = sort as 'name' | 'node' | 'state';
  rows.sort((a, b) => a[key].localeCompare(b[key]) || a.name.localeCompare(b.name));
  if (rows.length === 0) return ['no VMs: start one with pcr vm run SPEC --on NODE'];
  return pad(
    rows
      .slice(0, TOP_ROWS_MAX)
      .map((r) => [r.name, r.version, r.node, r.desired, r.state, r.reason]),
    ['NAME', 'VERSION', 'NODE', 'DESIRED', 'STATE', 'REASON'],
  );
}

function storeRows(s: Sample, prev: Sample | undefined): string[] {
  const seconds = prev === undefined ? 0 : (s.atMs - prev.atMs) / 1000;
  const rows = Object.entries(s.store)
    .filter(([k, v]) => k !== 'ok' && typeof v === 'number')
    .map(([k, v]) => {
      const before = prev?.store[k];
      const rate =
        seconds > 0 && typeof before === 'number' ? ((v as number) - before) / seconds : undefined;
      return [k, String(v), rate === undefined ? '-' : `${rate.toFixed(1)}/s`];
    });
  return pad(rows, ['COUNTER', 'VALUE', 'RATE']);
}

/** One frame: a header (leader, term, commit rate, counts), the view's table, the keys. */
export function renderFrame(
  s: Sample,
  prev: Sample | undefined,
  state: TopState,
  rowsMax = Number.POSITIVE_INFINITY,
): string[] {
  const st = s.status;
  const seconds = prev === undefined ? 0 : (s.atMs - prev.atMs) / 1000;
  const commitRate =
    seconds > 0
      ? `${((Number(st.commit) - Number(prev!.status.commit)) / seconds).toFixed(1)}/s`
      : '-';
  const healthy = s.nodes.filter((n) => n.health === 'alive').length;
  const header = [
    `pcr top  ${new Date(s.atMs).toISOString().slice(11, 19)}  via ${label(String(st.id), s.members)}`,
    `leader ${label(String(st.leader), s.members)}  term ${st.term}  commit ${st.commit}  commits ${commitRate}`,
    `members ${s.members.length}  nodes ${healthy}/${s.nodes.length} alive  vms ${s.vms.length} (${s.vms.filter((v) => v.state === 'running').length} running)`,
    '',
  ];
  const body =
    state.view === 'nodes'
      ? nodeRows(s, state.sort)
      : state.view === 'vms'
        ? vmRows(s, state.sort)
        : storeRows(s, prev);
  const keys = `[n]odes [v]ms [s]tore  [o] sort: ${state.sort}  [q]uit   view: ${state.view}`;
  const room = Math.max(1, rowsMax - header.length - 2);
  const shown =
    body.length > room ? [...body.slice(0, room - 1), `... ${body.length - room + 1} more`] : body;
  return [...header, ...shown, '', keys];
}

/** The next state after a key press, or 'quit'. */
export function onKey(state: TopState, key: string): TopState | 'quit' {
  if (key === 'q' || key === '\u0003') return 'quit';
  const view = key === 'n' ? 'nodes' : key === 'v' ? 'vms' : key === 's' ? 'store' : undefined;
  if (view !== undefined) return { view, sort: SORTS[view][0]! };
  if (key === '\t') {
    const next = VIEWS[(VIEWS.indexOf(state.view) + 1) % VIEWS.length]!;
    return { view: next, sort: SORTS[next][0]! };
  }
  if (key === 'o') {
    const sorts = SORTS[state.view];
    return { ...state, sort: sorts[(sorts.indexOf(state.sort) + 1) % sorts.length]! };
  }
  return state;
}

async function sample(c: Connection): Promise<Sample> {
  const [status, nodes, members, vms, store] = await Promise.all([
    c.request({ op: 'status' }),
    c.request({ op: 'nodes' }),
    c.request({ op: 'members' }),
    c.request({ op: 'vm.list', stale: true }),
    c.request({ op: 'store.stats' }).catch(() => ({})),
  ]);
  return {
    atMs: Date.now(),
    status,
    nodes: (nodes.nodes as Record<string, unknown>[]) ?? [],
    members: (members.members as MemberRow[]) ?? [],
    vms: (vms.vms as Record<string, unknown>[]) ?? [],
    store: store as Record<string, unknown>,
  };
}

const ENTER = '\x1b[?1049h\x1b[?25l';
const LEAVE = '\x1b[?25h\x1b[?1049l';

/** Runs the live view until q or Ctrl-C; the terminal is restored whatever happens. */
async function live(c: Connection, out: NodeJS.WriteStream): Promise<void> {
  const stdin = process.stdin;
  let state: TopState = { view: 'nodes', sort: 'name' };
  let prev: Sample | undefined;
  let last: Sample | undefined;
  let quit: () => void = () => {};
  const done = new Promise<void>((r) => {
    quit = r;
  });
  const draw = (): void => {
    if (last === undefined) return;
    const rows = out.rows ?? 40;
    out.write(`\x1b[H\x1b[2J${renderFrame(last, prev, state, rows).join('\n')}`);
  };
  const onData = (d: Buffer): void => {
    for (const ch of d.toString('utf8')) {
      const next = onKey(state, ch);
      if (next === 'quit') return quit();
      state = next;
    }
    draw();
  };
  out.write(ENTER);
  stdin.setRawMode?.(true);
  stdin.on('data', onData);
  stdin.resume();
  process.once('SIGTERM', quit);
  process.once('SIGINT', quit);
  const timer = setInterval(() => void tick(), TOP_REFRESH_MS);
  let failed: unknown;
  const tick = async (): Promise<void> => {
    try {
      const s = await sample(c);
      prev = last;
      last = s;
      draw();
    } catch (e) {
      failed = e;
      quit();
    }
  };
  try {
    await tick();
    await done;
  } finally {
    clearInterval(timer);
    stdin.off('data', onData);
    stdin.setRawMode?.(false);
    stdin.pause();
    process.off('SIGTERM', quit);
    process.off('SIGINT', quit);
    out.write(LEAVE);
  }
  if (failed !== undefined) throw failed;
}

export function register(program: Command, ctx: CliContext): void {
  withConnect(
    program
      .command('top')
      .description('a live view of the cluster: leader, nodes, VMs, store traffic (q to quit)'),
  )
    .option('--once', 'print one frame and exit (no terminal needed)')
    .action(async (o: ConnectOptions & { once?: boolean }) => {
      const c = await connect(o);
      try {
        if (o.once === true || o.json === true) {
          const s = await sample(c);
          ctx.io.out(
            o.json === true
              ? `${JSON.stringify(s)}\n`
              : `${renderFrame(s, undefined, { view: 'nodes', sort: 'name' }).join('\n')}\n`,
          );
          return;
        }
        if (process.stdout.isTTY !== true || process.stdin.isTTY !== true) {
          throw new CliError('pcr top needs a terminal', EXIT.usage, {
            hint: 'use pcr top --once (or --json) for one frame',
          });
        }
        await live(c, process.stdout);
      } finally {
        await c.close();
      }
    });
}
