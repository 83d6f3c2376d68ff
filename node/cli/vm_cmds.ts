// `pcr vm ...`: run a VM (the cluster places it), plan, list, status with events, console logs,
// stop, remove.
// `vm run` and `vm stop` wait for the outcome the node reports through Raft (like `nomad job run`
// monitoring its evaluation) unless --detach: exit 0 running/stopped, 8 failed with the reason.

import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { formatSpecErrors, validateVmSpec } from '../state/vm_spec.ts';
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
import { type CliContext, integerOption } from './context.ts';
import { fetchMembers, label, type MemberRow, resolveNode } from './members.ts';

type Opts = ConnectOptions & { on?: string; detach?: boolean; wait?: number; follow?: boolean };

interface VmView {
  name: string;
  group?: string;
  node: string;
  placement?: string;
  generation: number;
  /** 1 for the first spec of the name, +1 per replacement (the Raft index is `generation`). */
  version: number;
  desired: string;
  state: string;
  reason?: string;
  spec: Record<string, unknown>;
  events: { atMs: number; generation: number; version?: number; state: string; reason?: string }[];
  /** The verdict of its health checks (vm.health), when its node has given one. */
  health?: {
    generation: number;
    healthy: boolean;
    sinceMs: number;
    check: string;
    message?: string;
  };
}

/** `12:01:07`, with the date in front when it is not today's. */
function clockTime(ms: number, nowMs: number): string {
  const d = new Date(ms);
  const time = d.toTimeString().slice(0, 8);
  return d.toDateString() === new Date(nowMs).toDateString()
    ? time
    : `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, '0')}-${String(d.getDate()).padStart(2, '0')} ${time}`;
}

/**
 * A VM's health as `vm status` shows it: `healthy since 12:01:07`, `unhealthy: http
 * 10.0.0.2:80/health: 503`, `checking` while its node has no verdict yet; undefined for a VM
 * without checks (healthy while it runs).
 */
export function healthText(
  v: Pick<VmView, 'generation' | 'spec' | 'health'>,
  nowMs: number,
): string | undefined {
  const checks = v.spec.health;
  if (!Array.isArray(checks) || checks.length === 0) return undefined;
  const h = v.health?.generation === v.generation ? v.health : undefined;
  if (h === undefined) return 'checking';
  if (h.healthy) return `healthy since ${clockTime(h.sinceMs, nowMs)}`;
  return `unhealthy: ${h.check}${h.message !== undefined ? `: ${h.message}` : ''}`;
}

/** The one word of `vm list`'s health column (undefined: no checks, shown as -). */
export function healthWord(v: Pick<VmView, 'generation' | 'spec' | 'health'>): string | undefined {
  const text = healthText(v, 0);
  return text === undefined ? undefined : (text.split(/[ :]/)[0] as string);
}

/** How often `vm run`, `vm stop` and `vm logs --follow` ask again. */
const POLL_MS = 250;
const LOGS_FOLLOW_MS = 1000;

