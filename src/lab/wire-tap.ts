/**
 * The lab's wire tap (issue 9, "plaintext on the wire"): a capture of every
 * frame that crosses a lab's underlay bridge, scanned for an application
 * payload marker. Tests make the traffic between meshed pods carry
 * WIRE_MARKER, so a marker seen on the bridge means mesh traffic left a node
 * in clear. When AMBIT_WIRE_AUDIT_DIR is set, `labUp` starts one tap per lab
 * (`ambit lab wire-tap`, detached, inside the bridge netns, so CLI-created
 * labs are audited too) and `labDown` stops it; the tap writes
 * `<dir>/<lab>-<pid>.json` when it stops (and every few seconds while it
 * runs, and on SIGUSR2, so a killed tap still leaves its counts behind).
 *
 * The scanner parses the pcap stream itself (`tcpdump -w -`): full frames,
 * no snap length and no capture filter, so plaintext on any port is seen.
 * A marker is found when it lies inside one frame, or when it is split
 * between two consecutive segments of one flow (the last bytes of each
 * flow's previous payload are kept), or when it is split across the pipe's
 * read chunks (partial pcap records are reassembled before scanning).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { setImmediate as setImmediatePromise, setTimeout as sleep } from 'node:timers/promises';
import { BRIDGE_NAME } from './topology.js';

/** Environment variable naming the directory that receives the tap reports; unset = no taps. */
export const WIRE_AUDIT_ENV = 'AMBIT_WIRE_AUDIT_DIR';
/** The payload marker that must never cross the lab's underlay in clear. */
export const WIRE_MARKER = 'AMBIT-CANARY';
/** The pseudo-node name under which a lab records its tap process. */
export const WIRE_TAP_RECORD = 'wire-tap';

const CONTEXT_BYTES = 48;
const MAX_FLOWS = 4096;
const PCAP_HEADER = 24;
const RECORD_HEADER = 16;
/** Larger than any sane snap length; a bigger record means the stream is corrupt. */
const MAX_RECORD = 1 << 20;

export interface WireHit {
  /** e.g. `tcp 10.10.0.2:41234 > 10.10.0.3:8080` (or `frame` when not IP). */
  readonly flow: string;
  /** Index (1-based) of the frame in which the marker ended. */
  readonly packet: number;
  /** Printable bytes around the marker (non-printables as '.'). */
  readonly context: string;
  /** True when the marker was split across two segments of the flow. */
  readonly spanned: boolean;
}

export interface WireScanStats {
  readonly packets: number;
  /** Captured bytes (whole frames: no snap length is used). */
  readonly bytes: number;
  /** Original frame lengths; differs from `bytes` only if frames were truncated. */
  readonly wireBytes: number;
  readonly markerHits: number;
  readonly firstHit?: WireHit;
  /** Set when the stream stopped making sense (bad magic, absurd record length). */
  readonly error?: string;
}

export interface WireTapReport extends WireScanStats {
  readonly lab: string;
  readonly netns: string;
  readonly iface: string;
  readonly pid: number;
  readonly marker: string;
  readonly firstHitContext: string | null;
  /** 'running' in the periodic snapshots; 'stopped' once the tap ended cleanly. */
  readonly status: 'running' | 'stopped';
  readonly startedAt: string;
  readonly stoppedAt: string | null;
  /** tcpdump's own statistics at exit ("dropped by kernel" > 0 means frames were not inspected). */
  readonly kernelDropped: number | null;
  readonly tcpdumpExit: string | null;
}

function printable(b: Buffer): string {
  let s = '';
  for (const c of b) s += c >= 0x20 && c < 0x7f ? String.fromCharCode(c) : '.';
  return s;
}

function ipv4(b: Buffer, o: number): string {
  return `${b[o]}.${b[o + 1]}.${b[o + 2]}.${b[o + 3]}`;
}

function ipv6(b: Buffer, o: number): string {
  const parts: string[] = [];
  for (let i = 0; i < 16; i += 2) parts.push(b.readUInt16BE(o + i).toString(16));
  return parts.join(':');
}

interface L4 {
  readonly key: string;
  readonly start: number;
  readonly end: number;
}

