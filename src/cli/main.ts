// The devmapper command. Exit status: 0 done, 1 the operation failed (the error and its code
// on stderr), 2 usage error, 3 `check` found problems. Each command checks its arguments first,
// then that the host has device-mapper (host.ts), then does its work.
import { UsageError } from './args.js';
import { completionScript } from './completion.js';
import { findHelp, formatGroupHelp, formatHelp, groupHelp, packageVersion } from './help.js';
import type { Io } from './command-context.js';
import { cliMessage } from './messages.js';
import { disableColor, paint } from './output.js';
import { DEFAULT_HOME, DM_USAGE } from './usage.js';

/** Exit statuses (README, CLI). */
export const EXIT = { ok: 0, failed: 1, usage: 2, checkProblems: 3 } as const;

const USAGE = `usage: devmapper [--home DIR] [--json] [--wait[=SECONDS]] [--no-color] <command> [args]

Layers (over --home, default ${DEFAULT_HOME}):
  init [--base-size S] [--loop-data-size S] [--loop-metadata-size S] [--fs ext4|xfs]
       [--mkfs-arg A]... [--mount-opt O] [--data-dev D --metadata-dev D] [--thin-pool-dev NAME]
       [--block-size S] [--blkdiscard] [--deferred-removal] [--deferred-deletion] [--queue-if-no-space]
       [--min-free-space PCT] [--ffi ffi-rs|koffi]
  create <id> [--parent <id>] [--size S]
  mount <id> [--label CONTEXT]     prints the rootfs path
  umount <id>
  rm <id>
  ls                               id, parent, thin id, size, mapped bytes, mounted
  status
  cleanup                          unmount and deactivate everything (data kept)
  check [--repair] [--thin-check]  compare metadata, pool and kernel (exit 3: problems found);
                                   fix with --repair; --thin-check also runs thin_check
  grow-pool [--data-size S] [--metadata-size S]
                                   grow the pool's loop files (a full pool goes back to rw)
  demo                             a whole image + container round trip in a temporary home

Images without an engine:
  image import FILE.tar [--name REF]   OCI image layout tarball or docker save archive (progress on stderr)
  image ls | image rm REF | image rootfs REF ID [--bundle DIR]
  diff ID [--parent P]             the layer's diff as a tar on stdout

Engines:
  serve containerd [--socket PATH] [--log-level L]   containerd's snapshots API (proxy plugin)
                                   on a unix socket (default /run/devmapper/containerd.sock)

Raw device-mapper (through the FFI backend the home recorded with init --ffi, else DEVMAPPER_FFI):
${DM_USAGE.split('\n')
  .slice(1)
  .map((l) => `  dm ${l.trim()}`)
  .join('\n')}

Other:
  completion bash|zsh              a shell completion script: source <(devmapper completion bash)

Options: --json (machine output), --wait[=SECONDS] (wait for a home another process holds,
  forever or SECONDS, instead of failing with ERR_DM_HOME_LOCKED), --no-color (also NO_COLOR),
  --version, --help (devmapper <command> --help: that command's options and an example)

Exit status: 0 done, 1 failed, 2 usage error, 3 check found problems.`;

// biome-ignore lint/suspicious/noConfusingVoidType: most commands return nothing; some return an exit status
type Command = (argv: string[], io: Io) => Promise<void | number>;

// Loaded on use: --help and usage errors need neither the library nor the FFI bindings.
const commands: Record<string, () => Promise<Command>> = {
  init: async () => (await import('./pool-commands.js')).initCommand,
  create: async () => (await import('./layer-commands.js')).createCommand,
  mount: async () => (await import('./layer-commands.js')).mountCommand,
  umount: async () => (await import('./layer-commands.js')).umountCommand,
  rm: async () => (await import('./layer-commands.js')).rmCommand,
  ls: async () => (await import('./report-commands.js')).lsCommand,
  status: async () => (await import('./report-commands.js')).statusCommand,
  cleanup: async () => (await import('./pool-commands.js')).cleanupCommand,
  check: async () => (await import('./report-commands.js')).checkCommand,
  'grow-pool': async () => (await import('./pool-commands.js')).growPoolCommand,
  demo: async () => (await import('./demo.js')).demoCommand,
  image: async () => (await import('./image-commands.js')).imageCommand,
  diff: async () => (await import('./image-commands.js')).diffCommand,
  serve: async () => (await import('./serve-command.js')).serveCommand,
  dm: async () => (await import('./dm-commands.js')).dmCommand,
};

