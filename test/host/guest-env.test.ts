// The test kernel's jobs get the DEVMAPPER_* knobs the kernel tests read: each one named in a
// test source (process.env.DEVMAPPER_X) is forwarded by guestEnv, except the few held back on
// purpose. (DEVMAPPER_LOAD_OPS was once dropped, so a 10,000-call load run quietly ran 1,000.)
import test from 'ava';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { GUEST_ENV_HELD_BACK, guestEnv } from '../vm/guest-env.js';

const testDir = fileURLToPath(new URL('../../../test/', import.meta.url));

function knobsReadIn(dir: string): Set<string> {
  const names = new Set<string>();
  for (const file of readdirSync(dir, { recursive: true, encoding: 'utf8' })) {
    if (!file.endsWith('.ts')) continue;
    const text = readFileSync(join(dir, file), 'utf8');
    for (const m of text.matchAll(/process\.env(?:\.|\[['"])(DEVMAPPER_[A-Z0-9_]+)/g)) names.add(m[1]!);
  }
  return names;
}

test('every DEVMAPPER_* knob a kernel test reads reaches the guest', (t) => {
  const knobs = knobsReadIn(join(testDir, 'kernel'));
  t.true(knobs.has('DEVMAPPER_LOAD_OPS') && knobs.has('DEVMAPPER_SOAK_SEED'), [...knobs].join(' '));
  const env = Object.fromEntries([...knobs].map((k) => [k, `v-${k}`]));
  const forwarded = guestEnv({ ...env, CI: 'true', PATH: '/host/bin', HOME: '/root' });
  for (const knob of knobs) {
    if (GUEST_ENV_HELD_BACK.has(knob)) t.false(knob in forwarded, `${knob} is held back`);
    else t.is(forwarded[knob], `v-${knob}`, knob);
  }
  t.is(forwarded.CI, 'true');
  t.false('PATH' in forwarded, "the guest's init sets PATH");
});

test('held back: a default home, the crash hook, the choice of kernel; empty values are not sent', (t) => {
  const forwarded = guestEnv({
    DEVMAPPER_HOME: '/var/lib/devmapper',
    DEVMAPPER_TEST_CRASH_AT: 'create:after-message',
    DEVMAPPER_VM: 'qemu',
    DEVMAPPER_LOAD_OPS: '10000',
    DEVMAPPER_LOG: '',
  });
  t.deepEqual(forwarded, { DEVMAPPER_LOAD_OPS: '10000' });
});
