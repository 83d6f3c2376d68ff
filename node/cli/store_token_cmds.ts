// `pcr store token create|revoke|list`: the binary cache's tokens. `create` makes the secret here,
// on the user's machine, prints it once, and sends the member only its sha256 (the cluster never
// holds the secret). Nix sends it as the password of a netrc-file entry (HTTP basic), or as a
// bearer token.

import { randomBytes } from 'node:crypto';
import type { Command } from 'commander';
import { tokenHash } from '../store/cache_auth.ts';
import { type ConnectOptions, call, print, table } from './client.ts';
import { withConnect } from './cluster_cmds.ts';

/** Secret bytes of a token (256 bits: a guess is hopeless, so one sha256 is enough to store). */
export const TOKEN_SECRET_BYTES = 32;

type Opts = ConnectOptions & { name: string; push?: boolean; read?: boolean };

/** A new token secret: `pcr_` and 43 base64url characters. */
export function newTokenSecret(): string {
  return `pcr_${randomBytes(TOKEN_SECRET_BYTES).toString('base64url')}`;
}

export function registerTokenCommands(store: Command): void {
  const token = store.command('token').description("the binary cache's tokens (netrc passwords)");

  withConnect(
    token
      .command('create')
      .description('make a token; its secret is printed once and never stored in clear'),
  )
    .requiredOption('--name <name>', 'what the token is for (ci, a build machine)')
    .option('--push', 'may upload (nix copy --to); implies read')
    .option('--read', 'may read (for nodes started with --cache-auth read); the default')
    .action(async (o: Opts) => {
      const secret = newTokenSecret();
      const scopes = [
        ...(o.read === true || o.push !== true ? ['read'] : []),
        ...(o.push === true ? ['push'] : []),
      ];
      const r = await call(o, {
        op: 'store.token.create',
        name: o.name,
        sha256: tokenHash(secret),
        scopes: scopes as ('read' | 'push')[],
      });
      print(o, { ...(r.token as object), token: secret }, () =>
        [
          secret,
          '',
          `token ${o.name} (${scopes.join(', ')}) created; the secret above is shown only now.`,
          'Give it to Nix as the password of a netrc-file entry for the cache host:',
          `  machine HOST login pcr password ${secret}`,
          'and set netrc-file = /path/to/that/netrc in nix.conf (or --option netrc-file ...).',
        ].join('\n'),
      );
    });

  withConnect(
    token.command('revoke <name>').description('revoke a token at once, cluster-wide'),
  ).action(async (name: string, o: ConnectOptions) => {
    const r = await call(o, { op: 'store.token.revoke', name });
    print(o, r.token, () => `token ${name} revoked`);
  });

  withConnect(
    token.command('list').description('tokens, their scopes, and their uses on the member asked'),
  ).action(async (o: ConnectOptions) => {
    const r = await call(o, { op: 'store.token.list' });
    const rows = (r.tokens as Record<string, unknown>[]).map((t) => ({
      ...t,
      created: new Date(Number(t.createdAtMs)).toISOString(),
    }));
    print(o, r, () =>
      rows.length === 0
        ? 'no tokens (pcr store token create --name NAME --push)'
        : `${table(rows, ['name', 'scopes', 'created', 'uses'])}\n(uses: requests served by ${String(r.node)} since it started)`,
    );
  });
}
