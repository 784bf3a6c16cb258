/**
 * Bypass attempt in a live lab (control plane + agents): an enrolled pod
 * tries to escape capture by putting the agent's own packet mark (0x539,
 * src/redirect/constants.ts INPOD_MARK) on its socket, which the in-pod
 * nftables rules exempt from the redirect to 15001.
 *
 *  1. An unprivileged process in the pod (uid 65534, no capabilities, empty
 *     bounding set), and root without CAP_NET_ADMIN (a container's default
 *     capabilities), cannot set SO_MARK (EPERM); the connection is captured:
 *     tunnelled over HBONE (node-a's agent counts it as a source-reported
 *     connection, node-b's as mutual_tls) and never in clear on node-a.
 *  2. Root with a container's default capabilities (CAP_NET_RAW, no
 *     CAP_NET_ADMIN) can set it too on Linux >= 5.17 (SO_MARK accepts either
 *     capability since then), and so can root with every capability (what
 *     `lab exec` gives): the connection skips the agent and goes out in plaintext
 *     (the payload is visible on node-a's interfaces, node-a's agent never
 *     sees it). The destination's capture still takes it to 15006, where it
 *     is delivered as plaintext (PERMISSIVE, connection_security_policy
 *     "unknown"), from the pod's real IP.
 *  3. The defence that holds: with a STRICT PeerAuthentication on the
 *     destination, the same bypass is refused at the destination's inbound,
 *     while the captured (unprivileged) connection keeps working.
 *  Root in the pod can also rewrite the pod's capture rules outright (nft);
 *  the unprivileged process cannot even list them.
 *
 * Payloads carry their own "RZMK-..." marker, never the wire-audit canary.
 * Needs root, tcpdump, curl, setpriv and /usr/bin/python3.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { labDown, labUp, type LabHandle } from '../../src/lab/lab.js';
import { INPOD_MARK, INPOD_TPROXY_MARK } from '../../src/redirect/constants.js';
import { assertPrivileged, requiresRoot, requiresTool } from '../helpers/privileged.js';
import { startInPod } from '../helpers/pod-process.js';
import { Tally } from './lib/tally.js';

const fixtures = fileURLToPath(new URL('../../../test/fixtures/', import.meta.url));
const name = `rzmk${randomBytes(3).toString('hex')}`;
const PORT = 8080;
const PYTHON = '/usr/bin/python3';
const SO_MARK = 36;
const tally = new Tally('mark-escape');
let lab: LabHandle | undefined;
let dir: string | undefined;
let server: ChildProcess | undefined;

const MANIFEST = `apiVersion: v1
kind: Namespace
metadata: { name: mesh, labels: { istio.io/dataplane-mode: ambient } }
---
apiVersion: v1
kind: Pod
metadata: { name: client, namespace: mesh, labels: { app: client } }
spec: { nodeName: node-a, serviceAccountName: client }
---
apiVersion: v1
kind: Pod
metadata: { name: server, namespace: mesh, labels: { app: server } }
spec: { nodeName: node-b, serviceAccountName: server }
`;

// Sets SO_MARK (reporting EPERM instead of failing), then POSTs the payload
// with HTTP/1.0 and prints what happened as one JSON line.
const CLIENT_PY = `
import errno, json, socket, sys
host, port, mark, payload = sys.argv[1], int(sys.argv[2]), int(sys.argv[3], 0), sys.argv[4].encode()
out = {}
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
try:
    s.setsockopt(socket.SOL_SOCKET, ${SO_MARK}, mark)
    out['mark'] = hex(s.getsockopt(socket.SOL_SOCKET, ${SO_MARK}))
except OSError as e:
    out['mark'] = errno.errorcode.get(e.errno, str(e.errno))
s.settimeout(5)
try:
    s.connect((host, port))
    s.sendall(b'POST / HTTP/1.0\\r\\nHost: server\\r\\nContent-Length: %d\\r\\n\\r\\n' % len(payload) + payload)
    data = b''
    while True:
        c = s.recv(65536)
        if not c:
            break
        data += c
    out['ok'] = len(data) > 0
    out['response'] = data.decode('latin1')[-400:]
except OSError as e:
    out['ok'] = False
    out['error'] = errno.errorcode.get(e.errno, str(e)) if e.errno else str(e)
print(json.dumps(out))
`;

/** uid/gid 65534, no supplementary groups, no inheritable/ambient capabilities, empty bounding set. */
const UNPRIVILEGED = ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', '--inh-caps=-all', '--ambient-caps=-all', '--bounding-set=-all', '--no-new-privs'];

