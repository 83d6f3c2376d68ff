// `pcr deploy ...`: deployments (docs/deploy.md). `pcr deploy REF` evaluates and builds a flake's
// `procurator.deployments.<name>` here, pushes the closure to the member and submits the version
// (node/deploy/flake.ts); `plan REF` shows what that would change against the cluster's current
// version (exit 0 none, 14 changes); `status`, `history`, `rollback` and `promote` ask the member.
// Nix's own error text is shown when Nix fails; nothing is submitted when any step before fails.

import type { Command } from 'commander';
import type { Request } from '../api/requests.ts';
import type { ClosurePathInfo } from '../deploy/diff.ts';
import {
  buildDeployment,
  DeployError,
  type DeployOutcome,
  type DeploySteps,
  deployFlake,
  deploymentNames,
  evaluateDeployment,
  resolveDeployRef,
} from '../deploy/flake.ts';
import { localClosure, type NixRunner, nixRunner } from '../deploy/nix_cli.ts';
import {
  type CurrentVersion,
  planDeploy,
  planText,
  type RunningInstance,
  walkClosure,
} from '../deploy/plan.ts';
import { gitLsRemote, runWatch, type WatchEvent, watchEventText } from '../deploy/watch.ts';
import {
  WATCH_INTERVAL_MS_DEFAULT,
  WATCH_INTERVAL_MS_MAX,
  WATCH_INTERVAL_MS_MIN,
  watchSource,
} from '../deploy/watch_decision.ts';
import { plural } from '../plural.ts';
import {
  CliError,
  type Connection,
  type ConnectOptions,
  connect,
  EXIT,
  print,
  table,
} from './client.ts';
import { withConnect } from './cluster_cmds.ts';
import { type CliContext, durationOption, integerOption } from './context.ts';
import { fetchMembers, nameOf, shortId } from './members.ts';
import { onStopSignals } from './stop_signals.ts';
import { PUSH_TIMEOUT_S, pushPath } from './store_cmds.ts';

type Opts = ConnectOptions & { dryRun?: boolean; to?: number };

/** The deploy.* requests of docs/deploy.md (node/api/requests.ts). */
type DeployRequest = Extract<Request, { op: `deploy.${string}` }>;

function deployRequest(c: Connection, req: DeployRequest): Promise<Record<string, unknown>> {
  return c.request(req);
}

async function withConnection<T>(o: ConnectOptions, f: (c: Connection) => Promise<T>): Promise<T> {
  const c = await connect(o);
  try {
    return await f(c);
  } finally {
    await c.close();
  }
}

/** The committed deployment as the member answers it (docs/deploy.md Deployment). */
interface DeploymentView {
  name: string;
  versions: {
    n: number;
    spec: Record<string, unknown>;
    update?: Record<string, unknown>;
    source?: Record<string, unknown>;
  }[];
  knownGood?: number;
  rollout?: {
    from?: number;
    to: number;
    state: string;
    startedAtMs: number;
    progressAtMs?: number;
    promoted?: boolean;
    reason?: string;
  };
}

/** A DeployError as the user sees it: what failed, Nix's text under it, the exit code. */
export function cliErrorOf(e: DeployError): CliError {
  const message = e.nixText === '' ? e.message : `${e.message}:\n${e.nixText}`;
  switch (e.kind) {
    case 'ref':
      return new CliError(message, EXIT.usage, { hint: 'e.g. pcr deploy .#web' });
    case 'invalid':
      return new CliError(message, EXIT.usage, { code: 'SPEC_INVALID' });
    case 'missing':
      return new CliError(message, EXIT.notFound, {
        hint: 'a deployment is the flake output procurator.deployments.<name> (docs/nix.md)',
      });
    case 'push': {
      const cause = e.cause;
      return cause instanceof CliError
        ? new CliError(message, cause.exitCode, { code: cause.code })
        : new CliError(message, EXIT.failed);
    }
    default:
      return new CliError(message, EXIT.failed, {
        code: e.kind === 'eval' ? 'EVAL_FAILED' : 'BUILD_FAILED',
      });
  }
}

