// `pcr completion bash|zsh`: a shell completion script, generated from the commands themselves
// (every noun registered, as for --help), so it never lists a command or flag that does not exist.
// The script is static: a tab costs no process start.

import type { Command } from 'commander';
import { type CliContext, EXIT_USAGE } from './context.ts';

/** Each command path ('' for the top, 'kv', 'kv get', ...) with its subcommands and flags. */
export function commandTree(program: Command): Map<string, { subs: string[]; flags: string[] }> {
  const tree = new Map<string, { subs: string[]; flags: string[] }>();
  const walk = (cmd: Command, path: string): void => {
    const subs = cmd.commands.map((c) => c.name()).filter((n) => n !== 'help');
    const flags = cmd.options.flatMap((o) => [o.long, o.short].filter((f) => f !== undefined));
    tree.set(path, { subs: path === '' ? [...subs, 'help'] : subs, flags: [...flags, '--help'] });
    for (const c of cmd.commands) walk(c, path === '' ? c.name() : `${path} ${c.name()}`);
  };
  walk(program, '');
  return tree;
}

function bash(tree: Map<string, { subs: string[]; flags: string[] }>): string {
  const cases = [...tree]
    .map(([path, t]) => `    '${path}') words='${[...t.subs, ...t.flags].join(' ')}' ;;`)
    .join('\n');
  return `# pcr completion for bash: source <(pcr completion bash)
_pcr() {
  local cur path w i words
  cur=\${COMP_WORDS[COMP_CWORD]}
  path=''
  for ((i = 1; i < COMP_CWORD; i++)); do
    w=\${COMP_WORDS[i]}
    case $w in -*) continue ;; esac
    case " $(_pcr_words "$path") " in
      *" $w "*) path=\${path:+$path }$w ;;
    esac
  done
  COMPREPLY=($(compgen -W "$(_pcr_words "$path")" -- "$cur"))
  case $cur in -*) ;; *) [ \${#COMPREPLY[@]} -eq 0 ] && COMPREPLY=($(compgen -f -- "$cur")) ;; esac
}
_pcr_words() {
  local words=''
  case $1 in
${cases}
  esac
  printf '%s' "$words"
}
complete -F _pcr pcr
`;
}

function zsh(tree: Map<string, { subs: string[]; flags: string[] }>): string {
  return `#compdef pcr
# pcr completion for zsh: source <(pcr completion zsh), or save as _pcr in a directory of $fpath
autoload -U +X bashcompinit && bashcompinit
${bash(tree).replace(/^# pcr completion for bash.*\n/, '')}`;
}

export function register(program: Command, ctx: CliContext): void {
  program
    .command('completion <shell>')
    .description('print a completion script: bash or zsh (source <(pcr completion bash))')
    .action(async (shell: string) => {
      if (shell !== 'bash' && shell !== 'zsh') {
        ctx.io.err(`pcr: completion for ${JSON.stringify(shell)}: bash or zsh\n`);
        ctx.exitCode = EXIT_USAGE;
        return;
      }
      if (ctx.fullProgram === undefined) throw new Error('pcr completion needs the full program');
      const full = await ctx.fullProgram();
      const tree = commandTree(full);
      ctx.io.out(shell === 'bash' ? bash(tree) : zsh(tree));
    });
}