/** The L4 payload range and flow key of an Ethernet / Linux-cooked frame; undefined when not TCP/UDP over IP. */
export function decodeFrame(frame: Buffer, linkType: number): L4 | undefined {
  let off: number;
  let etherType: number;
  if (linkType === 1) {
    if (frame.length < 14) return undefined;
    off = 12;
    etherType = frame.readUInt16BE(off);
    off += 2;
    while ((etherType === 0x8100 || etherType === 0x88a8) && frame.length >= off + 4) {
      etherType = frame.readUInt16BE(off + 2);
      off += 4;
    }
  } else if (linkType === 113) {
    if (frame.length < 16) return undefined;
    etherType = frame.readUInt16BE(14);
    off = 16;
  } else {
    return undefined;
  }
  let proto: number;
  let src: string;
  let dst: string;
  let l4: number;
  let end: number;
  if (etherType === 0x0800) {
    if (frame.length < off + 20) return undefined;
    const ihl = ((frame[off] ?? 0) & 0x0f) * 4;
    const fragOffset = frame.readUInt16BE(off + 6) & 0x1fff;
    if (ihl < 20 || fragOffset !== 0) return undefined;
    proto = frame[off + 9] ?? 0;
    src = ipv4(frame, off + 12);
    dst = ipv4(frame, off + 16);
    l4 = off + ihl;
    // The IP total length bounds the payload (Ethernet may pad short frames); 0 = TSO, use the frame.
    const total = frame.readUInt16BE(off + 2);
    end = total > 0 ? Math.min(frame.length, off + total) : frame.length;
  } else if (etherType === 0x86dd) {
    if (frame.length < off + 40) return undefined;
    proto = frame[off + 6] ?? 0;
    src = ipv6(frame, off + 8);
    dst = ipv6(frame, off + 24);
    l4 = off + 40;
    const plen = frame.readUInt16BE(off + 4);
    end = plen > 0 ? Math.min(frame.length, l4 + plen) : frame.length;
  } else {
    return undefined;
  }
  if (proto === 6) {
    if (end < l4 + 20) return undefined;
    const doff = ((frame[l4 + 12] ?? 0) >> 4) * 4;
    const sport = frame.readUInt16BE(l4);
    const dport = frame.readUInt16BE(l4 + 2);
    return { key: `tcp ${src}:${sport} > ${dst}:${dport}`, start: Math.min(end, l4 + doff), end };
  }
  if (proto === 17) {
    if (end < l4 + 8) return undefined;
    return { key: `udp ${src}:${frame.readUInt16BE(l4)} > ${dst}:${frame.readUInt16BE(l4 + 2)}`, start: l4 + 8, end };
  }
  return undefined;
}

/**
 * Incremental pcap parser and marker scanner. Feed it the bytes of a pcap
 * stream in chunks of any size; it counts frames and bytes and every marker
 * occurrence, within a frame or spanning two segments of one flow.
 */
export class PcapMarkerScanner {
  readonly marker: Buffer;
  private pending: Buffer = Buffer.alloc(0);
  private headerSeen = false;
  private littleEndian = true;
  private linkType = 1;
  private readonly tails = new Map<string, Buffer>();
  private broken: string | undefined;
  private stats = { packets: 0, bytes: 0, wireBytes: 0, markerHits: 0 };
  private first: WireHit | undefined;

  constructor(marker: string | Buffer = WIRE_MARKER) {
    this.marker = Buffer.isBuffer(marker) ? marker : Buffer.from(marker, 'latin1');
    if (this.marker.length < 2) throw new RangeError('the marker needs at least 2 bytes');
  }

  push(chunk: Buffer): void {
    if (this.broken !== undefined || chunk.length === 0) return;
    let buf = chunk;
    if (this.pending.length > 0) {
      // Complete the record that spans the previous chunk by copying only its missing bytes.
      const have = this.pending.length;
      const need = this.headerSeen && have >= RECORD_HEADER ? RECORD_HEADER + this.recordLength(this.pending, 0) - have : Infinity;
      if (chunk.length < need) {
        // A header still incomplete (rare), or a record longer than this chunk too: join and reparse.
        buf = Buffer.concat([this.pending, chunk]);
        this.pending = Buffer.alloc(0);
      } else {
        const record = Buffer.concat([this.pending, chunk.subarray(0, need)]);
        this.pending = Buffer.alloc(0);
        this.consume(record);
        if (this.broken !== undefined) return;
        buf = chunk.subarray(need);
      }
    }
    const off = this.consume(buf);
    // Keep only the incomplete record (a copy, so the caller's chunk can be reused).
    this.pending = off < buf.length && this.broken === undefined ? Buffer.from(buf.subarray(off)) : Buffer.alloc(0);
  }

  private recordLength(buf: Buffer, off: number): number {
    return this.littleEndian ? buf.readUInt32LE(off + 8) : buf.readUInt32BE(off + 8);
  }

