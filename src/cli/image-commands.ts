// `devmapper image …` (import, ls, rm, rootfs) and `devmapper diff`: images without an engine.
import { statSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { assertLayerId } from '../driver/options.js';
import { systemErrorOf } from '../errors.js';
import { getImage, imageRootfs, importImage, listImages, removeImage } from '../image/images.js';
import { runtimeSpec } from '../image/runtime-spec.js';
import { checkArgument, expectPositionals, parseArgs, UsageError } from './args.js';
import { type Io, withDriver } from './command-context.js';
import { progress, table, toJson } from './output.js';

export const IMAGE_USAGE = `devmapper image <command>
  import FILE.tar [--name REF]   an OCI image layout tarball or a docker save archive
  ls                             images: ref, layers, config digest
  rm REF                         forget an image; its layers nothing else uses are removed
  rootfs REF ID [--bundle DIR]   a writable layer ID on the image, mounted; prints its rootfs
                                 (--bundle: also writes DIR/config.json for runc/crun)`;

export async function imageCommand(argv: string[], io: Io): Promise<void> {
  const [sub, ...rest] = argv;
  switch (sub) {
    case 'import': {
      const parsed = parseArgs(rest, { values: ['name'] });
      const [file] = expectPositionals(parsed, 1, 1, 'devmapper image import FILE.tar [--name REF]');
      const name = parsed.values.get('name');
      if (name !== undefined && name.trim() === '') throw new UsageError('--name must not be empty');
      await withDriver(
        io,
        async (driver) => {
          progress(`importing ${file}`);
          const records = await importImage(driver, resolve(file!), { name, onProgress: progress });
          io.out(
            io.json
              ? `${toJson(records.map(({ ref, configDigest, layers }) => ({ ref, configDigest, layers })))}\n`
              : records.map((r) => `${r.ref} (${r.layers.length} layers)\n`).join(''),
          );
        },
        { command: 'image import', write: true },
      );
      return;
    }
    case 'ls': {
      expectPositionals(parseArgs(rest, {}), 0, 0, 'devmapper image ls');
      await withDriver(
        io,
        async (driver) => {
          const images = await listImages(driver);
          io.out(
            io.json
              ? `${toJson(
                  images.map(({ ref, configDigest, manifestDigest, layers, importedAt }) => ({
                    ref,
                    configDigest,
                    manifestDigest,
                    layers,
                    importedAt,
                  })),
                )}\n`
              : table(
                  ['REF', 'LAYERS', 'CONFIG', 'TOP LAYER'],
                  images.map((i) => [
                    i.ref,
                    i.layers.length,
                    i.configDigest.slice(0, 19),
                    i.layers.at(-1)?.layerId.slice(0, 16) ?? '-',
                  ]),
                ),
          );
        },
        { command: 'image ls', write: false },
      );
      return;
    }
    case 'rm': {
      const [ref] = expectPositionals(parseArgs(rest, {}), 1, 1, 'devmapper image rm REF');
      await withDriver(
        io,
        async (driver) => {
          const removed = await removeImage(driver, ref!);
          io.out(
            io.json
              ? `${toJson({ ref, removedLayers: removed })}\n`
              : `removed ${ref} (${removed.length} layers freed)\n`,
          );
        },
        { command: 'image rm', write: true },
      );
      return;
    }
    case 'rootfs': {
      const parsed = parseArgs(rest, { values: ['bundle'] });
      const [ref, id] = expectPositionals(parsed, 2, 2, 'devmapper image rootfs REF ID [--bundle DIR]');
      checkArgument(() => assertLayerId(id, 'ID'));
      const bundle = parsed.values.get('bundle');
      // Checked before the home is opened: a bundle that cannot take config.json is a usage error, not a layer left mounted.
      if (bundle !== undefined && !statSync(resolve(bundle), { throwIfNoEntry: false })?.isDirectory())
        throw new UsageError(`--bundle ${bundle}: not a directory (make it first)`);
      await withDriver(
        io,
        async (driver) => {
          const image = await getImage(driver, ref!);
          const rootfs = await imageRootfs(driver, ref!, id!);
          if (bundle !== undefined) {
            const file = resolve(bundle, 'config.json');
            try {
              writeFileSync(file, `${JSON.stringify(runtimeSpec(image.config, rootfs, id!), null, 2)}\n`, {
                mode: 0o644,
              });
            } catch (error) {
              // No config.json, no container: the layer made for it goes again.
              await driver.put(id!);
              await driver.remove(id!);
              throw systemErrorOf(error, { syscall: 'open', device: file });
            }
          }
          io.out(io.json ? `${toJson({ ref, id, rootfs })}\n` : `${rootfs}\n`);
        },
        { command: 'image rootfs', write: true },
      );
      return;
    }
    default:
      throw new UsageError(sub ? `unknown image command ${JSON.stringify(sub)}\n${IMAGE_USAGE}` : IMAGE_USAGE);
  }
}

/** `devmapper diff ID [--parent P]`: the layer's diff tar on stdout (parent: its own, unless given). */
export async function diffCommand(argv: string[], io: Io): Promise<void> {
  const parsed = parseArgs(argv, { values: ['parent'] });
  const [id] = expectPositionals(parsed, 1, 1, 'devmapper diff ID [--parent P] > layer.tar');
  checkArgument(() => {
    assertLayerId(id);
    const parent = parsed.values.get('parent');
    if (parent !== undefined) assertLayerId(parent, 'parent');
  });
  if (process.stdout.isTTY) throw new UsageError('devmapper diff writes a tar: redirect stdout to a file or a pipe');
  await withDriver(
    io,
    async (driver) => {
      const parent = parsed.values.get('parent') ?? (await driver.metadata(id!)).parent;
      const stream = await driver.diff(id!, parent);
      await pipeline(stream, process.stdout, { end: false });
      await stream.released; // unmounted before the driver is closed
    },
    { command: 'diff', write: true },
  );
}
