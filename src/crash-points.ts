// Test-only hook for the crash tests, below both the thin layer and the driver that use it: when
// DEVMAPPER_TEST_CRASH_AT names a step, the process kills itself with SIGKILL there, exactly as
// a crash would stop it.
const crashAt = process.env.DEVMAPPER_TEST_CRASH_AT;

export function crashPoint(step: string): void {
  if (crashAt === step) process.kill(process.pid, 'SIGKILL');
}