  /** Scans every complete record in `buf` (and the file header if due); returns where the unconsumed rest starts. */
  private consume(buf: Buffer): number {
    let off = 0;
    if (!this.headerSeen) {
      if (buf.length < PCAP_HEADER) return 0;
      const magic = buf.readUInt32LE(0);
      if (magic === 0xa1b2c3d4 || magic === 0xa1b23c4d) this.littleEndian = true;
      else if (magic === 0xd4c3b2a1 || magic === 0x4d3cb2a1) this.littleEndian = false;
      else {
        this.broken = `not a pcap stream (magic 0x${magic.toString(16)})`;
        return buf.length;
      }
      this.linkType = (this.littleEndian ? buf.readUInt32LE(20) : buf.readUInt32BE(20)) & 0x0fffffff;
      this.headerSeen = true;
      off = PCAP_HEADER;
    }
    while (buf.length - off >= RECORD_HEADER) {
      const incl = this.recordLength(buf, off);
      const orig = this.littleEndian ? buf.readUInt32LE(off + 12) : buf.readUInt32BE(off + 12);
      if (incl > MAX_RECORD) {
        this.broken = `corrupt pcap record (length ${incl})`;
        return buf.length;
      }
      if (buf.length - off - RECORD_HEADER < incl) break;
      const frame = buf.subarray(off + RECORD_HEADER, off + RECORD_HEADER + incl);
      this.stats.packets++;
      this.stats.bytes += incl;
      this.stats.wireBytes += orig;
      this.scanFrame(frame);
      off += RECORD_HEADER + incl;
    }
    return off;
  }

  private hit(flow: string, context: Buffer, spanned: boolean): void {
    this.stats.markerHits++;
    this.first ??= { flow, packet: this.stats.packets, context: printable(context), spanned };
  }

  private scanFrame(frame: Buffer): void {
    const m = this.marker;
    const l4 = decodeFrame(frame, this.linkType);
    const flow = l4?.key ?? 'frame';
    // Every occurrence inside the frame (headers included: nothing is skipped).
    for (let i = frame.indexOf(m); i >= 0; i = frame.indexOf(m, i + 1)) {
      this.hit(flow, frame.subarray(Math.max(0, i - CONTEXT_BYTES), i + m.length + CONTEXT_BYTES), false);
    }
    if (!l4) return;
    const payload = frame.subarray(l4.start, l4.end);
    if (payload.length === 0) return;
    const keep = m.length - 1;
    const tail = this.tails.get(l4.key);
    if (tail) {
      // Only matches that start in the tail and end in this payload (the others were counted already).
      const joined = Buffer.concat([tail, payload.subarray(0, keep)]);
      for (let i = joined.indexOf(m); i >= 0 && i < tail.length; i = joined.indexOf(m, i + 1)) {
        this.hit(l4.key, Buffer.concat([tail, payload.subarray(0, CONTEXT_BYTES)]), true);
      }
    }
    const next = payload.length >= keep ? payload.subarray(payload.length - keep) : Buffer.concat([tail ?? Buffer.alloc(0), payload]).subarray(-keep);
    if (!tail && this.tails.size >= MAX_FLOWS) this.tails.clear();
    this.tails.set(l4.key, Buffer.from(next));
  }

  /**
   * The next bytes start a new pcap file (tcpdump rotated its output): a new
   * file header follows. Flow tails are kept, so a marker split across the
   * rotation is still found.
   */
  nextFile(): void {
    if (this.pending.length > 0 && this.broken === undefined) this.broken = `capture file ended inside a record (${this.pending.length} bytes)`;
    this.pending = Buffer.alloc(0);
    this.headerSeen = false;
  }

  result(): WireScanStats {
    const truncated = this.broken === undefined && this.pending.length > 0 && this.headerSeen ? `stream ended inside a record (${this.pending.length} bytes)` : undefined;
    const error = this.broken ?? truncated;
    return { ...this.stats, ...(this.first ? { firstHit: this.first } : {}), ...(error ? { error } : {}) };
  }
}

/** tcpdump's exit statistics: "N packets dropped by kernel". */
export function parseKernelDrops(stderr: string): number | null {
  const m = /(\d+) packets? dropped by kernel/.exec(stderr);
  return m ? Number(m[1]) : null;
}

export function wireTapReportFile(dir: string, lab: string, pid: number): string {
  return join(dir, `${lab}-${pid}.json`);
}

