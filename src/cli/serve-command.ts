// `devmapper serve containerd --socket PATH`: the containerd snapshotter for the home, in the
// foreground until SIGTERM or SIGINT. Stopping lets calls under way finish, then releases the
// home without unmounting or deactivating anything: running containers keep their rootfs, and
// the next `serve` adopts every snapshot.
import { serveContainerd } from '../containerd/service.js';
import { logger } from '../log.js';
import { expectPositionals, parseArgs, UsageError } from './args.js';
import { type Io, openDriver } from './command-context.js';
import { progress } from './output.js';

export const DEFAULT_SOCKET = '/run/devmapper/containerd.sock';
const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error'] as const;

export async function serveCommand(argv: string[], io: Io): Promise<number> {
  const parsed = parseArgs(argv, { values: ['socket', 'log-level'] });
  const [engine] = expectPositionals(
    parsed,
    1,
    1,
    'devmapper serve containerd [--socket PATH] [--log-level debug|info|...]',
  );
  if (engine !== 'containerd')
    throw new UsageError(`serve: unknown engine ${JSON.stringify(engine)} (only containerd)`);
  const socket = parsed.values.get('socket') ?? DEFAULT_SOCKET;
  if (!socket.startsWith('/')) throw new UsageError('--socket must be an absolute path');
  const level = parsed.values.get('log-level') ?? (process.env.DEVMAPPER_LOG ? undefined : 'info');
  if (level !== undefined) {
    const index = LOG_LEVELS.indexOf(level as (typeof LOG_LEVELS)[number]);
    if (index < 0) throw new UsageError(`--log-level takes one of ${LOG_LEVELS.join(', ')}`);
    logger.settings.type = 'pretty';
    logger.settings.minLevel = index + 1; // tslog: 1 trace, 2 debug, 3 info, 4 warn, 5 error
  }
  const driver = await openDriver(io.home, io.lockTimeoutMs, { command: 'serve containerd', write: true });
  // Handlers go in before the socket is bound and announced: a supervisor may signal the moment
  // it answers, and a SIGTERM with no handler yet would kill the process instead of stopping it.
  // (While the home is still being opened, e.g. --wait for its lock, a signal just ends it.)
  const signalled = new Promise<NodeJS.Signals>((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'));
    process.once('SIGINT', () => resolve('SIGINT'));
  });
  let server: Awaited<ReturnType<typeof serveContainerd>>;
  try {
    server = await serveContainerd({ driver, socket });
  } catch (error) {
    await driver.close();
    throw error;
  }
  progress(`devmapper: containerd snapshotter for ${io.home} listening on ${socket}`);
  const signal = await signalled;
  progress(`devmapper: ${signal}: stopping (mounts and devices stay)`);
  await server.close();
  await driver.close();
  return 0;
}
