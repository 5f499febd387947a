// The environment a test job inside the test kernel gets from the host (scripts/test.mjs, npm run vm).
/**
 * What of this process's environment a test job in the guest gets: CI and every DEVMAPPER_*
 * knob the tests read (DEVMAPPER_FFI, _LOG, _SOAK_*, _LOAD_*, ...), so that a knob added later
 * is not silently dropped at the guest's door. Left out: DEVMAPPER_HOME (a default home would
 * change what the CLI opens), DEVMAPPER_TEST_CRASH_AT (it would kill every driver in the guest;
 * driver-crash.test.ts sets it per child) and DEVMAPPER_VM (which kernel to boot: the host's choice).
 */
export function guestEnv(env: NodeJS.ProcessEnv = process.env): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(env)) {
    if (value === undefined || value === '') continue;
    if (key === 'CI' || (key.startsWith('DEVMAPPER_') && !GUEST_ENV_HELD_BACK.has(key))) out[key] = value;
  }
  return out;
}

export const GUEST_ENV_HELD_BACK: ReadonlySet<string> = new Set([
  'DEVMAPPER_HOME',
  'DEVMAPPER_TEST_CRASH_AT',
  'DEVMAPPER_VM',
]);