interface Attempt {
  mark: string;
  ok: boolean;
  response?: string;
  error?: string;
}

function ip(pod: string): string {
  const w = lab?.cluster.workloads.find((x) => x.name === pod);
  assert.ok(w, `no pod ${pod}`);
  return w.ip;
}

/** containerd's / Docker's default container capabilities: CAP_NET_RAW, no CAP_NET_ADMIN. */
const CONTAINER_DEFAULT_CAPS = ['chown', 'dac_override', 'fsetid', 'fowner', 'mknod', 'net_raw', 'setgid', 'setuid', 'setfcap', 'setpcap', 'net_bind_service', 'sys_chroot', 'kill', 'audit_write'];
const rootWith = (caps: readonly string[]): string[] => ['setpriv', '--inh-caps=-all', '--ambient-caps=-all', `--bounding-set=-all,${caps.map((c) => `+${c}`).join(',')}`];
/**
 * Who runs the client in the pod: uid 65534 with no capabilities; root with a container's default
 * capabilities, with or without CAP_NET_RAW; or root with every capability (what `lab exec` gives).
 */
type Who = 'nobody' | 'root-default-caps' | 'root-default-caps-no-net-raw' | 'root';
const PREFIX: Record<Who, string[]> = {
  nobody: UNPRIVILEGED,
  'root-default-caps': rootWith(CONTAINER_DEFAULT_CAPS),
  'root-default-caps-no-net-raw': rootWith(CONTAINER_DEFAULT_CAPS.filter((c) => c !== 'net_raw')),
  root: [],
};
/** Since Linux 5.17 SO_MARK needs CAP_NET_RAW or CAP_NET_ADMIN (before: CAP_NET_ADMIN only). */
const NET_RAW_MAY_MARK = ((): boolean => {
  const [maj = 0, min = 0] = release().split('.').map((x) => parseInt(x, 10));
  return maj > 5 || (maj === 5 && min >= 17);
})();

