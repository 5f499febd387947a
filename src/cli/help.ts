// Per-command help (`devmapper <command> --help`), the group listings and the version. Kept apart
// from the commands: none of this loads the library or its native bindings.
import { readFileSync } from 'node:fs';
import { COMMANDS, type CommandHelp, GLOBAL_FLAGS } from './command-help.js';

/** The help of the longest command name that `words` start with ('image import' before 'image'). */
export function findHelp(words: readonly string[]): CommandHelp | undefined {
  const two = words.slice(0, 2).join(' ');
  return COMMANDS.find((c) => c.name === two) ?? COMMANDS.find((c) => c.name === words[0]);
}

/** The sub-commands of a group ('image', 'dm', 'serve'). */
export function groupHelp(group: string): CommandHelp[] {
  return COMMANDS.filter((c) => c.name.startsWith(`${group} `));
}

const flagLines = (flags: ReadonlyArray<readonly [string, string]>): string => {
  const width = Math.max(...flags.map(([f]) => f.length));
  return flags.map(([f, what]) => `  ${f.padEnd(width)}  ${what}`).join('\n');
};

export function formatHelp(help: CommandHelp): string {
  return [
    `usage: ${help.usage}`,
    '',
    wrap(help.summary),
    '',
    ...(help.flags.length > 0 ? ['Options:', flagLines(help.flags), ''] : []),
    'Global options:',
    flagLines(GLOBAL_FLAGS),
    '',
    'Example:',
    `  ${help.example}`,
    '',
  ].join('\n');
}

export function formatGroupHelp(group: string): string {
  const members = groupHelp(group);
  const width = Math.max(...members.map((c) => c.usage.length));
  return [
    `usage: devmapper ${group} <command>`,
    '',
    ...members.map((c) => `  ${c.usage.padEnd(width)}  ${c.summary.split('. ')[0]!.replace(/\.$/, '')}`),
    '',
    `devmapper ${group} <command> --help shows one command's options and an example.`,
    '',
  ].join('\n');
}

function wrap(text: string, width = 96): string {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(' ')) {
    if (line && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else {
      line = line ? `${line} ${word}` : word;
    }
  }
  if (line) lines.push(line);
  return lines.join('\n');
}

/** The package's version, from the package.json next to dist/ (a checkout or an installed package). */
export function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as {
    version?: string;
  };
  return pkg.version ?? 'unknown';
}
