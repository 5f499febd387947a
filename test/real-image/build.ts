// A real image for the kernel tests: Debian bookworm's minbase (what debian:bookworm-slim is
// made of: ~6,800 entries with device nodes, hard links, absolute symlinks, setuid files and
// dpkg's own checksums of every file it installed), made by debootstrap from Debian's mirror and
// packed by umoci into an OCI image layout of two layers. The second layer is what an image
// build does on top: it deletes /usr/share/doc's contents and /usr/share/man (umoci writes the
// whiteouts), adds a file and replaces one. scripts/test.mjs builds it on the host before the
// kernel tests (debootstrap runs dpkg in a chroot; the host is faster at it than the test
// kernel) into .vm/real-image/, once per checkout; the kernel test skips, saying why, without it.
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const PROJECT_ROOT = fileURLToPath(new URL('../../..', import.meta.url));
const OUT_DIR = join(PROJECT_ROOT, '.vm/real-image');
export const REAL_IMAGE_TARBALL = join(OUT_DIR, 'bookworm-minbase.tar');
/** Why the image could not be made (the kernel test prints it when it skips). */
const UNAVAILABLE = join(OUT_DIR, 'unavailable.txt');
export const REAL_IMAGE_TAG = 'bookworm';
/** The image's full reference (index.json's io.containerd.image.name). */
export const REAL_IMAGE_NAME = 'example.com/devmapper/debian-minbase:bookworm';
/** What the second layer writes. */
export const RELEASE_FILE = { path: 'etc/devmapper-release', content: 'devmapper real-image test layer\n' } as const;
export const HOSTNAME_CONTENT = 'devmapper-real-image\n';

const SUITE = 'bookworm';
const DEFAULT_MIRROR = 'http://deb.debian.org/debian';

function onPath(program: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${program}`], { stdio: 'ignore' }).status === 0;
}

/** The Debian mirror apt on this host uses (deb822 or one-line sources), else deb.debian.org. */
function hostMirror(): string {
  for (const file of ['/etc/apt/sources.list.d/debian.sources', '/etc/apt/sources.list']) {
    if (!existsSync(file)) continue;
    const text = readFileSync(file, 'utf8');
    const deb822 = /^URIs:\s*(\S+)/m.exec(text);
    const oneLine = /^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+bookworm\s/m.exec(text);
    const uri = deb822?.[1] ?? oneLine?.[1];
    if (uri && !uri.includes('security')) return uri;
  }
  return DEFAULT_MIRROR;
}

/** Why the real image is not there (undefined: it is). */
export function realImageUnavailable(): string | undefined {
  if (imageIsFresh()) return undefined;
  if (existsSync(UNAVAILABLE)) return readFileSync(UNAVAILABLE, 'utf8').trim();
  return `${REAL_IMAGE_TARBALL} was not built: npm test builds it on the host before the kernel tests`;
}

/** The image is rebuilt when this file (how it is made) changes. */
const STAMP = join(OUT_DIR, 'image.stamp');
const currentStamp = (): string =>
  createHash('sha256')
    .update(readFileSync(fileURLToPath(import.meta.url)))
    .digest('hex');
const imageIsFresh = (): boolean =>
  existsSync(REAL_IMAGE_TARBALL) && existsSync(STAMP) && readFileSync(STAMP, 'utf8').trim() === currentStamp();

const run = (program: string, args: string[]) =>
  execFileSync(program, args, { stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 64 << 20 });

/** Builds the image unless it is there; returns why not when it cannot (and remembers it). */
export function buildRealImage(): { ok: true; built: boolean } | { ok: false; reason: string } {
  if (imageIsFresh()) return { ok: true, built: false };
  mkdirSync(OUT_DIR, { recursive: true });
  rmSync(UNAVAILABLE, { force: true });
  const refuse = (reason: string) => {
    writeFileSync(UNAVAILABLE, `${reason}\n`);
    return { ok: false as const, reason };
  };
  for (const program of ['debootstrap', 'umoci']) {
    if (!onPath(program)) return refuse(`${program} is not installed (scripts/bootstrap.mjs lists it)`);
  }
  if (process.getuid?.() !== 0) return refuse('debootstrap and umoci unpack need root');
  const work = join(OUT_DIR, 'work');
  rmSync(work, { recursive: true, force: true });
  // debootstrap's tree is kept: a change to how the image is packed does not download it again
  const rootfs = join(OUT_DIR, 'rootfs');
  const rootfsDone = `${rootfs}.done`;
  const layout = join(work, 'layout');
  const bundle = join(work, 'bundle');
  const image = `${layout}:${REAL_IMAGE_TAG}`;
  try {
    const mirror = hostMirror();
    try {
      if (!existsSync(rootfsDone)) {
        rmSync(rootfs, { recursive: true, force: true });
        run('debootstrap', ['--variant=minbase', SUITE, rootfs, mirror]);
        writeFileSync(rootfsDone, `${SUITE} ${mirror}\n`);
      }
    } catch (error) {
      const e = error as { stderr?: Buffer; stdout?: Buffer };
      const log = `${e.stdout?.toString() ?? ''}${e.stderr?.toString() ?? ''}`.trim().split('\n').slice(-5).join('\n');
      return refuse(`debootstrap ${SUITE} from ${mirror} failed (is Debian's mirror reachable?): ${log}`);
    }
    run('umoci', ['init', '--layout', layout]);
    run('umoci', ['new', '--image', image]);
    run('umoci', ['config', '--image', image, '--config.cmd', '/bin/bash', '--config.workingdir', '/']);
    run('umoci', ['unpack', '--image', image, bundle]);
    run('cp', ['-a', `${rootfs}/.`, join(bundle, 'rootfs')]);
    // --refresh-bundle: the next repack stacks on this layer instead of replacing it
    run('umoci', ['repack', '--refresh-bundle', '--image', image, bundle]);
    // the second layer: deletions (whiteouts, one of them of a whole directory), an addition, a replacement
    const top = join(bundle, 'rootfs');
    run('sh', ['-c', 'rm -rf "$1"/usr/share/doc/* "$1"/usr/share/man', 'sh', top]);
    writeFileSync(join(top, RELEASE_FILE.path), RELEASE_FILE.content);
    writeFileSync(join(top, 'etc/hostname'), HOSTNAME_CONTENT);
    run('umoci', ['repack', '--image', image, bundle]);
    run('umoci', ['gc', '--layout', layout]);
    // the full reference, as `ctr images import` (and devmapper's import) read it; umoci names only the tag
    const indexFile = join(layout, 'index.json');
    const index = JSON.parse(readFileSync(indexFile, 'utf8')) as {
      manifests: Array<{ annotations?: Record<string, string> }>;
    };
    for (const manifest of index.manifests) {
      manifest.annotations = { ...manifest.annotations, 'io.containerd.image.name': REAL_IMAGE_NAME };
    }
    writeFileSync(indexFile, JSON.stringify(index));
    run('tar', ['-cf', `${REAL_IMAGE_TARBALL}.tmp`, '-C', layout, '.']);
    execFileSync('mv', [`${REAL_IMAGE_TARBALL}.tmp`, REAL_IMAGE_TARBALL]);
    writeFileSync(STAMP, `${currentStamp()}\n`);
    return { ok: true, built: true };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