async function orCliError<T>(p: Promise<T>): Promise<T> {
  try {
    return await p;
  } catch (e) {
    throw e instanceof DeployError ? cliErrorOf(e) : e;
  }
}

function mib(bytes: number): string {
  return `${(bytes / 2 ** 20).toFixed(1)} MiB`;
}

function closureSummary(closure: readonly ClosurePathInfo[]): string {
  const bytes = closure.reduce((n, i) => n + i.narSize, 0);
  return `${plural(closure.length, 'path')}, ${mib(bytes)}`;
}

/** What `pcr deploy REF` did, for people. */
export function deployText(out: DeployOutcome): string {
  const { request: req } = out;
  const source = [req.source.commit ?? req.source.rev, req.source.flake].filter(
    (x) => x !== undefined,
  );
  const built = `${req.name}: built ${String(req.spec.runner ?? req.spec.kernel)} (closure ${closureSummary(out.closure)})`;
  if (out.answer === undefined) {
    return `${built}\n${req.name}: dry run: nothing pushed or submitted${source.length > 0 ? ` (source ${source[0]})` : ''}`;
  }
  const a = out.answer;
  const pushed = `${req.name}: ${out.imported === 0 ? 'the member had the closure already' : `${plural(out.imported, 'path')} imported into the member's store`}`;
  const result =
    a.noop === true
      ? `${req.name}: unchanged: version ${a.version} already holds this spec`
      : `${req.name}: version ${a.version} submitted; the rollout runs (pcr deploy status ${req.name})`;
  return [built, pushed, result].join('\n');
}

/** The deployment `name`, or undefined when the member says it does not exist. */
async function getDeployment(c: Connection, name: string): Promise<DeploymentView | undefined> {
  try {
    return (await deployRequest(c, { op: 'deploy.get', name })).deployment as DeploymentView;
  } catch (e) {
    if (e instanceof CliError && e.exitCode === EXIT.notFound) return undefined;
    throw e;
  }
}

/**
 * The closure of the current version's boot paths: from the local Nix store when it holds them,
 * else from the member's store (its narinfo references and NAR sizes).
 */
async function currentClosure(c: Connection, roots: readonly string[]): Promise<ClosurePathInfo[]> {
  if (roots.length === 0) return [];
  try {
    return await localClosure(nixRunner(), roots);
  } catch {
    // Not all here: the member's store has them (it runs or fetched them).
  }
  return walkClosure(roots, async (paths) => {
    const out = new Map<string, ClosurePathInfo>();
    const answers = await Promise.all(paths.map((path) => c.request({ op: 'store.info', path })));
    answers.forEach((r, i) => {
      const info = r.info as ClosurePathInfo | undefined;
      if (r.here === true && info !== undefined) out.set(paths[i]!, info);
    });
    const missing = paths.filter((p) => !out.has(p));
    if (missing.length > 0) {
      throw new CliError(
        `${missing[0]} (of the current version's closure) is neither in the local Nix store nor in the member's store`,
        EXIT.notFound,
        {
          hint: 'ask a member that runs the deployment (--addr), or fetch it: pcr store fetch PATH',
        },
      );
    }
    return out;
  });
}

const bootPaths = (spec: Record<string, unknown>): string[] =>
  ['runner', 'kernel', 'initrd']
    .map((f) => spec[f])
    .filter((p): p is string => typeof p === 'string');