export interface WireTapRunOptions {
  readonly lab: string;
  /** The netns label for the report; the tap itself captures in the netns it runs in. */
  readonly netns: string;
  readonly outDir: string;
  /**
   * Where tcpdump writes its rotating capture files (created, emptied and
   * removed by the tap); default a fresh directory under /dev/shm or tmpdir.
   */
  readonly spoolDir?: string;
  readonly iface?: string;
  /** Written once tcpdump listens (its "listening on" line). */
  readonly readyFile?: string;
  readonly snapshotIntervalMs?: number;
  readonly marker?: string;
}

/** Capture files rotate at this size (tcpdump -C, in millions of bytes): the spool never holds much more than the scanner's lag. */
const SPOOL_FILE_MB = 8;
const READ_BYTES = 4 << 20;
const BATCH_BYTES = 1 << 20;

/** Writes the report; false when it cannot (e.g. the audit dir of an old run was deleted before a stale lab went down). */
function writeAtomic(file: string, text: string): boolean {
  const tmp = `${file}.tmp`;
  try {
    writeFileSync(tmp, text, { mode: 0o644 });
    renameSync(tmp, file);
    return true;
  } catch {
    return false;
  }
}

/** A fresh spool directory for the capture files, in RAM when /dev/shm exists. */
export function defaultSpoolDir(lab: string): string {
  return mkdtempSync(join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), `ambit-wire-${lab}-`));
}

/**
 * Runs the tap until SIGTERM/SIGINT or the end of the capture, then writes
 * the final report and resolves it. Used by `ambit lab wire-tap`.
 *
 * tcpdump writes rotating pcap files into the spool (it never waits for the
 * scanner, so a busy scanner cannot make the kernel drop frames); the
 * scanner reads them in large blocks and deletes each one once tcpdump has
 * moved on to the next. On stop, it drains every file before reporting.
 */
