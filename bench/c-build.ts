// Builds the C programs of the benchmark (bench/c/*.c) with gcc into <project>/.vm/bench/, once
// per source hash, so the host and the guest (which sees the host's files) run the same binaries.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const projectRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const benchCacheDir = join(projectRoot, '.vm', 'bench');
const sourceDir = join(projectRoot, 'bench', 'c');

export interface CPrograms {
  /** Raw dm ioctls and the dmsetup route (bench/c/dm-floor.c). */
  dmFloor: string;
  /** libdevmapper's C API (bench/c/dm-libdm.c). */
  dmLibdm: string;
  /** Raw loop ioctls (bench/c/loop-floor.c). */
  loopFloor: string;
}

const PROGRAMS: Array<{ key: keyof CPrograms; source: string; libs: string[] }> = [
  { key: 'dmFloor', source: 'dm-floor.c', libs: [] },
  { key: 'dmLibdm', source: 'dm-libdm.c', libs: ['-ldevmapper'] },
  { key: 'loopFloor', source: 'loop-floor.c', libs: [] },
];

const FLAGS = ['-O2', '-Wall', '-Wextra'];

/** Compiles what is missing (or changed) and returns the binaries' paths. */
export function buildCPrograms(which: ReadonlyArray<keyof CPrograms> = ['dmFloor', 'dmLibdm', 'loopFloor']): CPrograms {
  mkdirSync(benchCacheDir, { recursive: true });
  const header = readFileSync(join(sourceDir, 'bench.h'));
  const out: Partial<CPrograms> = {};
  for (const program of PROGRAMS) {
    if (!which.includes(program.key)) continue;
    const source = join(sourceDir, program.source);
    const hash = createHash('sha256')
      .update(header)
      .update(readFileSync(source))
      .update(FLAGS.join(' ') + program.libs.join(' '))
      .digest('hex')
      .slice(0, 12);
    const binary = join(benchCacheDir, `${program.source.replace(/\.c$/, '')}-${hash}`);
    if (!existsSync(binary)) {
      if (program.key === 'dmLibdm' && !existsSync('/usr/include/libdevmapper.h')) {
        throw new Error('libdevmapper.h is missing: apt-get install -y --no-install-recommends libdevmapper-dev');
      }
      const partial = `${binary}.${process.pid}.tmp`;
      execFileSync('gcc', [...FLAGS, '-o', partial, source, ...program.libs], {
        stdio: ['ignore', 'inherit', 'inherit'],
      });
      renameSync(partial, binary);
    }
    out[program.key] = binary;
  }
  return out as CPrograms;
}