export async function main(
  argv: string[],
  out: (text: string) => void = (t) => process.stdout.write(t),
): Promise<number> {
  let json = false;
  let home = process.env.DEVMAPPER_HOME ?? DEFAULT_HOME;
  let lockTimeoutMs: number | undefined;
  let waitValueApart: string | undefined;
  let help = false;
  let version = false;
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') {
      rest.push(...argv.slice(i));
      break;
    }
    if (arg === '--json') json = true;
    else if (arg === '--help' || arg === '-h') help = true;
    else if (arg === '--version' || arg === '-V') version = true;
    else if (arg === '--no-color' || arg === '--no-colour') {
      disableColor();
      process.env.NO_COLOR = '1'; // for the logger (tslog, loaded with the commands) and the programs we run
    } else if (arg === '--home') home = argv[++i] ?? '';
    else if (arg.startsWith('--home=')) home = arg.slice(7);
    else if (arg === '--wait') {
      // `--wait 5` would wait forever and then run a command named "5": say how to write it
      if (/^\d+(\.\d+)?$/.test(argv[i + 1] ?? '')) waitValueApart = argv[i + 1];
      lockTimeoutMs = Infinity;
    } else if (arg.startsWith('--wait='))
      lockTimeoutMs = /^\d+(\.\d+)?$/.test(arg.slice(7)) ? Math.round(Number(arg.slice(7)) * 1000) : NaN;
    else rest.push(arg);
  }
  const [name, ...args] = rest;
  try {
    if (version) {
      out(json ? `${JSON.stringify({ version: packageVersion() })}\n` : `devmapper ${packageVersion()}\n`);
      return EXIT.ok;
    }
    if (help) return showHelp(rest, out);
    if (!home.startsWith('/')) throw new UsageError('--home must be an absolute path');
    if (Number.isNaN(lockTimeoutMs)) throw new UsageError('--wait=SECONDS takes a non-negative number of seconds');
    if (waitValueApart !== undefined) {
      throw new UsageError(
        `--wait takes its seconds joined to it: --wait=${waitValueApart} (a bare --wait waits for as long as it takes)`,
      );
    }
    if (name === 'completion') {
      const [shell, ...extra] = args;
      if ((shell !== 'bash' && shell !== 'zsh') || extra.length > 0)
        throw new UsageError('usage: devmapper completion bash|zsh');
      out(completionScript(shell));
      return EXIT.ok;
    }
    const load = name && Object.hasOwn(commands, name) ? commands[name] : undefined;
    if (!load) throw new UsageError(name ? `unknown command ${JSON.stringify(name)}` : 'no command given', true);
    return (await (await load())(args, { out, json, home, lockTimeoutMs })) ?? EXIT.ok;
  } catch (error) {
    const usage = error instanceof UsageError;
    const code = (error as { code?: string }).code ?? 'ERR_UNKNOWN';
    // Every failure prints something: an error without a message is shown by its name or value.
    const raw =
      (error as Error)?.message ||
      (error instanceof Error ? `${error.name} (no message)${error.stack ? `\n${error.stack}` : ''}` : String(error));
    const message = usage ? raw : cliMessage(error, raw, name, args);
    if (json) process.stderr.write(`${JSON.stringify({ error: { code, message } })}\n`);
    else
      process.stderr.write(
        `${paint('1;31', 'devmapper:')} ${message}${usage ? '' : ` [${code}]`}\n${usage && (error as UsageError).showUsage ? `\n${USAGE}\n` : ''}`,
      );
    return usage ? EXIT.usage : EXIT.failed;
  }
}

/** `--help` with the words given: the command's help, a group's list, or the whole list. */
function showHelp(words: string[], out: (text: string) => void): number {
  const [name, sub] = words;
  if (name === undefined) {
    out(`${USAGE}\n`);
    return EXIT.ok;
  }
  if (!Object.hasOwn(commands, name) && name !== 'completion')
    throw new UsageError(`unknown command ${JSON.stringify(name)}`, true);
  const helpFor = findHelp(words);
  const isGroup = groupHelp(name).length > 0;
  if (isGroup && (sub === undefined || helpFor === undefined || !helpFor.name.includes(' '))) {
    if (sub !== undefined && !sub.startsWith('-') && !groupHelp(name).some((c) => c.name === `${name} ${sub}`)) {
      throw new UsageError(`unknown ${name} command ${JSON.stringify(sub)}\n${formatGroupHelp(name)}`);
    }
    out(formatGroupHelp(name));
    return EXIT.ok;
  }
  out(formatHelp(helpFor!));
  return EXIT.ok;
}
