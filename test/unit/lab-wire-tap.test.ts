/**
 * The wire tap's pcap scanner: frames and bytes are counted, and the marker
 * is found however the stream is cut into chunks, when it is split between
 * two TCP segments of one flow, and never invented from two different flows.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { decodeFrame, parseKernelDrops, PcapMarkerScanner, WIRE_MARKER } from '../../src/lab/wire-tap.js';

function globalHeader(linkType = 1): Buffer {
  const h = Buffer.alloc(24);
  h.writeUInt32LE(0xa1b2c3d4, 0);
  h.writeUInt16LE(2, 4);
  h.writeUInt16LE(4, 6);
  h.writeUInt32LE(262144, 16);
  h.writeUInt32LE(linkType, 20);
  return h;
}

function record(frame: Buffer): Buffer {
  const h = Buffer.alloc(16);
  h.writeUInt32LE(frame.length, 8);
  h.writeUInt32LE(frame.length, 12);
  return Buffer.concat([h, frame]);
}

/** Ethernet + IPv4 + TCP frame carrying `data` from src:sport to dst:dport. */
function tcpFrame(data: Buffer | string, sport = 40000, dport = 8080, src = [10, 10, 0, 2], dst = [10, 10, 0, 3]): Buffer {
  const payload = Buffer.isBuffer(data) ? data : Buffer.from(data, 'latin1');
  const eth = Buffer.alloc(14);
  eth.writeUInt16BE(0x0800, 12);
  const ip = Buffer.alloc(20);
  ip[0] = 0x45;
  ip.writeUInt16BE(20 + 20 + payload.length, 2);
  ip[8] = 64;
  ip[9] = 6;
  ip.set(src, 12);
  ip.set(dst, 16);
  const tcp = Buffer.alloc(20);
  tcp.writeUInt16BE(sport, 0);
  tcp.writeUInt16BE(dport, 2);
  tcp[12] = 5 << 4;
  return Buffer.concat([eth, ip, tcp, payload]);
}

function pcap(frames: Buffer[]): Buffer {
  return Buffer.concat([globalHeader(), ...frames.map(record)]);
}

function scanInChunks(stream: Buffer, cuts: number[]): PcapMarkerScanner {
  const s = new PcapMarkerScanner();
  let prev = 0;
  for (const c of [...new Set(cuts)].sort((a, b) => a - b)) {
    s.push(stream.subarray(prev, c));
    prev = c;
  }
  s.push(stream.subarray(prev));
  return s;
}