function registerPlan(deploy: Command, ctx: CliContext): void {
  withConnect(
    deploy
      .command('plan <ref>')
      .description(
        'what deploying REF would change against the current version (exit 0 none, 14 changes)',
      ),
  ).action(async (refText: string, o: Opts) => {
    const nix = nixRunner();
    const ref = await orCliError(Promise.resolve().then(() => resolveDeployRef(refText)));
    const ev = await orCliError(evaluateDeployment(nix, ref));
    const nextClosure = await orCliError(buildDeployment(nix, ev));
    const { plan, members } = await withConnection(o, async (c) => {
      const d = await getDeployment(c, ref.name);
      const v = d?.versions[d.versions.length - 1];
      const current: CurrentVersion | undefined = v;
      const before = v === undefined ? [] : await currentClosure(c, bootPaths(v.spec));
      const update = ev.update as Record<string, unknown> | undefined;
      const rows =
        v === undefined
          ? []
          : ((await c.request({ op: 'vm.list', group: ref.name })).vms as RunningInstance[]);
      return {
        plan: planDeploy(
          ref.name,
          {
            spec: ev.validSpec as unknown as Record<string, unknown>,
            ...(update !== undefined ? { update } : {}),
          },
          nextClosure,
          current,
          before,
          { next: ev.validSpec, rows },
        ),
        members: o.json === true || v === undefined ? [] : await fetchMembers(c),
      };
    });
    print(o, plan, () => planText(plan, (id) => nameOf(id, members) ?? shortId(id)));
    ctx.exitCode = plan.changes ? EXIT.changes : EXIT.ok;
  });
}

function time(ms: unknown): string {
  return typeof ms === 'number' ? new Date(ms).toISOString().replace('T', ' ').slice(0, 19) : '-';
}

/** `deploy status`, for people. */
export function statusText(d: DeploymentView): string {
  const newest = d.versions[d.versions.length - 1];
  const r = d.rollout;
  const lines = [
    `deployment   ${d.name}`,
    `version      ${newest?.n ?? '-'} (${plural(d.versions.length, 'version')} kept)`,
    `known good   ${d.knownGood ?? 'none yet'}`,
  ];
  if (r !== undefined) {
    const what = r.from === undefined ? `to version ${r.to}` : `version ${r.from} -> ${r.to}`;
    lines.push(`rollout      ${what}: ${r.state}${r.reason !== undefined ? ` (${r.reason})` : ''}`);
    lines.push(`started      ${time(r.startedAtMs)}`);
    if (r.state === 'paused')
      lines.push(`             canary paused: pcr deploy promote ${d.name} continues it`);
  }
  if (newest?.source !== undefined) lines.push(`source       ${sourceText(newest.source)}`);
  return lines.join('\n');
}

function sourceText(s: Record<string, unknown>): string {
  if (typeof s.revertOf === 'number') return `revert of version ${s.revertOf}`;
  const rev =
    typeof s.commit === 'string' ? s.commit : typeof s.rev === 'string' ? s.rev : undefined;
  const flake = typeof s.flake === 'string' ? s.flake.replace(/\?.*$/, '') : '-';
  return rev !== undefined ? `${flake} @ ${rev.slice(0, 12)}` : flake;
}

/** `deploy history` rows, newest first. */
export function historyRows(d: DeploymentView): Record<string, unknown>[] {
  return [...d.versions].reverse().map((v) => ({
    version: v.n,
    state: d.rollout?.to === v.n ? d.rollout.state : v.n === d.knownGood ? 'known-good' : '-',
    runner: String(v.spec.runner ?? v.spec.kernel ?? '-').replace(
      /^\/nix\/store\/[0-9a-z]{32}-/,
      '',
    ),
    source: v.source === undefined ? '-' : sourceText(v.source),
    submitted: time(v.source?.atMs),
  }));
}