async function readSpec(file: string): Promise<unknown> {
  let text: string;
  try {
    text = file === '-' ? await readStdin() : await readFile(file, 'utf8');
  } catch (e) {
    throw new CliError(`cannot read the spec ${file}: ${(e as Error).message}`, EXIT.usage);
  }
  let spec: unknown;
  try {
    spec = JSON.parse(text);
  } catch (e) {
    throw new CliError(`${file} is not JSON: ${(e as Error).message}`, EXIT.usage);
  }
  const r = validateVmSpec(spec);
  if (!r.ok) throw new CliError(`${file}: ${formatSpecErrors(r.errors)}`, EXIT.usage);
  return spec;
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * Polls the VM until `done` says so, printing each new state to stderr; returns the last view.
 * Throws a timeout CliError after `waitS` seconds.
 */
async function watch(
  c: Connection,
  name: string,
  generation: number,
  waitS: number,
  done: (v: VmView) => boolean,
): Promise<VmView> {
  const deadline = Date.now() + waitS * 1000;
  let last = '';
  for (;;) {
    const v = (await c.request({ op: 'vm.get', name })).vm as VmView;
    if (v.generation !== generation) {
      throw new CliError(
        `${name} was replaced (now version ${v.version}) while waiting`,
        EXIT.failed,
      );
    }
    const now = `${v.state}${v.reason !== undefined ? `: ${v.reason}` : ''}`;
    if (now !== last) {
      process.stderr.write(`${new Date().toISOString()}  ${name}  ${now}\n`);
      last = now;
    }
    if (done(v)) return v;
    if (Date.now() > deadline) {
      throw new CliError(
        `${name} is still ${v.state} after ${waitS} s: see pcr vm status ${name}`,
        EXIT.timeout,
      );
    }
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}

/** --detach and --wait, for the commands that wait for the node's outcome. */
function withWait(cmd: Command, detach: string, defaultS: number): Command {
  return cmd
    .option('--detach', detach)
    .option(
      '--wait <seconds>',
      `give up waiting after this long (default ${defaultS})`,
      integerOption(1, 86_400),
    );
}

export function registerVmCommands(program: Command, ctx: CliContext): void {
  const vm = program.command('vm').description('microVMs: run on a node, list, status, logs, stop');

  const run = withConnect(
    vm
      .command('run <spec>')
      .description(
        'run the VM a spec file describes (- for stdin); the cluster places it and says where and why; waits until it runs',
      ),
  ).option(
    '--on <node>',
    'only on this node (the constraint name = NODE): a name, a short ID, or a peer ID (or a unique prefix)',
  );
  withWait(run, 'return once the VM is committed, without waiting for it to run', 300).action(
    async (file: string, o: Opts) => {
      const spec = await readSpec(file);
      const c = await connect(o);
      try {
        const ms = await fetchMembers(c);
        const on = o.on !== undefined ? { node: resolveNode(o.on, ms) } : {};
        const r = await c.request({ op: 'vm.run', spec, ...on });
        const rows = r.vms as VmView[];
        // Where and why, on stderr (stdout keeps --json's one object).
        for (const v of rows) {
          const where =
            v.node !== ''
              ? v.placement !== undefined
                ? `${v.placement} (${label(v.node, ms)})`
                : `on ${label(v.node, ms)}`
              : `not placed${v.placement !== undefined ? `: ${v.placement}` : ' yet'}`;
          process.stderr.write(`${v.name}: ${where}\n`);
        }
        const stuck = rows.filter((v) => v.node === '' && v.placement !== undefined);
        if (stuck.length > 0) {
          throw new CliError(
            `${stuck.map((v) => v.placement).join('\n')}\n(committed: it stays pending and is placed when a node has room)`,
            EXIT.unplaceable,
          );
        }
        if (o.detach === true) {
          print(o, rows, () => rows.map((v) => `${v.name} committed`).join('\n'));
          return;
        }
        const done: VmView[] = [];
        for (const put of rows) {
          done.push(
            await watch(c, put.name, put.generation, o.wait ?? 300, (x) =>
              ['running', 'failed', 'stopped'].includes(x.state),
            ),
          );
        }
        print(o, done.length === 1 ? done[0] : done, () =>
          done.map((v) => `${v.name} ${v.state} on ${label(v.node, ms)}`).join('\n'),
        );
        const bad = done.find((v) => v.state !== 'running');
        if (bad !== undefined) {
          throw new CliError(
            `${bad.name} ${bad.state}${bad.reason !== undefined ? `: ${bad.reason}` : ''}`,
            EXIT.vmFailed,
          );
        }
      } finally {
        await c.close();
      }
    },
  );

  withConnect(
    vm
      .command('plan <spec>')
      .description('where the cluster would place a spec now, with scores; commits nothing'),
  )
    .option('--on <node>', 'only on this node (the constraint name = NODE)')
    .action(async (file: string, o: Opts) => {
      const spec = await readSpec(file);
      const c = await connect(o);
      try {
        const ms = await fetchMembers(c);
        const on = o.on !== undefined ? { node: resolveNode(o.on, ms) } : {};
        const r = await c.request({ op: 'vm.plan', spec, ...on });
        const placements = r.placements as {
          instance: string;
          node: string;
          score: Record<string, number>;
          scored: number;
        }[];
        const failures = r.failures as { instance: string; message: string }[];
        print(o, r, () =>
          [
            placements.length > 0
              ? table(
                  placements.map((p) => ({
                    instance: p.instance,
                    node: label(p.node, ms),
                    score: p.score.total!.toFixed(3),
                    fit: p.score.fit!.toFixed(3),
                    spread: p.score.spread!.toFixed(3),
                    affinity: p.score.affinity!.toFixed(3),
                    ranked: p.scored,
                  })),
                  ['instance', 'node', 'score', 'fit', 'spread', 'affinity', 'ranked'],
                )
              : '',
            ...failures.map((f) => f.message),
            ...(r.unplaceable !== undefined ? [String(r.unplaceable)] : []),
          ]
            .filter((x) => x !== '')
            .join('\n'),
        );
        if (failures.length > 0) ctx.exitCode = EXIT.unplaceable;
      } finally {
        await c.close();
      }
    });

  withConnect(vm.command('list').description('VMs of the cluster (or of one node)'))
    .option('--on <node>', 'only the VMs of this node')
    .action(async (o: Opts) => {
      const c = await connect(o);
      let r: Record<string, unknown>;
      let ms: Awaited<ReturnType<typeof fetchMembers>>;
      try {
        ms = await fetchMembers(c);
        const node = o.on !== undefined ? resolveNode(o.on, ms) : undefined;
        r = await c.request({ op: 'vm.list', ...(node !== undefined ? { node } : {}) });
      } finally {
        await c.close();
      }
      const vms = (r.vms as VmView[]).map((v) => ({
        ...v,
        node: v.node === '' ? '(not placed)' : label(v.node, ms),
        reason: v.reason,
        memory: `${v.spec.memoryMiB} MiB`,
        health: healthWord(v),
      }));
      print(o, r.vms, () =>
        table(vms, ['name', 'version', 'node', 'desired', 'state', 'health', 'memory', 'reason']),
      );
    });

  withConnect(
    vm.command('status <name>').description('a VM (or a group of instances): spec, state, events'),
  ).action(async (name: string, o: Opts) => {
    const c = await connect(o);
    let found: Record<string, unknown>;
    let ms: MemberRow[];
    try {
      found = await c.request({ op: 'vm.get', name }).catch(async (e: unknown) => {
        // A group's name: its instances, one line each.
        if (!(e instanceof CliError) || e.exitCode !== EXIT.notFound) throw e;
        const g = await c.request({ op: 'vm.list', group: name });
        if ((g.vms as VmView[]).length === 0) throw e;
        return g;
      });
      // Tables name nodes; --json keeps the IDs.
      ms = o.json === true ? [] : await fetchMembers(c);
    } finally {
      await c.close();
    }
    const nodeOf = (id: string): string => (id === '' ? '(not placed)' : label(id, ms));
    if (found.vms !== undefined) {
      const rows = found.vms as VmView[];
      print(o, rows, () =>
        table(
          rows.map((r) => ({ ...r, node: nodeOf(r.node), health: healthWord(r) })),
          ['name', 'version', 'node', 'desired', 'state', 'health', 'placement'],
        ),
      );
      return;
    }
    const v = found.vm as VmView;
    const health = healthText(v, Date.now());
    print(o, v, () =>
      [
        `name        ${v.name}`,
        `node        ${nodeOf(v.node)}`,
        ...(v.placement !== undefined ? [`placement   ${v.placement}`] : []),
        `desired     ${v.desired}`,
        `state       ${v.state}${v.reason !== undefined ? ` (${v.reason})` : ''}`,
        ...(health !== undefined ? [`health      ${health}`] : []),
        `version     ${v.version}`,
        `spec        ${JSON.stringify(v.spec)}`,
        '',
        table(
          v.events.map((e) => ({
            time: e.atMs > 0 ? new Date(e.atMs).toISOString() : '-',
            ...e,
          })),
          ['time', 'version', 'state', 'reason'],
        ),
      ].join('\n'),
    );
  });

  withConnect(vm.command('logs <name>').description("a VM's serial console, from its node"))
    .option('--follow', 'keep printing what the console writes')
    .action(async (name: string, o: Opts) => {
      const c = await connect(o);
      try {
        let offset: number | undefined;
        for (;;) {
          const r = await c.request({
            op: 'vm.logs',
            name,
            ...(offset !== undefined ? { offset } : {}),
          });
          process.stdout.write(r.data as string);
          offset = r.next as number;
          if (o.follow !== true) return;
          await new Promise((res) => setTimeout(res, LOGS_FOLLOW_MS));
        }
      } finally {
        await c.close();
      }
    });

  withWait(
    withConnect(
      vm.command('stop <name>').description('stop a VM (it stays listed); waits until stopped'),
    ),
    'return once the stop is committed',
    120,
  ).action(async (name: string, o: Opts) => {
    const c = await connect(o);
    try {
      const v = (await c.request({ op: 'vm.stop', name })).vm as VmView;
      if (o.detach === true) {
        print(o, v, () => `${name}: stop committed`);
        return;
      }
      const end = await watch(c, name, v.generation, o.wait ?? 120, (x) =>
        ['stopped', 'failed'].includes(x.state),
      );
      print(o, end, () => `${name} ${end.state}`);
      if (end.state === 'failed') {
        throw new CliError(`${name} failed: ${end.reason ?? 'no reason given'}`, EXIT.vmFailed);
      }
    } finally {
      await c.close();
    }
  });

  withConnect(
    vm.command('rm <name>').description('remove a VM; its node stops it if it runs'),
  ).action(async (name: string, o: Opts) => {
    const r = await call(o, { op: 'vm.rm', name });
    print(o, r, () => `${name} removed`);
  });
}