export async function runWireTap(o: WireTapRunOptions): Promise<WireTapReport> {
  const iface = o.iface ?? BRIDGE_NAME;
  const marker = o.marker ?? WIRE_MARKER;
  mkdirSync(o.outDir, { recursive: true });
  const spool = o.spoolDir ?? defaultSpoolDir(o.lab);
  mkdirSync(spool, { recursive: true, mode: 0o700 });
  const file = wireTapReportFile(o.outDir, o.lab, process.pid);
  const scanner = new PcapMarkerScanner(marker);
  const startedAt = new Date().toISOString();
  // Full frames (no -s), every port and protocol (no filter); --immediate-mode so no frame waits in a
  // kernel block that a stop would discard; -Z root keeps the spool writable after rotation.
  const argv = ['-i', iface, '-n', '--immediate-mode', '-U', '-B', '131072', '-C', String(SPOOL_FILE_MB), '-Z', 'root', '-w', join(spool, 'cap')];
  const child: ChildProcess = spawn('tcpdump', argv, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  let exit: string | null = null;
  let exited = false;
  let spawnError: string | undefined;
  const report = (status: 'running' | 'stopped'): WireTapReport => {
    const s = scanner.result();
    // tcpdump ends with 0 on SIGTERM/SIGINT; anything else means the capture failed (no device, no permission...).
    const failed = spawnError ?? (exit !== null && exit !== '0' && exit !== 'SIGTERM' && exit !== 'SIGINT' ? `tcpdump exited (${exit}): ${stderr.trim().split('\n').slice(-3).join(' | ')}` : undefined);
    const error = s.error ?? failed;
    return {
      lab: o.lab,
      netns: o.netns,
      iface,
      pid: process.pid,
      marker,
      ...s,
      ...(error ? { error } : {}),
      firstHitContext: s.firstHit ? `${s.firstHit.flow}: ${s.firstHit.context}` : null,
      status,
      startedAt,
      stoppedAt: status === 'stopped' ? new Date().toISOString() : null,
      kernelDropped: parseKernelDrops(stderr),
      tcpdumpExit: exit,
    };
  };
  const snapshot = (): void => void writeAtomic(file, JSON.stringify(report('running'), null, 2) + '\n');
  snapshot();
  child.stderr?.on('data', (c: Buffer) => {
    stderr = (stderr + c.toString('utf8')).slice(-8192);
    if (o.readyFile && /listening on/.test(stderr)) writeFileSync(o.readyFile, `${process.pid}\n`);
  });
  const done = new Promise<void>((resolve) => {
    child.once('error', (err) => {
      spawnError = `cannot run tcpdump: ${err.message}`;
      exited = true;
      resolve();
    });
    // 'close': the process exited and its stderr (the statistics) was read to the end.
    child.once('close', (code, signal) => {
      exit = signal ?? String(code);
      exited = true;
      resolve();
    });
  });
  let lastPackets = -1;
  const timer = setInterval(() => {
    const p = scanner.result().packets;
    if (p !== lastPackets) {
      lastPackets = p;
      snapshot();
    }
  }, o.snapshotIntervalMs ?? 5_000);
  const stop = (): void => {
    child.kill('SIGTERM');
    // tcpdump flushes and prints its statistics on SIGTERM; never wait long for it.
    setTimeout(() => child.kill('SIGKILL'), 1_500).unref();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  // SIGUSR2: write the running counts now (tests read them between phases).
  process.on('SIGUSR2', snapshot);
  try {
    await drainSpool(spool, scanner, () => exited);
    await done;
  } finally {
    clearInterval(timer);
    process.off('SIGTERM', stop);
    process.off('SIGINT', stop);
    process.off('SIGUSR2', snapshot);
    rmSync(spool, { recursive: true, force: true });
  }
  const final = report('stopped');
  if (!writeAtomic(file, JSON.stringify(final, null, 2) + '\n')) process.stderr.write(`wire-tap: cannot write ${file}\n`);
  return final;
}

/** Reads tcpdump's files cap, cap1, cap2... in order, each to its end once the next exists (or tcpdump exited), then deletes it. */
async function drainSpool(spool: string, scanner: PcapMarkerScanner, finished: () => boolean): Promise<void> {
  const buf = Buffer.allocUnsafe(READ_BYTES);
  for (let index = 0; ; index++) {
    const path = join(spool, index === 0 ? 'cap' : `cap${index}`);
    const next = join(spool, `cap${index + 1}`);
    let fd: number | undefined;
    while (fd === undefined) {
      try {
        fd = openSync(path, 'r');
      } catch {
        if (finished()) return; // tcpdump is gone and never wrote this file
        await sleep(20);
      }
    }
    try {
      let pos = 0;
      let reads = 0;
      for (;;) {
        // Decide "complete" before reading: tcpdump closes a file before it creates the next one.
        const complete = finished() || existsSync(next);
        const n = readSync(fd, buf, 0, buf.length, pos);
        if (n > 0) {
          pos += n;
          scanner.push(buf.subarray(0, n));
          // Caught up with tcpdump: wait a little so the next read is a big block, not one frame.
          if (n < BATCH_BYTES && !complete) await sleep(10);
          else if (++reads % 4 === 0) await setImmediatePromise(); // let signals and timers in
          continue;
        }
        if (complete) break;
        await sleep(20);
      }
    } finally {
      closeSync(fd);
    }
    rmSync(path, { force: true });
    scanner.nextFile();
  }
}

/** This module's own path: `labUp` runs it directly (`node wire-tap.js ...`), which starts far faster than the full CLI. */
export const WIRE_TAP_SCRIPT = fileURLToPath(import.meta.url);

/** Entry point when run as a script; same flags as `ambit lab wire-tap`. */
async function main(argv: string[]): Promise<number> {
  const { values: v } = parseArgs({ args: argv, options: { name: { type: 'string' }, out: { type: 'string' }, spool: { type: 'string' }, 'ready-file': { type: 'string' }, netns: { type: 'string' } } });
  const outDir = v.out ?? process.env[WIRE_AUDIT_ENV];
  if (!v.name || !outDir) {
    process.stderr.write(`usage: wire-tap.js --name <lab> --out <dir> [--spool <dir>] [--ready-file <file>] [--netns <name>]\n`);
    return 64;
  }
  const report = await runWireTap({ lab: v.name, netns: v.netns ?? '', outDir, ...(v.spool ? { spoolDir: v.spool } : {}), ...(v['ready-file'] ? { readyFile: v['ready-file'] } : {}) });
  process.stdout.write(`${JSON.stringify({ lab: report.lab, packets: report.packets, bytes: report.bytes, markerHits: report.markerHits, error: report.error })}\n`);
  if (report.error) process.stderr.write(`wire-tap: ${report.error}\n`);
  return report.error ? 1 : 0;
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === WIRE_TAP_SCRIPT) {
  // exitCode, not exit(): the process ends by itself once the capture and its timers are gone.
  main(process.argv.slice(2)).then(
    (code) => (process.exitCode = code),
    (err: unknown) => {
      process.stderr.write(`wire-tap: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exitCode = 1;
    },
  );
}