describe('PcapMarkerScanner', () => {
  it('counts frames and bytes and finds no marker in clean traffic', () => {
    const frames = [tcpFrame('hello'), tcpFrame('x'.repeat(1400)), tcpFrame('AMBIT-CANAR')];
    const s = new PcapMarkerScanner();
    s.push(pcap(frames));
    const r = s.result();
    assert.equal(r.packets, 3);
    assert.equal(r.bytes, frames.reduce((n, f) => n + f.length, 0));
    assert.equal(r.markerHits, 0);
    assert.equal(r.error, undefined);
  });

  it('finds a marker inside one frame and reports the flow and context', () => {
    const s = new PcapMarkerScanner();
    s.push(pcap([tcpFrame('GET /x HTTP/1.1\r\nX-Payload: AMBIT-CANARY-42\r\n', 41000, 80)]));
    const r = s.result();
    assert.equal(r.markerHits, 1);
    assert.equal(r.firstHit?.flow, 'tcp 10.10.0.2:41000 > 10.10.0.3:80');
    assert.match(r.firstHit?.context ?? '', /X-Payload: AMBIT-CANARY-42/);
    assert.equal(r.firstHit?.spanned, false);
  });

  it('finds every marker whatever the chunking of the pcap stream (one byte at a time included)', () => {
    const data = `aaAMBIT-CANARYbb${'z'.repeat(300)}AMBIT-CANARYAMBIT-CANARY`;
    const stream = pcap([tcpFrame('noise'), tcpFrame(data), tcpFrame('more noise')]);
    const s = new PcapMarkerScanner();
    for (let i = 0; i < stream.length; i++) s.push(stream.subarray(i, i + 1));
    assert.equal(s.result().markerHits, 3);
    assert.equal(s.result().packets, 3);
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: stream.length - 1 }), { maxLength: 12 }), (cuts) => {
        const r = scanInChunks(stream, cuts).result();
        return r.markerHits === 3 && r.packets === 3 && r.error === undefined;
      }),
    );
  });

  it('finds a marker split between two consecutive segments of one flow, at every split point', () => {
    for (let k = 1; k < WIRE_MARKER.length; k++) {
      const s = new PcapMarkerScanner();
      s.push(pcap([tcpFrame(`head ${WIRE_MARKER.slice(0, k)}`), tcpFrame(`${WIRE_MARKER.slice(k)} tail`)]));
      const r = s.result();
      assert.equal(r.markerHits, 1, `split after ${k} bytes`);
      assert.equal(r.firstHit?.spanned, true);
    }
  });

  it('carries a flow tail across segments shorter than the marker', () => {
    const s = new PcapMarkerScanner();
    s.push(pcap([tcpFrame('AMB'), tcpFrame('IT-'), tcpFrame('CA'), tcpFrame('NARY')]));
    assert.equal(s.result().markerHits, 1);
  });

  it('does not join halves that belong to different flows, and keeps flows apart when interleaved', () => {
    const s = new PcapMarkerScanner();
    s.push(pcap([tcpFrame('xx AMBIT-', 40000), tcpFrame('CANARY yy', 40001)]));
    assert.equal(s.result().markerHits, 0);
    const t = new PcapMarkerScanner();
    t.push(pcap([tcpFrame('xx AMBIT-', 40000), tcpFrame('other', 40001), tcpFrame('CANARY yy', 40000)]));
    assert.equal(t.result().markerHits, 1);
  });

  it('does not count a marker twice when it lies wholly inside one frame next to a tail', () => {
    const s = new PcapMarkerScanner();
    s.push(pcap([tcpFrame('AMBIT-CANAR'), tcpFrame('AMBIT-CANARY')]));
    assert.equal(s.result().markerHits, 1);
  });

  it('follows tcpdump file rotation: a new file header, flow tails kept across the files', () => {
    const s = new PcapMarkerScanner();
    s.push(pcap([tcpFrame('x AMBIT-CANARY y'), tcpFrame('one AMBIT-')]));
    s.nextFile();
    s.push(pcap([tcpFrame('CANARY two')]));
    const r = s.result();
    assert.equal(r.packets, 3);
    assert.equal(r.markerHits, 2);
    assert.equal(r.error, undefined);
    const cut = new PcapMarkerScanner();
    cut.push(pcap([tcpFrame('x')]).subarray(0, 30));
    cut.nextFile();
    assert.match(cut.result().error ?? '', /capture file ended inside a record/);
  });

  it('scans frames it cannot decode (ARP, other link types) as raw bytes', () => {
    const arp = Buffer.concat([Buffer.from('ffffffffffff020000000001', 'hex'), Buffer.from([0x08, 0x06]), Buffer.from('..AMBIT-CANARY..')]);
    const s = new PcapMarkerScanner();
    s.push(pcap([arp]));
    assert.equal(s.result().markerHits, 1);
    assert.equal(s.result().firstHit?.flow, 'frame');
  });

  it('reads big-endian pcap streams', () => {
    const h = globalHeader();
    h.writeUInt32BE(0xa1b2c3d4, 0);
    h.writeUInt32BE(1, 20);
    const f = tcpFrame('AMBIT-CANARY');
    const r = Buffer.alloc(16);
    r.writeUInt32BE(f.length, 8);
    r.writeUInt32BE(f.length, 12);
    const s = new PcapMarkerScanner();
    s.push(Buffer.concat([h, r, f]));
    assert.equal(s.result().markerHits, 1);
    assert.equal(s.result().packets, 1);
  });

  it('reports a stream that is not pcap, or that ends inside a record', () => {
    const bad = new PcapMarkerScanner();
    bad.push(Buffer.from('this is not a pcap stream at all'));
    assert.match(bad.result().error ?? '', /not a pcap stream/);
    const cut = new PcapMarkerScanner();
    cut.push(pcap([tcpFrame('x')]).subarray(0, 24 + 20));
    assert.match(cut.result().error ?? '', /ended inside a record/);
  });

  it('decodes IPv4 TCP payload bounds without the Ethernet padding', () => {
    const f = Buffer.concat([tcpFrame('hi'), Buffer.alloc(8)]);
    const l4 = decodeFrame(f, 1);
    assert.equal(l4?.end, 14 + 20 + 20 + 2);
    assert.equal(f.subarray(l4?.start, l4?.end).toString(), 'hi');
  });

  it('parses tcpdump kernel drop statistics', () => {
    assert.equal(parseKernelDrops('12 packets captured\n12 packets received by filter\n3 packets dropped by kernel\n'), 3);
    assert.equal(parseKernelDrops('tcpdump: listening on br0'), null);
  });
});