function registerQueries(deploy: Command): void {
  withConnect(
    deploy.command('status <name>').description('the current version and its rollout'),
  ).action(async (name: string, o: Opts) => {
    const d = await withConnection(
      o,
      async (c) => (await deployRequest(c, { op: 'deploy.get', name })).deployment,
    );
    print(o, d, () => statusText(d as DeploymentView));
  });
  withConnect(
    deploy.command('history <name>').description('the versions kept, newest first'),
  ).action(async (name: string, o: Opts) => {
    const d = await withConnection(
      o,
      async (c) => (await deployRequest(c, { op: 'deploy.get', name })).deployment,
    );
    print(o, (d as DeploymentView).versions, () =>
      table(historyRows(d as DeploymentView), [
        'version',
        'state',
        'runner',
        'source',
        'submitted',
      ]),
    );
  });
}

function registerChanges(deploy: Command): void {
  withConnect(
    deploy
      .command('rollback <name>')
      .description(
        'submit a known-good version again (default: the newest older than the current one)',
      ),
  )
    .option(
      '--to <version>',
      'the known-good version to go back to',
      integerOption(1, Number.MAX_SAFE_INTEGER),
    )
    .action(async (name: string, o: Opts) => {
      const r = await withConnection(o, (c) =>
        deployRequest(c, {
          op: 'deploy.rollback',
          name,
          ...(o.to !== undefined ? { to: o.to } : {}),
        }),
      );
      print(
        o,
        r,
        () =>
          `${name}: version ${r.version} submitted (a copy of a known-good version); pcr deploy status ${name}`,
      );
    });
  withConnect(
    deploy.command('promote <name>').description('let a paused canary rollout continue'),
  ).action(async (name: string, o: Opts) => {
    const r = await withConnection(o, (c) => deployRequest(c, { op: 'deploy.promote', name }));
    print(o, r, () => `${name}: promoted; the rollout continues (pcr deploy status ${name})`);
  });
  withConnect(
    deploy
      .command('stop <name>')
      .description(
        'stop every instance and end the rollout; versions are kept (pcr deploy or rollback starts it again)',
      ),
  ).action(async (name: string, o: Opts) => {
    const r = await withConnection(o, (c) => deployRequest(c, { op: 'deploy.stop', name }));
    print(o, r, () => `${name}: stopping its instances (pcr vm status ${name})`);
  });
  withConnect(
    deploy
      .command('rm <name>')
      .description(
        'remove the deployment, its versions and its instances (the name is free again)',
      ),
  ).action(async (name: string, o: Opts) => {
    const r = await withConnection(o, (c) => deployRequest(c, { op: 'deploy.rm', name }));
    print(o, r, () => `${name}: removed, with its versions and instances`);
  });
}

/** A connection's options for pushing closures (their own, longer default timeout). */
const pushOptions = (o: ConnectOptions): ConnectOptions => ({
  ...o,
  timeout: o.timeout ?? PUSH_TIMEOUT_S,
});

/** deployFlake's steps against a member: `pcr store push` of each path, then deploy.submit. */
function memberSteps(c: Connection, nix: NixRunner, log: (l: string) => void): DeploySteps {
  return {
    nix,
    log,
    push: async (path) => ({ imported: Number((await pushPath(c, path)).imported) }),
    submit: (req) => deployRequest(c, req),
    check: async (req) => {
      try {
        await deployRequest(c, {
          op: 'deploy.check',
          name: req.name,
          spec: req.spec,
          ...(req.update !== undefined ? { update: req.update } : {}),
        });
      } catch (e) {
        // A member of older code does not know the op: push and let the submit decide, as before.
        if (!/unknown op "deploy\.check"/.test((e as Error).message)) throw e;
      }
    },
  };
}

type WatchOpts = ConnectOptions & { branch: string; interval: number; attr?: string[] };

