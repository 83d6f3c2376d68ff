// `pcr node list | status NODE | drain NODE | eligibility NODE on|off`: the node table placement
// decides from (docs/scheduling.md): status (ready, down, draining, ineligible), allocated against
// capacity, labels, and the VMs each node holds. Like `nomad node status` and `nomad node drain`.

import type { Command } from 'commander';
import { CliError, type ConnectOptions, connect, EXIT, print, table } from './client.ts';
import { withConnect } from './cluster_cmds.ts';
import { durationOption } from './context.ts';
import { fetchMembers, resolveNode, shortId } from './members.ts';

interface NodeRow {
  id: string;
  name: string;
  status: string;
  arch: string;
  labels: Record<string, string>;
  backends: string[];
  capacity: { cpus: number; memoryMiB: number };
  allocated: { cpus: number; memoryMiB: number };
  vms: { name: string; state: string; desired: string }[];
  drainDeadlineMs?: number;
  eligible: boolean;
}

type Opts = ConnectOptions & { deadline?: number; cancel?: boolean };

async function nodeTable(o: ConnectOptions): Promise<NodeRow[]> {
  const c = await connect(o);
  try {
    return (await c.request({ op: 'node.list' })).nodes as NodeRow[];
  } finally {
    await c.close();
  }
}

const used = (n: NodeRow): string =>
  `${n.allocated.cpus}/${n.capacity.cpus} cpus, ${n.allocated.memoryMiB}/${n.capacity.memoryMiB} MiB`;

const labelText = (l: Record<string, string>): string =>
  Object.entries(l)
    .map(([k, v]) => `${k}=${v}`)
    .join(',');

export function registerNodePlacementCommands(node: Command): void {
  withConnect(
    node.command('list').description('every node: status, allocated / capacity, labels, VMs'),
  ).action(async (o: Opts) => {
    const nodes = await nodeTable(o);
    print(o, nodes, () =>
      table(
        nodes.map((n) => ({
          name: n.name,
          id: shortId(n.id),
          status: n.status,
          allocated: used(n),
          vms: n.vms.length,
          labels: labelText(n.labels),
        })),
        ['name', 'id', 'status', 'allocated', 'vms', 'labels'],
      ),
    );
  });

  withConnect(
    node.command('status <node>').description('one node: attributes, capacity, VMs'),
  ).action(async (which: string, o: Opts) => {
    const c = await connect(o);
    let nodes: NodeRow[];
    let id: string;
    try {
      id = resolveNode(which, await fetchMembers(c));
      nodes = (await c.request({ op: 'node.list' })).nodes as NodeRow[];
    } finally {
      await c.close();
    }
    const n = nodes.find((x) => x.id === id);
    if (n === undefined)
      throw new CliError(`${which} has not registered its capacity yet`, EXIT.notFound, {
        hint: 'a node registers once it has joined and probed its backends',
      });
    print(o, n, () =>
      [
        `name       ${n.name}`,
        `id         ${n.id}`,
        `status     ${n.status}${n.drainDeadlineMs !== undefined ? ` (drain deadline ${new Date(n.drainDeadlineMs).toISOString()})` : ''}`,
        `arch       ${n.arch}`,
        `backends   ${n.backends.join(', ') || '(none)'}`,
        `labels     ${labelText(n.labels) || '(none)'}`,
        `allocated  ${used(n)}`,
        '',
        n.vms.length > 0 ? table(n.vms, ['name', 'desired', 'state']) : 'no VMs',
      ].join('\n'),
    );
  });

  withConnect(
    node
      .command('drain <node>')
      .description(
        'move every VM off a node, one at a time (replacement placed first); it takes no new VMs',
      ),
  )
    .option(
      '--deadline <duration>',
      'after this long the VMs still there are moved at once (default 1h)',
      durationOption(0, 30 * 86_400_000),
    )
    .option('--cancel', 'end the drain (the node stays ineligible: pcr node eligibility NODE on)')
    .action(async (which: string, o: Opts) => {
      const c = await connect(o);
      try {
        const id = resolveNode(which, await fetchMembers(c));
        const r = await c.request({
          op: 'node.drain',
          node: id,
          ...(o.deadline !== undefined ? { deadlineMs: o.deadline } : {}),
          ...(o.cancel === true ? { cancel: true } : {}),
        });
        const stranded = (r.stranded as string[] | undefined) ?? [];
        print(o, r, () =>
          [
            o.cancel === true ? `${which}: drain cancelled` : `${which}: draining`,
            ...(stranded.length > 0
              ? [
                  `warning: no other node can hold ${stranded.join(', ')}: they will stop at the deadline and stay pending`,
                ]
              : []),
          ].join('\n'),
        );
      } finally {
        await c.close();
      }
    });

  withConnect(
    node
      .command('eligibility <node> <on|off>')
      .description('whether a node takes new VMs (off keeps what it runs)'),
  ).action(async (which: string, onOff: string, o: Opts) => {
    if (onOff !== 'on' && onOff !== 'off')
      throw new CliError(`eligibility is on or off, not ${JSON.stringify(onOff)}`, EXIT.usage);
    const c = await connect(o);
    try {
      const id = resolveNode(which, await fetchMembers(c));
      const r = await c.request({ op: 'node.eligibility', node: id, eligible: onOff === 'on' });
      print(o, r, () => `${which}: ${onOff === 'on' ? 'eligible' : 'ineligible'}`);
    } finally {
      await c.close();
    }
  });
}
