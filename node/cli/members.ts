// Names and short IDs in `pcr`: what a user typed for a node (a name, a short ID, a unique prefix
// or a full peer ID) resolved to a member's full ID, and a member's label for tables. --json keeps
// the full IDs the member answered with; only tables use these.

import type { Request } from '../api/requests.ts';
import { type NamedMember, resolveMember, shortId } from '../names.ts';
import { CliError, type Connection, type ConnectOptions, connect, EXIT } from './client.ts';

export interface MemberRow extends NamedMember {
  readonly addrs?: readonly string[];
  readonly role?: string;
}

export async function fetchMembers(c: Connection): Promise<MemberRow[]> {
  return ((await c.request({ op: 'members' })).members as MemberRow[]) ?? [];
}

/**
 * One request, and the members to label the node IDs of its answer with in a table (none with
 * --json, which keeps the full IDs), over one connection.
 */
export async function callWithMembers(
  o: ConnectOptions,
  req: Request,
): Promise<{ r: Record<string, unknown>; ms: MemberRow[] }> {
  const c = await connect(o);
  try {
    const r = await c.request(req);
    return { r, ms: o.json === true ? [] : await fetchMembers(c) };
  } finally {
    await c.close();
  }
}

/** The full ID of the member `x` names, or a CliError that lists the candidates. */
export function resolveNode(x: string, members: readonly MemberRow[]): string {
  const r = resolveMember(x, members);
  if (r.ok) return r.id;
  if (r.why === 'none') {
    throw new CliError(`no member ${JSON.stringify(x)}`, EXIT.notFound, {
      hint: 'see the names and IDs with pcr members',
    });
  }
  throw new CliError(
    `${JSON.stringify(x)} names ${r.candidates.length} members: ${r.candidates.map((id) => label(id, members)).join(', ')}`,
    EXIT.usage,
    { hint: 'give the name or more of the ID' },
  );
}

/** Resolves `x` over the connection (one members request). */
export async function resolveNodeOver(c: Connection, x: string): Promise<string> {
  return resolveNode(x, await fetchMembers(c));
}

export function nameOf(id: string, members: readonly NamedMember[]): string | undefined {
  return members.find((m) => m.id === id)?.name;
}

/** `name (shortid)`, or the short ID alone for a member without a name. */
export function label(id: string, members: readonly NamedMember[]): string {
  if (id === '') return '(none)';
  const name = nameOf(id, members);
  return name !== undefined ? `${name} (${shortId(id)})` : shortId(id);
}

/** The first address of a member without its /p2p/ part (the ID is in its own column). */
export function address(addrs: readonly string[] | undefined): string {
  const a = addrs?.[0];
  return a === undefined ? '-' : a.replace(/\/p2p\/[^/]+$/, '');
}

export { shortId };
