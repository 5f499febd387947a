// Runs a host tool for the QEMU backend (apt-cache, apt-get, dpkg-deb, xz/zstd/gzip): its
// stdout, or an Error naming the command with its stderr.
import { execFileSync } from 'node:child_process';

export function run(command: string, args: string[], cwd?: string): string {
  try {
    return execFileSync(command, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (error) {
    const e = error as { stderr?: string; message: string };
    throw new Error(`qemu backend: \`${command} ${args.join(' ')}\` failed: ${(e.stderr ?? '').trim() || e.message}`);
  }
}
