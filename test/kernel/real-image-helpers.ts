// What a container of the real Debian image (test/real-image/build.ts) must see, checked the
// same way whichever engine ran it (runc on `devmapper image rootfs`, or containerd through
// `devmapper serve containerd`): one script, its output in sections, one set of assertions.
import type { ExecutionContext } from 'ava';
import { HOSTNAME_CONTENT, RELEASE_FILE } from '../real-image/build.js';

/** What the container runs; each check prints under its own `== name` line. */
export const CONTAINER_SCRIPT = [
  'echo "== version"; cat /etc/debian_version',
  `echo "== release"; cat /${RELEASE_FILE.path}`,
  'echo "== hostname"; cat /etc/hostname',
  'echo "== doc entries"; ls -A /usr/share/doc | wc -l',
  'echo "== man"; if [ -e /usr/share/man ]; then echo present; else echo gone; fi',
  'echo "== verify"; dpkg --verify; echo "status $?"',
  'echo "== useradd"; useradd -m devtest && id -u devtest && stat -c %U /home/devtest',
  'echo "== root"; grep " / " /proc/self/mounts',
].join('\n');

function sections(out: string): Map<string, string[]> {
  const map = new Map<string, string[]>();
  let current: string[] | undefined;
  for (const line of out.split('\n')) {
    const head = /^== (.+)$/.exec(line);
    if (head) {
      current = [];
      map.set(head[1]!, current);
    } else if (current && line !== '') current.push(line);
  }
  return map;
}

/**
 * The image as Debian made it: every file dpkg installed has the checksum dpkg recorded (only
 * what the top layer deleted is missing), the top layer's addition, replacement and deletions
 * hold, the system can be changed (useradd), and / is one of our thin devices with ext4.
 */
export function assertDebianContainer(t: ExecutionContext, stdout: string): void {
  const out = sections(stdout);
  t.regex(out.get('version')?.[0] ?? '', /^12\.\d+/, 'Debian 12');
  t.deepEqual(out.get('release'), [RELEASE_FILE.content.trim()], 'the file the top layer added');
  t.deepEqual(out.get('doc entries'), ['0'], "the top layer's whiteouts emptied /usr/share/doc");
  t.deepEqual(out.get('man'), ['gone'], 'and removed /usr/share/man');
  const verify = out.get('verify') ?? [];
  const problems = verify.slice(0, -1);
  const unexpected = problems.filter((line) => !/^missing\s+(?:c\s+)?\/usr\/share\/(?:doc|man)(?:\/|$)/.test(line));
  t.deepEqual(unexpected.slice(0, 20), [], 'no file dpkg installed differs from its recorded checksum');
  t.true(problems.length > 100, `the deleted docs and man pages are reported missing (${problems.length})`);
  t.log(`dpkg --verify: ${problems.length} files missing, all under /usr/share/doc or /usr/share/man`);
  const useradd = out.get('useradd') ?? [];
  t.is(useradd.length, 2, stdout.slice(-2000));
  t.true(Number(useradd[0]) >= 1000, 'a uid from the normal range');
  t.is(useradd[1], 'devtest');
  t.regex(out.get('root')?.[0] ?? '', /^\/dev\/(mapper\/devmapper-|dm-)\S* \/ ext4 /, 'a thin device with ext4 is /');
}

/** /etc/hostname as the top layer wrote it (runc leaves it alone; containerd bind-mounts its own). */
export function assertTopLayerHostname(t: ExecutionContext, stdout: string): void {
  t.deepEqual(sections(stdout).get('hostname'), [HOSTNAME_CONTENT.trim()], 'the file the top layer replaced');
}