/** `pcr deploy watch`: the GitOps loop (node/deploy/watch.ts) with git, Nix and the member. */
function registerWatch(deploy: Command, ctx: CliContext): void {
  withConnect(
    deploy
      .command('watch <git-url>')
      .description(
        "deploy every new commit of a branch (from outside the cluster): each interval, git ls-remote; a new head's deployments go through pcr deploy's steps",
      ),
  )
    .option('--branch <name>', 'the branch to follow', 'main')
    .option(
      '--interval <duration>',
      `how often to look at the branch (${WATCH_INTERVAL_MS_MIN / 1000} s to ${WATCH_INTERVAL_MS_MAX / 3_600_000} h)`,
      durationOption(WATCH_INTERVAL_MS_MIN, WATCH_INTERVAL_MS_MAX),
      WATCH_INTERVAL_MS_DEFAULT,
    )
    .option(
      '--attr <name>',
      'a deployment to deploy (repeat it; default: every one in procurator.deployments)',
      (v: string, prev: string[] | undefined) => [...(prev ?? []), v],
    )
    .action(async (url: string, o: WatchOpts) => {
      const source = watchSource(url, o.branch);
      if (typeof source === 'string') throw new CliError(source, EXIT.usage);
      // A name that is no deployment name is refused before anything runs.
      for (const a of o.attr ?? []) {
        try {
          resolveDeployRef(`.#${a}`);
        } catch (e) {
          if (!(e instanceof DeployError)) throw e;
          throw new CliError(`--attr ${JSON.stringify(a)}: not a deployment name`, EXIT.usage, {
            hint: 'a name in procurator.deployments (a-z, 0-9 and -), e.g. --attr web',
          });
        }
      }
      const nix = nixRunner();
      const log = (e: WatchEvent) =>
        ctx.io.out(`${o.json === true ? JSON.stringify(e) : watchEventText(e)}\n`);
      const stop = new AbortController();
      const off = onStopSignals({ stop: () => stop.abort() });
      try {
        await runWatch(
          { source, intervalMs: o.interval, ...(o.attr !== undefined ? { names: o.attr } : {}) },
          {
            lsRemote: gitLsRemote,
            names: (flake) => deploymentNames(nix, flake),
            openMember: async () => {
              const c = await connect(pushOptions(o));
              return {
                deploy: (ref) =>
                  deployFlake(
                    ref,
                    memberSteps(c, nix, () => {}),
                  ),
                close: () => c.close(),
              };
            },
            log,
          },
          stop.signal,
        );
      } finally {
        off();
      }
    });
}

export function registerDeployCommands(program: Command, ctx: CliContext): void {
  const deploy = withConnect(
    program
      .command('deploy')
      .description("deployments: build a flake's procurator.deployments.<name> and roll it out")
      .argument('[ref]', 'FLAKE#NAME (.#web is .#procurator.deployments.web) or FLAKE#ATTR.PATH'),
  )
    .option('--dry-run', 'evaluate and build only: push and submit nothing')
    .action(async (refText: string | undefined, o: Opts) => {
      if (refText === undefined) {
        throw new CliError(
          'pcr deploy needs a REF (e.g. pcr deploy .#web) or a command',
          EXIT.usage,
          {
            hint: 'pcr deploy --help lists them',
          },
        );
      }
      // A REF that names no deployment is refused before the member is dialed.
      await orCliError(Promise.resolve().then(() => resolveDeployRef(refText)));
      const nix = nixRunner();
      const log = o.json === true ? () => {} : (l: string) => ctx.io.err(`${l}\n`);
      const out =
        o.dryRun === true
          ? await orCliError(
              deployFlake(refText, { nix, dryRun: true, log, push: unused, submit: unused }),
            )
          : await withConnection(pushOptions(o), (c) =>
              orCliError(deployFlake(refText, memberSteps(c, nix, log))),
            );
      print(
        o,
        { ...out.request, imported: out.imported, paths: out.closure.length, answer: out.answer },
        () => deployText(out),
      );
    });
  registerPlan(deploy, ctx);
  registerWatch(deploy, ctx);
  registerQueries(deploy);
  registerChanges(deploy);
}

/** The member's functions of a dry run: never called. */
const unused = (): never => {
  throw new Error('a dry run pushes and submits nothing');
};
