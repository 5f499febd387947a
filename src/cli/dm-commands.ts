// `devmapper dm ...`: raw device-mapper inspection without dmsetup, on the FFI backend --home
// was initialised with (the default one when it has no record).
import { DeviceMapper } from '../ioctl/device-mapper.js';
import { Kernel } from '../ioctl/kernel.js';
import { recordedFfi } from './home.js';
import { expectPositionals, parseArgs, UsageError } from './args.js';
import { requireDeviceMapper } from './host.js';
import { keyValues, table, toJson } from './output.js';
import type { Io } from './command-context.js';
import { DM_USAGE } from './usage.js';

export async function dmCommand(argv: string[], io: Io): Promise<void> {
  const [sub, ...rest] = argv;
  // Opened once the arguments are known good, so a usage error stays one without device-mapper.
  let handle: DeviceMapper | undefined;
  const dm = (): DeviceMapper => {
    requireDeviceMapper();
    handle ??= DeviceMapper.open({ kernel: Kernel.for(recordedFfi(io.home)) });
    return handle;
  };
  try {
    switch (sub) {
      case 'version': {
        expectPositionals(parseArgs(rest, {}), 0, 0, 'devmapper dm version');
        const v = dm().version();
        io.out(io.json ? `${toJson({ driverVersion: v.join('.') })}\n` : `Driver version: ${v.join('.')}\n`);
        return;
      }
      case 'ls': {
        expectPositionals(parseArgs(rest, {}), 0, 0, 'devmapper dm ls');
        const devices = dm().list();
        if (io.json) io.out(`${toJson(devices)}\n`);
        else
          io.out(
            devices.length === 0
              ? 'No devices found\n'
              : table(
                  ['NAME', 'DEV', 'EVENT', 'UUID'],
                  devices.map((d) => [d.name, `${d.dev.major}:${d.dev.minor}`, d.eventNr, d.uuid || null]),
                ),
          );
        return;
      }
      case 'info': {
        const [name] = expectPositionals(parseArgs(rest, {}), 1, 1, 'devmapper dm info <name>');
        const info = dm().info(name!);
        io.out(
          io.json
            ? `${toJson(info)}\n`
            : keyValues([
                ['Name', info.name],
                ['UUID', info.uuid || null],
                ['Major, minor', `${info.dev.major}, ${info.dev.minor}`],
                ['State', info.suspended ? 'SUSPENDED' : 'ACTIVE'],
                ['Read ahead', null],
                [
                  'Tables present',
                  [info.active && 'LIVE', info.inactiveTable && 'INACTIVE'].filter(Boolean).join(' & ') || 'None',
                ],
                ['Open count', info.openCount],
                ['Event number', info.eventNr],
                ['Number of targets', info.targetCount],
                ['Read only', info.readOnly],
                ['Deferred remove', info.deferredRemove],
              ]),
        );
        return;
      }
      case 'table':
      case 'status': {
        const parsed = parseArgs(rest, { flags: sub === 'status' ? ['inactive', 'flush'] : ['inactive'] });
        const [name] = expectPositionals(parsed, 1, 1, `devmapper dm ${sub} <name>`);
        const inactive = parsed.flags.has('inactive');
        const targets =
          sub === 'table'
            ? dm().table(name!, { inactive })
            : dm().status(name!, { inactive, noFlush: !parsed.flags.has('flush') });
        io.out(
          io.json
            ? `${toJson(targets)}\n`
            : targets.map((t) => `${t.start} ${t.length} ${t.type}${t.params ? ` ${t.params}` : ''}\n`).join(''),
        );
        return;
      }
      case 'targets': {
        expectPositionals(parseArgs(rest, {}), 0, 0, 'devmapper dm targets');
        const targets = dm().targets();
        io.out(
          io.json
            ? `${toJson(targets)}\n`
            : table(
                ['TARGET', 'VERSION'],
                targets.map((t) => [t.name, `v${t.version.join('.')}`]),
              ),
        );
        return;
      }
      case 'message': {
        const [name, sector, ...words] = expectPositionals(
          parseArgs(rest, {}),
          3,
          Infinity,
          'devmapper dm message <name> <sector> <text...>',
        );
        if (!/^\d+$/.test(sector!))
          throw new UsageError(`sector must be a whole number, not ${JSON.stringify(sector)}`);
        const reply = dm().message(name!, BigInt(sector!), words.join(' '));
        io.out(io.json ? `${toJson({ reply: reply ?? null })}\n` : reply ? `${reply}\n` : '');
        return;
      }
      default:
        throw new UsageError(sub ? `unknown dm command ${JSON.stringify(sub)}\n${DM_USAGE}` : DM_USAGE);
    }
  } finally {
    handle?.close();
  }
}
