// The guest half of the power-cut test (see run.ts). One boot of the test kernel runs one
// round on a home whose loop files live on the host (hostfs), so they survive the guest:
//
//   1. verify: replays the acknowledgement log (every line written and fsync'd before the
//      host could see it) into a model, opens the home with Driver.init (which recovers an
//      interrupted create/remove), and checks: check() clean (no leaked thin id, no record
//      without a device, no device without a record, nothing stray), thin_check on a metadata
//      snapshot passes, every layer the log says was created (and not removed) exists, no
//      layer the log says was removed does, and every file that a finished put wrote reads back
//      with its checksum (a snapshot inherits its parent's finished files);
//   2. stream: writes `stream-start`, then runs seeded random creates, snapshots of mounted
//      layers, mounts with writes, puts and removes, logging `begin` before and `ack` after
//      each, until the host kills the whole guest (no shutdown, no sync).
//
// `final` verifies, cleans up, and runs thin_check on the inactive pool's metadata file.
// Usage: node guest.js round|final <home> <log> <seed>
import { existsSync, readFileSync, statfsSync, writeFileSync } from 'node:fs';
import { Kernel } from '../../src/ioctl/kernel.js';
import { createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { Driver } from '../../src/driver/driver.js';
import type { DriverOptions } from '../../src/driver/options.js';
import { thinCheckOffline } from '../../src/driver/thin-check.js';
import { openTransactionExists } from '../kernel/driver-helpers.js';
import { prng } from '../prng.js';
import { logEntries, OpLog } from './op-log.js';
export { prng };

// 10 layers of at most 32 MiB each fit the data file even if none shares a block.
export const POWER_CUT_OPTIONS = {
  baseSize: '32M',
  loopDataSize: '512M',
  loopMetadataSize: '8M',
  minFreeSpacePercent: 0,
} as const;

/** Replayed from the log: layer id -> its finished files (name -> sha256). */
export type Model = Map<string, Map<string, string>>;

export interface LogState {
  model: Model;
  /** The last `begin` without its `ack`: the operation the cut may have interrupted. */
  inFlight: { op: string; id: string; parent?: string } | undefined;
  acked: { create: number; remove: number; put: number };
}

/** A line of the log: `<kind> <json>`. */
export function replay(text: string): LogState {
  const model: Model = new Map();
  let inFlight: LogState['inFlight'];
  const acked = { create: 0, remove: 0, put: 0 };
  for (const { kind, value } of logEntries(text)) {
    if (kind === 'begin') inFlight = value;
    else if (kind === 'ack') {
      inFlight = undefined;
      if (value.op === 'create') model.set(value.id, new Map(value.parent ? (model.get(value.parent) ?? []) : []));
      else if (value.op === 'remove') model.delete(value.id);
      else if (value.op === 'put')
        for (const [name, hash] of Object.entries(value.files as Record<string, string>))
          model.get(value.id)?.set(name, hash);
      if (value.op in acked) acked[value.op as keyof typeof acked]++;
    } else if (kind === 'verified') {
      inFlight = undefined;
      model.clear();
      for (const [id, files] of Object.entries(value.layers as Record<string, Record<string, string>>))
        model.set(id, new Map(Object.entries(files)));
    }
  }
  return { model, inFlight, acked };
}

const sha = (data: Buffer): string => createHash('sha256').update(data).digest('hex');

async function verify(driver: Driver, state: LogState, openTransaction: boolean): Promise<Record<string, unknown>> {
  const problems: string[] = [];
  const started = Date.now();
  const report = await driver.check({ thinCheck: true });
  if (!report.clean)
    problems.push(
      `check not clean: ${JSON.stringify(report, (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v))}`,
    );
  if (report.thinCheck && !(report.thinCheck.ran ? report.thinCheck.ok : true))
    problems.push(`thin_check: ${report.thinCheck.summary}`);
  const actual = new Set((await driver.list()).map((l) => l.id));
  const expected = new Map(state.model);
  const flight = state.inFlight;
  let inFlightOutcome = 'none';
  if (flight?.op === 'create') {
    inFlightOutcome = actual.has(flight.id) ? 'create done' : 'create rolled back';
    if (actual.has(flight.id))
      expected.set(flight.id, new Map(flight.parent ? (state.model.get(flight.parent) ?? []) : []));
  } else if (flight?.op === 'remove') {
    inFlightOutcome = actual.has(flight.id) ? 'remove not done' : 'remove done';
    if (!actual.has(flight.id)) expected.delete(flight.id);
  } else if (flight) inFlightOutcome = `${flight.op} interrupted`;
  for (const id of expected.keys()) if (!actual.has(id)) problems.push(`layer ${id} was reported created but is gone`);
  for (const id of actual)
    if (!expected.has(id)) problems.push(`layer ${id} exists but the log says it was removed or never created`);
  let files = 0;
  let bytes = 0;
  for (const [id, wanted] of expected) {
    if (!actual.has(id) || wanted.size === 0) continue;
    const rootfs = await driver.get(id);
    try {
      for (const [name, hash] of wanted) {
        const path = join(rootfs, name);
        if (!existsSync(path)) {
          problems.push(`layer ${id}: finished file ${name} is missing`);
          continue;
        }
        const data = readFileSync(path);
        if (sha(data) !== hash) problems.push(`layer ${id}: finished file ${name} has other content`);
        files++;
        bytes += data.length;
      }
    } finally {
      await driver.put(id);
    }
  }
  if (problems.length > 0) throw new Error(`power-cut verification failed:\n  ${problems.join('\n  ')}`);
  return {
    layers: Object.fromEntries([...expected].map(([id, f]) => [id, Object.fromEntries(f)])),
    figures: {
      layers: expected.size,
      files,
      bytes,
      inFlight: inFlightOutcome,
      openTransaction,
      verifyMs: Date.now() - started,
      thinCheck: report.thinCheck?.summary,
    },
  };
}

async function stream(driver: Driver, log: OpLog, random: () => number, round: number, model: Model): Promise<void> {
  const mounted = new Map<string, { rootfs: string; files: Record<string, string> }>();
  let n = 0;
  const pick = <T>(items: T[]): T | undefined => items[Math.floor(random() * items.length)];
  log.write('stream-start', { round });
  for (;;) {
    const ids = [...model.keys()];
    const roll = random();
    if (roll < 0.3 || ids.length < 2) {
      // create: on the base, on a layer, or a snapshot of a mounted layer (suspends its device)
      if (ids.length >= 10) continue;
      const id = `r${round}-${n++}`;
      const mountedIds = [...mounted.keys()];
      const parent =
        random() < 0.3 && mountedIds.length > 0 ? pick(mountedIds) : random() < 0.7 ? pick(ids) : undefined;
      log.write('begin', { op: 'create', id, parent });
      await driver.create(id, parent);
      log.write('ack', { op: 'create', id, parent });
      model.set(id, new Map(parent ? (model.get(parent) ?? []) : []));
    } else if (roll < 0.55) {
      // get, then write files (they count once the put has returned)
      const id = pick(ids.filter((i) => !mounted.has(i)));
      if (!id) continue;
      mounted.set(id, { rootfs: await driver.get(id), files: {} });
    } else if (roll < 0.75) {
      const entry = pick([...mounted.entries()]);
      if (!entry) continue;
      const [_id, m] = entry;
      const size =
        random() < 0.2 ? (1 << 20) + Math.floor(random() * (1 << 20)) : 1 + Math.floor(random() * (64 << 10));
      // Each layer's filesystem is the base's 32 MiB: files stop well before it is full.
      const fs = statfsSync(m.rootfs);
      if (Number(fs.bavail) * Number(fs.bsize) < size + (8 << 20)) continue;
      const data = randomBytes(size);
      const name = `f-${round}-${n++}.bin`;
      writeFileSync(join(m.rootfs, name), data);
      m.files[name] = sha(data);
    } else if (roll < 0.9) {
      const entry = pick([...mounted.entries()]);
      if (!entry) continue;
      const [id, m] = entry;
      log.write('begin', { op: 'put', id });
      await driver.put(id);
      log.write('ack', { op: 'put', id, files: m.files });
      for (const [name, hash] of Object.entries(m.files)) model.get(id)?.set(name, hash);
      mounted.delete(id);
    } else {
      const id = pick(ids.filter((i) => !mounted.has(i)));
      if (!id || ids.length < 3) continue;
      log.write('begin', { op: 'remove', id });
      await driver.remove(id);
      log.write('ack', { op: 'remove', id });
      model.delete(id);
    }
  }
}

async function main(): Promise<void> {
  const [mode, home, logPath, seedText] = process.argv.slice(2);
  if ((mode !== 'round' && mode !== 'final') || !home || !logPath || !seedText) {
    throw new Error('usage: guest.js round|final <home> <log> <seed>');
  }
  const options: DriverOptions = { home, ...POWER_CUT_OPTIONS };
  const state = replay(existsSync(logPath) ? readFileSync(logPath, 'utf8') : '');
  const openTransaction = openTransactionExists(home);
  const log = new OpLog(logPath);
  const initStarted = Date.now();
  const driver = await Driver.init(options);
  const initMs = Date.now() - initStarted;
  const verified = await verify(driver, state, openTransaction);
  log.write('verified', { ...verified, figures: { ...(verified.figures as object), initMs } });
  process.stdout.write(`power-cut: verified ${JSON.stringify({ ...(verified.figures as object), initMs })}\n`);
  if (mode === 'final') {
    await driver.cleanup();
    const result = await thinCheckOffline(join(home, 'devicemapper', 'metadata'), { kernel: Kernel.for() });
    log.write('final', { thinCheck: result.summary, ok: result.ran ? result.ok : null });
    if (result.ran && !result.ok) throw new Error(`thin_check on the inactive pool failed:\n${result.output}`);
    process.stdout.write(`power-cut: final ${result.summary}\n`);
    log.close();
    return;
  }
  await stream(
    driver,
    log,
    prng(Number(seedText)),
    Number(seedText),
    new Map(
      [...Object.entries(verified.layers as Record<string, Record<string, string>>)].map(([id, f]) => [
        id,
        new Map(Object.entries(f)),
      ]),
    ),
  );
}

if (process.argv[1] && import.meta.url === new URL(`file://${process.argv[1]}`).href) {
  main().catch((error: unknown) => {
    process.stderr.write(`power-cut guest: ${(error as Error).stack ?? String(error)}\n`);
    process.exit(1);
  });
}
