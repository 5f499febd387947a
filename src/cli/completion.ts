// The bash and zsh completion scripts (`devmapper completion bash|zsh`), made from the help texts:
// a command's flags are completed from the flags its help lists.
import { COMMANDS, GLOBAL_FLAGS } from './command-help.js';

/** Words completed after `devmapper` and after each group, and the flags of each command. */
function completionTable(): {
  top: string[];
  groups: Record<string, string[]>;
  flags: Record<string, string[]>;
  global: string[];
} {
  const flagNames = (flags: ReadonlyArray<readonly [string, string]>): string[] =>
    flags.map(([f]) => f.split(/[ =[]/)[0]!);
  const top = [...new Set(COMMANDS.map((c) => c.name.split(' ')[0]!))];
  const groups: Record<string, string[]> = {};
  for (const c of COMMANDS) {
    const [first, second] = c.name.split(' ');
    if (second) {
      groups[first!] ??= [];
      groups[first!]!.push(second);
    }
  }
  groups.completion = ['bash', 'zsh'];
  const flags: Record<string, string[]> = {};
  for (const c of COMMANDS) flags[c.name.replace(' ', '_')] = flagNames(c.flags);
  return { top, groups, flags, global: flagNames(GLOBAL_FLAGS) };
}

export function completionScript(shell: 'bash' | 'zsh'): string {
  const { top, groups, flags, global } = completionTable();
  const cases = (indent: string, quoteEnd: string): string =>
    Object.entries(flags)
      .map(([key, list]) => `${indent}${key}) flags="${[...list, ...global].join(' ')}" ${quoteEnd}`)
      .join('\n');
  const groupCases = (indent: string): string =>
    Object.entries(groups)
      .map(([g, subs]) => `${indent}${g}) words="${subs.join(' ')}" ;;`)
      .join('\n');
  if (shell === 'bash') {
    return `# devmapper completion for bash: source <(devmapper completion bash)
_devmapper() {
  local cur words cmd="" sub="" i w flags="" key
  cur="\${COMP_WORDS[COMP_CWORD]}"
  for ((i = 1; i < COMP_CWORD; i++)); do
    w="\${COMP_WORDS[i]}"
    case "$w" in
      --home|--wait) ((i++)); continue ;;
      -*) continue ;;
    esac
    if [[ -z $cmd ]]; then cmd=$w; elif [[ -z $sub ]]; then sub=$w; fi
  done
  if [[ $cur == -* ]]; then
    key=$cmd
    [[ -n $sub && $cmd =~ ^(image|dm|serve)$ ]] && key="\${cmd}_\${sub}"
    case "$key" in
${cases('      ', ';;')}
      *) flags="${global.join(' ')}" ;;
    esac
    COMPREPLY=($(compgen -W "$flags" -- "$cur"))
    return
  fi
  if [[ -z $cmd ]]; then
    COMPREPLY=($(compgen -W "${top.join(' ')}" -- "$cur"))
  elif [[ -z $sub ]]; then
    case "$cmd" in
${groupCases('      ')}
      *) words="" ;;
    esac
    [[ -n $words ]] && COMPREPLY=($(compgen -W "$words" -- "$cur"))
  fi
  [[ \${#COMPREPLY[@]} -eq 0 ]] && COMPREPLY=($(compgen -f -- "$cur"))
  return 0
}
complete -F _devmapper devmapper
`;
  }
  return `#compdef devmapper
# devmapper completion for zsh: source <(devmapper completion zsh), or save it as _devmapper in $fpath
_devmapper() {
  local cmd="" sub="" key flags w
  local -i i
  for ((i = 2; i < CURRENT; i++)); do
    w=\${words[i]}
    case $w in
      --home|--wait) ((i++)); continue ;;
      -*) continue ;;
    esac
    if [[ -z $cmd ]]; then cmd=$w; elif [[ -z $sub ]]; then sub=$w; fi
  done
  if [[ $PREFIX == -* ]]; then
    key=$cmd
    [[ -n $sub && $cmd == (image|dm|serve) ]] && key="\${cmd}_\${sub}"
    case $key in
${cases('      ', ';;')}
      *) flags="${global.join(' ')}" ;;
    esac
    compadd -- \${=flags}
    return
  fi
  if [[ -z $cmd ]]; then
    compadd -- ${top.join(' ')}
  elif [[ -z $sub ]]; then
    local list=""
    case $cmd in
${groupCases('      ').replace(/words=/g, 'list=')}
    esac
    if [[ -n $list ]]; then compadd -- \${=list}; else _files; fi
  else
    _files
  fi
}
if [[ $zsh_eval_context[-1] == loadautofunc ]]; then _devmapper "$@"; else compdef _devmapper devmapper; fi
`;
}
