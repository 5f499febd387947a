// `devmapper create|mount|umount|rm`: the commands that make, mount and remove one layer.
//
// Mounts across processes: each command is its own process and lets go of the home with
// Driver.close(), which leaves mounts in place; the next command adopts each with one reference.
// So for the CLI a layer is mounted or not: `mount` of a mounted layer prints its path and adds
// nothing, and one `umount` unmounts it. (Counting CLI mounts would need the count persisted and
// a crashed or killed holder would keep it up forever; a layer shared by several users is
// what the library's get()/put() counts in one long-lived process, such as `serve containerd`.)
import { assertLayerId, assertMountLabel } from '../driver/options.js';
import { DevmapperError } from '../errors.js';
import { checkArgument, expectPositionals, parseArgs, UsageError } from './args.js';
import { type Io, recordedOptions, withDriver } from './command-context.js';
import { cliSize } from './driver-flags.js';
import { humanBytes, Progress, progress, toJson } from './output.js';

export async function createCommand(argv: string[], io: Io): Promise<void> {
  const parsed = parseArgs(argv, { values: ['parent', 'size'] });
  const [id] = expectPositionals(parsed, 1, 1, 'devmapper create <id> [--parent <id>] [--size <size>]');
  const parent = parsed.values.get('parent');
  const size = parsed.values.get('size');
  checkArgument(() => {
    assertLayerId(id);
    if (parent !== undefined) assertLayerId(parent, '--parent');
  });
  if (size !== undefined) cliSize(size, '--size');
  await withDriver(
    io,
    async (driver) => {
      try {
        await driver.create(id!, parent, { size });
      } catch (error) {
        // Only the home knows the parent's size: a smaller --size is still a usage error.
        if (
          (error as { code?: string }).code === 'ERR_DM_INVALID_ARGUMENT' &&
          /^size: /.test((error as Error).message)
        ) {
          throw new UsageError(`--size: ${(error as Error).message.slice('size: '.length)}`);
        }
        // The device takes any size the kernel does; the filesystem may not grow that far (ext4
        // reserves descriptor blocks for about 1024 times its size at mkfs). The layer is rolled back.
        if (
          size !== undefined &&
          (error as { code?: string }).code === 'ERR_DM_TOOL_FAILED' &&
          /^(resize2fs|xfs_growfs) /.test((error as Error).message)
        ) {
          throw new UsageError(
            `--size: ${JSON.stringify(size)} is more than the layer's filesystem can grow to (nothing was created): ${(error as Error).message}`,
          );
        }
        throw error;
      }
      const layer = await driver.metadata(id!);
      io.out(io.json ? `${toJson(layer)}\n` : `created ${id} (thin id ${layer.deviceId}, ${humanBytes(layer.size)})\n`);
    },
    { command: 'create', write: true },
  );
}

export async function mountCommand(argv: string[], io: Io): Promise<void> {
  const parsed = parseArgs(argv, { values: ['label'] });
  const [id] = expectPositionals(parsed, 1, 1, 'devmapper mount <id> [--label <selinux context>]');
  const label = parsed.values.get('label');
  checkArgument(() => {
    assertLayerId(id);
    if (label !== undefined) assertMountLabel(label);
  });
  await withDriver(
    io,
    async (driver) => {
      // Mounted by an earlier command (adopted): the same path, nothing added (see the top of this file).
      const already = driver.mountCount(id!) > 0 && (await driver.exists(id!));
      const rootfs = await driver.get(id!, label);
      if (already) {
        await driver.put(id!); // back to the one reference the mount has across commands
        if (!io.json) progress(`${id} was already mounted (one \`devmapper umount ${id}\` unmounts it)`);
      }
      io.out(io.json ? `${toJson({ id, rootfs, alreadyMounted: already })}\n` : `${rootfs}\n`);
    },
    { command: 'mount', write: true },
  );
}

export async function umountCommand(argv: string[], io: Io): Promise<void> {
  const [id] = expectPositionals(parseArgs(argv, {}), 1, 1, 'devmapper umount <id>');
  checkArgument(() => assertLayerId(id));
  await withDriver(
    io,
    async (driver) => {
      if (!(await driver.exists(id!)))
        throw new DevmapperError(
          'ERR_DM_UNKNOWN_LAYER',
          `layer ${id} does not exist (\`devmapper ls\` lists the layers)`,
        );
      const wasMounted = driver.mountCount(id!) > 0;
      if (wasMounted) await driver.put(id!);
      else if (!io.json) progress(`${id} is not mounted: nothing to do`);
      io.out(io.json ? `${toJson({ id, mounted: driver.mountCount(id!) > 0, wasMounted })}\n` : '');
    },
    { command: 'umount', write: true },
  );
}

export async function rmCommand(argv: string[], io: Io): Promise<void> {
  const [id] = expectPositionals(parseArgs(argv, {}), 1, 1, 'devmapper rm <id>');
  checkArgument(() => assertLayerId(id));
  await withDriver(
    io,
    async (driver) => {
      const layer = (await driver.exists(id!)) ? await driver.metadata(id!) : undefined;
      const discards = recordedOptions(io.home).discardOnDelete === true;
      // Discarding a layer's blocks (--blkdiscard) takes time in proportion to its size: say so at
      // once; otherwise only a removal that takes over a second shows a line.
      await Progress.run(
        `removing ${id}${discards && layer ? ` (discarding its ${humanBytes(layer.size)} of blocks first)` : ''}`,
        () => driver.remove(id!),
        { delayMs: discards && layer ? 0 : 1000 },
      );
      io.out(io.json ? `${toJson({ id, removed: !(await driver.exists(id!)) })}\n` : '');
    },
    { command: 'rm', write: true },
  );
}
