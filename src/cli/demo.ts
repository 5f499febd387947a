// `devmapper demo`: the README's main job. In a temporary home on small loop files: an image
// layer, a container layer on top, a write into it, status and ls, then everything cleaned up.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Driver } from '../driver/driver.js';
import { expectPositionals, parseArgs } from './args.js';
import { requireDeviceMapper } from './host.js';
import type { Io } from './command-context.js';
import { formatLayerRows, formatStatus, layerRows } from './report-commands.js';
import { progress, toJson } from './output.js';

export async function demoCommand(argv: string[], io: Io): Promise<void> {
  expectPositionals(parseArgs(argv, {}), 0, 0, 'devmapper demo');
  requireDeviceMapper();
  const home = mkdtempSync(join(tmpdir(), 'devmapper-demo-'));
  const say = (line: string): void => {
    if (!io.json) io.out(`${line}\n`);
  };
  const report: Record<string, unknown> = { home };
  let driver: Driver | undefined;
  try {
    progress(`demo home ${home}: creating a pool on sparse loop files and formatting the base device`);
    driver = await Driver.init({ home, baseSize: '256M', loopDataSize: '1G', loopMetadataSize: '64M' });
    await driver.create('image');
    const imageRoot = await driver.get('image');
    writeFileSync(join(imageRoot, 'etc-release'), 'devmapper demo image\n');
    await driver.put('image');
    say(`image layer 'image' created, wrote ${join(imageRoot, 'etc-release')}`);
    await driver.create('container', 'image');
    const root = await driver.get('container');
    writeFileSync(join(root, 'hello.txt'), 'written in the container layer\n');
    const inherited = readFileSync(join(root, 'etc-release'), 'utf8');
    say(`container layer 'container' on 'image' mounted at ${root}`);
    say(`  sees the image's file: ${inherited.trim()}`);
    say(`  wrote hello.txt`);
    const status = await driver.status();
    const layers = await layerRows(driver);
    report.status = status;
    report.layers = layers;
    if (!io.json) {
      io.out(`\n${formatStatus(status, false)}\n`);
      io.out(formatLayerRows(layers));
    }
    await driver.put('container');
    await driver.remove('container');
    await driver.remove('image');
    say('\nremoved both layers');
  } finally {
    if (driver) await driver.cleanup();
    rmSync(home, { recursive: true, force: true });
  }
  say('cleaned up: pool deactivated, loop devices detached, temporary home removed');
  if (io.json) io.out(`${toJson({ ...report, cleanedUp: true })}\n`);
}