async function attempt(who: Who, payload: string, mark = INPOD_MARK): Promise<Attempt> {
  const argv = [...PREFIX[who], PYTHON, '-c', CLIENT_PY, ip('server'), String(PORT), `0x${mark.toString(16)}`, payload];
  const r = await lab!.exec('mesh/client', argv, { timeoutMs: 15_000 });
  assert.equal(r.code, 0, `client did not run: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').at(-1) ?? '{}') as Attempt;
}

/** The whoami server's answer: the client address it saw, and that the body arrived intact. */
function answer(a: Attempt, payload: string): { client: string; intact: boolean } | undefined {
  const body = a.response?.slice(a.response.indexOf('{'));
  if (!a.ok || !body) return undefined;
  const j = JSON.parse(body) as { client: string; bodySha: string };
  return { client: j.client, intact: j.bodySha === createHash('sha256').update(payload).digest('hex') };
}

/** Sum of istio_tcp_connections_opened_total on a node's agent over the series that carry all of `labels`. */
async function opened(node: string, labels: Record<string, string>): Promise<number> {
  const r = await lab!.exec({ node }, ['curl', '-sS', '--max-time', '3', 'http://127.0.0.1:15020/metrics'], { timeoutMs: 6_000 });
  assert.equal(r.code, 0, r.stderr);
  const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  return r.stdout
    .split('\n')
    .filter((l) => l.startsWith('istio_tcp_connections_opened_total{') && want.every((w) => l.includes(w)))
    .reduce((n, l) => n + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
}

const SRC = { reporter: 'source', source_workload: 'client', destination_workload: 'server' };
const DST_MTLS = { reporter: 'destination', source_workload: 'client', destination_workload: 'server', connection_security_policy: 'mutual_tls' };
const DST_PLAIN = { reporter: 'destination', source_workload: 'client', destination_workload: 'server', connection_security_policy: 'unknown' };

/** Starts tcpdump on every interface of node-a's netns; stop() returns the capture bytes. */
async function tapNodeA(file: string): Promise<{ stop(): Promise<Buffer> }> {
  const dump = spawn('ip', ['netns', 'exec', lab!.nodeNetns('node-a'), 'tcpdump', '--immediate-mode', '-i', 'any', '-nn', '-U', '-w', file, 'tcp'], { stdio: ['ignore', 'ignore', 'pipe'] });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('tcpdump did not start')), 10_000);
    dump.stderr.on('data', (d: Buffer) => {
      if (d.toString().includes('listening on')) {
        clearTimeout(timer);
        resolve();
      }
    });
    dump.once('exit', () => reject(new Error('tcpdump exited')));
  });
  return {
    async stop(): Promise<Buffer> {
      await new Promise((r) => setTimeout(r, 300));
      const exited = new Promise((r) => dump.once('exit', r));
      dump.kill('SIGINT');
      await exited;
      return existsSync(file) ? readFileSync(file) : Buffer.alloc(0);
    },
  };
}

function writePolicy(file: string, text: string): void {
  const tmp = join(dir!, `.${file}.tmp`);
  writeFileSync(tmp, text);
  renameSync(tmp, join(dir!, file));
}

describe('escaping capture with the bypass mark', { ...requiresRoot(), ...requiresTool('tcpdump', 'curl', 'setpriv') }, () => {
  before(async () => {
    if (process.getuid?.() !== 0) return;
    dir = mkdtempSync(join(tmpdir(), 'ambit-mark-escape-'));
    writeFileSync(join(dir, 'pods.yaml'), MANIFEST);
    lab = await labUp({ manifests: dir, name, mesh: true, controlPlane: true });
    server = await startInPod(lab, 'mesh/server', [process.execPath, `${fixtures}agent/whoami-server.mjs`, ip('server'), String(PORT)]);
  });

  after(async () => {
    tally.print();
    server?.kill();
    if (process.getuid?.() === 0) await labDown(name);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('an unprivileged process cannot set the mark, and its connection is captured into HBONE', async (t) => {
    assertPrivileged(t);
    assert.ok(existsSync(PYTHON), `${PYTHON} is needed`);
    const payload = `RZMK-CAPTURED-${randomBytes(8).toString('hex')}`;
    const [srcBefore, mtlsBefore] = [await opened('node-a', SRC), await opened('node-b', DST_MTLS)];
    const tap = await tapNodeA(join(dir!, 'captured.pcap'));
    const a = await attempt('nobody', payload);
    const pcap = await tap.stop();
    const got = answer(a, payload);
    const [srcAfter, mtlsAfter] = [await opened('node-a', SRC), await opened('node-b', DST_MTLS)];
    t.diagnostic(`unprivileged: ${JSON.stringify({ ...a, response: undefined })}; server saw ${JSON.stringify(got)}; node-a source connections +${srcAfter - srcBefore}, node-b mutual_tls +${mtlsAfter - mtlsBefore}; pcap ${pcap.length} bytes`);
    tally.case('unprivileged SO_MARK 0x539', { refused: a.mark === 'EPERM' });
    assert.equal(a.mark, 'EPERM', 'an unprivileged process set the bypass mark');
    assert.ok(got, `the captured connection failed: ${JSON.stringify(a)}`);
    assert.equal(got.intact, true, 'body corrupted');
    assert.equal(got.client, ip('client'), 'the server should see the client pod address');
    assert.ok(srcAfter > srcBefore, "node-a's agent did not carry the connection (not captured)");
    assert.ok(mtlsAfter > mtlsBefore, "node-b's agent did not receive it over mTLS");
    assert.ok(pcap.length > 0, 'empty capture');
    assert.equal(pcap.indexOf(payload), -1, 'the captured payload crossed node-a in clear');

    // Root with a container's default capabilities minus CAP_NET_RAW is refused the same way.
    const rootPayload = `RZMK-CAPTURED-${randomBytes(8).toString('hex')}`;
    const srcBeforeRoot = await opened('node-a', SRC);
    const r = await attempt('root-default-caps-no-net-raw', rootPayload);
    t.diagnostic(`root, default container capabilities without NET_RAW: ${JSON.stringify({ ...r, response: undefined })}`);
    tally.case('root without CAP_NET_RAW/CAP_NET_ADMIN: SO_MARK 0x539', { refused: r.mark === 'EPERM' });
    assert.equal(r.mark, 'EPERM', 'root without CAP_NET_RAW and CAP_NET_ADMIN set the bypass mark');
    assert.equal(answer(r, rootPayload)?.intact, true, `its connection failed: ${JSON.stringify(r)}`);
    assert.ok((await opened('node-a', SRC)) > srcBeforeRoot, 'not captured');

    // Nor can it touch the capture rules.
    const nft = await lab!.exec('mesh/client', [...UNPRIVILEGED, 'nft', 'list', 'table', 'inet', 'ambit']);
    tally.case('unprivileged nft list', { refused: nft.code !== 0 });
    assert.notEqual(nft.code, 0, 'an unprivileged process could read the capture rules');
  });

  test(`root with a container's default capabilities (CAP_NET_RAW, no CAP_NET_ADMIN) ${NET_RAW_MAY_MARK ? 'sets the mark and escapes (kernel >= 5.17)' : 'cannot set the mark (kernel < 5.17)'}`, async (t) => {
    assertPrivileged(t);
    const payload = `RZMK-BYPASS-${randomBytes(8).toString('hex')}`;
    const [srcBefore, plainBefore] = [await opened('node-a', SRC), await opened('node-b', DST_PLAIN)];
    const tap = await tapNodeA(join(dir!, 'bypass-netraw.pcap'));
    const a = await attempt('root-default-caps', payload);
    const pcap = await tap.stop();
    const got = answer(a, payload);
    const [srcAfter, plainAfter] = [await opened('node-a', SRC), await opened('node-b', DST_PLAIN)];
    t.diagnostic(`kernel ${release()}; root with default container caps: ${JSON.stringify({ ...a, response: undefined })}; node-a source +${srcAfter - srcBefore}, node-b plaintext +${plainAfter - plainBefore}; in clear on node-a: ${pcap.indexOf(payload) >= 0}`);
    tally.case('root with CAP_NET_RAW only: SO_MARK 0x539 (known gap on kernels >= 5.17)', { refused: a.mark === 'EPERM' });
    assert.equal(got?.intact, true, `the connection failed: ${JSON.stringify(a)}`);
    if (NET_RAW_MAY_MARK) {
      assert.equal(a.mark, `0x${INPOD_MARK.toString(16)}`, 'CAP_NET_RAW no longer allows SO_MARK: update SECURITY.md');
      assert.equal(srcAfter, srcBefore, 'captured after all');
      assert.ok(pcap.indexOf(payload) >= 0, 'not seen in clear on node-a');
      assert.ok(plainAfter > plainBefore, "node-b's agent did not take it as plaintext on 15006");
    } else {
      assert.equal(a.mark, 'EPERM');
      assert.ok(srcAfter > srcBefore, 'not captured');
      assert.equal(pcap.indexOf(payload), -1);
    }
  });

  test('a root process in the pod sets the mark and escapes capture: plaintext on the wire, PERMISSIVE delivers it', async (t) => {
    assertPrivileged(t);
    const payload = `RZMK-BYPASS-${randomBytes(8).toString('hex')}`;
    const [srcBefore, plainBefore, mtlsBefore] = [await opened('node-a', SRC), await opened('node-b', DST_PLAIN), await opened('node-b', DST_MTLS)];
    const tap = await tapNodeA(join(dir!, 'bypass.pcap'));
    const a = await attempt('root', payload);
    const pcap = await tap.stop();
    const got = answer(a, payload);
    const [srcAfter, plainAfter, mtlsAfter] = [await opened('node-a', SRC), await opened('node-b', DST_PLAIN), await opened('node-b', DST_MTLS)];
    t.diagnostic(`root: ${JSON.stringify({ ...a, response: undefined })}; server saw ${JSON.stringify(got)}; node-a source +${srcAfter - srcBefore}, node-b plaintext +${plainAfter - plainBefore}, mutual_tls +${mtlsAfter - mtlsBefore}; payload in clear on node-a: ${pcap.indexOf(payload) >= 0}`);
    // Documented gap (SECURITY.md, "Not defended"): this is the escape, asserted so a change in it is noticed.
    tally.case('root SO_MARK 0x539 under PERMISSIVE (known gap)', { refused: !a.ok });
    assert.equal(a.mark, `0x${INPOD_MARK.toString(16)}`, 'root in the pod could not set the mark');
    assert.ok(got, `the bypass connection failed: ${JSON.stringify(a)}`);
    assert.equal(got.intact, true);
    assert.equal(got.client, ip('client'));
    assert.equal(srcAfter, srcBefore, "node-a's agent saw the marked connection: it was captured after all");
    assert.ok(pcap.indexOf(payload) >= 0, 'the marked connection was not seen in clear on node-a');
    assert.ok(plainAfter > plainBefore, "node-b's agent did not take it as plaintext on 15006");
    assert.equal(mtlsAfter, mtlsBefore);

    // Root can also read (and so rewrite) the pod's capture rules.
    const nft = await lab!.exec('mesh/client', ['nft', 'list', 'table', 'inet', 'ambit']);
    assert.equal(nft.code, 0, nft.stderr);

    // The other exempt mark, 0x111 (replies to the agent's spoofed dials), is routed to the pod's own
    // loopback (table 100): it skips the redirect but never leaves the pod.
    const plainBefore111 = await opened('node-b', DST_PLAIN);
    const local = await attempt('root', `RZMK-TPROXY-${randomBytes(4).toString('hex')}`, INPOD_TPROXY_MARK);
    t.diagnostic(`root with mark 0x111: ${JSON.stringify({ ...local, response: local.response?.slice(0, 80) })}`);
    assert.equal(local.mark, `0x${INPOD_TPROXY_MARK.toString(16)}`);
    assert.equal(answer(local, 'x'), undefined, 'a 0x111-marked connection reached the server');
    assert.equal(await opened('node-b', DST_PLAIN), plainBefore111, 'a 0x111-marked connection left the pod');
  });

  test('a STRICT PeerAuthentication on the destination refuses the bypass; the captured connection still works', async (t) => {
    assertPrivileged(t);
    writePolicy('peer.yaml', 'apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: { name: default, namespace: mesh }\nspec:\n  mtls: { mode: STRICT }\n');
    // wait for the policy to reach node-b: the bypass is refused there
    const deadline = Date.now() + 10_000;
    let bypass = await attempt('root', `RZMK-STRICT-${randomBytes(4).toString('hex')}`);
    while (bypass.ok && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 250));
      bypass = await attempt('root', `RZMK-STRICT-${randomBytes(4).toString('hex')}`);
    }
    const netRaw = await attempt('root-default-caps', `RZMK-STRICT-${randomBytes(4).toString('hex')}`);
    const payload = `RZMK-CAPTURED-${randomBytes(8).toString('hex')}`;
    const captured = await attempt('nobody', payload);
    const log = readFileSync(join(lab!.stateDir, 'agent-node-b.log'), 'utf8').split('\n');
    const denied = log.filter((l) => l.includes(ip('client')) && /DENY/.test(l));
    t.diagnostic(`STRICT: bypass ${JSON.stringify({ ...bypass, response: bypass.response?.slice(0, 80) })}; captured ${JSON.stringify({ ...captured, response: undefined })}; node-b deny lines for the client ip: ${denied.length}`);
    tally.case('root SO_MARK 0x539 under STRICT', { refused: !bypass.ok });
    assert.equal(bypass.mark, `0x${INPOD_MARK.toString(16)}`);
    assert.equal(bypass.ok, false, 'the plaintext bypass was delivered despite STRICT');
    if (NET_RAW_MAY_MARK) assert.equal(netRaw.ok, false, 'the CAP_NET_RAW bypass was delivered despite STRICT');
    else assert.ok(answer(netRaw, 'x') !== undefined || netRaw.ok, 'the captured (EPERM) connection failed under STRICT');
    assert.ok(denied.length > 0, 'no DENY for the plaintext connection in the destination agent log');
    const got = answer(captured, payload);
    assert.ok(got?.intact, `the captured mTLS connection failed under STRICT: ${JSON.stringify(captured)}`);
    rmSync(join(dir!, 'peer.yaml'), { force: true });
  });
});
