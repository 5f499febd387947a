// The devmapper command. Exit status: 0 done, 1 the operation failed (the error and its code
// on stderr), 2 usage error.
import { existsSync } from 'node:fs';
import { DevmapperError } from '../errors.js';
import { UsageError } from './args.js';
import { demoCommand } from './demo.js';
import { dmCommand, DM_USAGE } from './dm-commands.js';
import {
  checkCommand, cleanupCommand, createCommand, DEFAULT_HOME, initCommand, lsCommand, mountCommand, rmCommand, statusCommand, umountCommand, type Io,
} from './layer-commands.js';

const USAGE = `usage: devmapper [--home DIR] [--json] <command> [args]

Layers (over --home, default ${DEFAULT_HOME}):
  init [--base-size S] [--loop-data-size S] [--loop-metadata-size S] [--fs ext4|xfs]
       [--mkfs-arg A]... [--mount-opt O] [--data-dev D --metadata-dev D] [--thin-pool-dev NAME]
       [--block-size S] [--blkdiscard] [--deferred-removal] [--deferred-deletion]
       [--min-free-space PCT] [--ffi ffi-rs|koffi]
  create <id> [--parent <id>] [--size S]
  mount <id> [--label CONTEXT]     prints the rootfs path
  umount <id>
  rm <id>
  ls                               id, parent, thin id, size, mapped bytes, mounted
  status
  cleanup                          unmount and deactivate everything (data kept)
  check [--repair]                 compare metadata, pool and kernel; fix with --repair
  demo                             a whole image + container round trip in a temporary home

Raw device-mapper:
${DM_USAGE.split('\n').slice(1).map((l) => `  dm ${l.trim()}`).join('\n')}

Options: --json (machine output), --help`;

const commands: Record<string, (argv: string[], io: Io) => Promise<void | number>> = {
  init: initCommand, create: createCommand, mount: mountCommand, umount: umountCommand, rm: rmCommand,
  ls: lsCommand, status: statusCommand, cleanup: cleanupCommand, check: checkCommand, demo: demoCommand, dm: dmCommand,
};

export async function main(argv: string[], out: (text: string) => void = (t) => process.stdout.write(t)): Promise<number> {
  let json = false;
  let home = process.env.DEVMAPPER_HOME ?? DEFAULT_HOME;
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--json') json = true;
    else if (arg === '--help' || arg === '-h') { out(USAGE + '\n'); return 0; }
    else if (arg === '--home') home = argv[++i] ?? '';
    else if (arg.startsWith('--home=')) home = arg.slice(7);
    else rest.push(arg);
  }
  const [name, ...args] = rest;
  try {
    if (!home.startsWith('/')) throw new UsageError('--home must be an absolute path');
    const command = name ? commands[name] : undefined;
    if (!command) throw new UsageError(name ? `unknown command ${JSON.stringify(name)}` : 'no command given', true);
    if (!existsSync('/dev/mapper/control')) {
      throw new DevmapperError('ERR_DM_UNAVAILABLE', 'this kernel has no device-mapper (/dev/mapper/control is missing): load dm-mod and dm-thin-pool (modprobe dm_thin_pool), or run this through the test kernel: npm run vm -- node dist/src/cli/main.js ...');
    }
    return (await command(args, { out, json, home })) ?? 0;
  } catch (error) {
    const usage = error instanceof UsageError;
    const code = (error as { code?: string }).code ?? 'ERR_UNKNOWN';
    const message = (error as Error).message ?? String(error);
    if (json) process.stderr.write(JSON.stringify({ error: { code, message } }) + '\n');
    else process.stderr.write(`devmapper: ${message}${usage ? '' : ` [${code}]`}\n${usage && (error as UsageError).showUsage ? `\n${USAGE}\n` : ''}`);
    return usage ? 2 : 1;
  }
}

