/**
 * The dashboard in a real browser against a live lab: the living demo (small
 * rate, no deny policy at first) with its dashboard on an ephemeral loopback
 * port, Debian's chromium driven by playwright-core. First proves the page
 * is served by the lab's control plane, not by this process: the listening
 * socket on the host's 127.0.0.1 belongs to the control plane's pid (ss
 * -ltnp), which runs in the lab's first node netns, and every answer says
 * `server: ambit-control-plane/<that pid>`. Then checks that the graph
 * shows the app's workloads and services, that meshed edges carry non-zero
 * traffic and the mTLS padlock, that applying the deny policy turns the
 * rogue client's edge red, and that the page logged no console errors.
 * The layout: the graph fits the panel (no node behind the side panel),
 * services without traffic are listed instead of drawn, edge labels do not
 * overlap. The workloads section: a row of golden-signal sparklines per
 * demo workload, with a non-zero call rate drawn from the scraped metrics
 * (and the p99 where the waypoint measured it), matching /api/workloads.
 * Saves a screenshot (AMBIT_DASHBOARD_SCREENSHOT or /tmp/ambit-dashboard.png).
 * Needs root (network namespaces) and /usr/bin/chromium.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { chromium, type Browser, type Page } from 'playwright-core';
import { startLivingMesh, type LivingMesh } from '../../src/demo/living.js';
import { labStartControlPlane, labStopControlPlane } from '../../src/lab/lab.js';
import { cmdline, listenerPids, listening, netnsOf, servedBy } from '../helpers/dashboard-owner.js';
import { assertPrivileged, inCI, requiresRoot, requiresTool } from '../helpers/privileged.js';

const CHROMIUM = process.env.AMBIT_CHROMIUM ?? '/usr/bin/chromium';
const SCREENSHOT = process.env.AMBIT_DASHBOARD_SCREENSHOT ?? '/tmp/ambit-dashboard.png';
const name = `rzgs${randomBytes(2).toString('hex')}`;

function chromiumGate(): { skip?: string } {
  if (existsSync(CHROMIUM) || inCI) return {};
  return { skip: `needs chromium at ${CHROMIUM} (apt-get install chromium)` };
}

describe('dashboard in a browser', { ...requiresRoot(), ...requiresTool('curl', 'ss'), ...chromiumGate(), timeout: 120_000 }, () => {
  let mesh: LivingMesh | undefined;
  let browser: Browser | undefined;
  let page: Page;
  const consoleErrors: string[] = [];

  before(async () => {
    if (process.getuid?.() !== 0) return;
    mesh = await startLivingMesh({ name, rps: 4, rogueRps: 2, deny: false, dashboardPort: 0, intervalMs: 1000 });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
    page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
    page.on('console', (m) => {
      if (m.type() === 'error') consoleErrors.push(m.text());
    });
    page.on('pageerror', (e) => consoleErrors.push(`pageerror: ${e.message}`));
  });

  after(async () => {
    await browser?.close();
    await mesh?.stop();
  });

  test('the page is served by the control plane process, on the host netns', async (t) => {
    assertPrivileged(t);
    assert.ok(mesh);
    const url = mesh.dashboard.url;
    assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/$/, 'loopback only');
    const cpPid = Number(readFileSync(join(mesh.lab.stateDir, 'control-plane.ready'), 'utf8').trim());
    assert.ok(cpPid > 0 && cpPid !== process.pid);
    assert.match(cmdline(cpPid), / control-plane /, 'the ready file names the control plane process');
    assert.equal(mesh.dashboardPid, cpPid, 'the demo found the dashboard served by the control plane');
    const port = Number(new URL(url).port);
    assert.deepEqual(listenerPids(port), [cpPid], `ss -ltnp: the socket on 127.0.0.1:${port} of this netns is held by the control plane only`);
    assert.notEqual(netnsOf(cpPid), netnsOf('self'), 'the control plane itself runs in another netns (the lab node)');
    for (const path of ['', 'api/snapshot', 'vendor/uplot.js']) {
      const s = await servedBy(`${url}${path}`);
      assert.equal(s.status, 200, path);
      assert.equal(s.server, `ambit-control-plane/${cpPid}`, `/${path} answered by the control plane`);
    }
    t.diagnostic(`dashboard ${url} served by control plane pid ${cpPid} (${netnsOf(cpPid)}; this process: ${netnsOf('self')})`);
  });

  test('the graph shows the app, live traffic with mTLS, then the denied edge', async (t) => {
    assertPrivileged(t);
    assert.ok(mesh);
    const url = mesh.dashboard.url;
    await page.goto(url);
    const cpPid = readFileSync(join(mesh.lab.stateDir, 'control-plane.ready'), 'utf8').trim();
    await page.waitForSelector(`#status:has-text("served by ambit-control-plane/${cpPid}")`, { timeout: 10_000 });

    for (const id of ['wl:demo/loadgen', 'wl:demo/frontend', 'wl:demo/productpage', 'wl:demo/reviews-v1', 'wl:demo/reviews-v2', 'wl:demo/ratings', 'svc:demo/reviews']) {
      await page.waitForSelector(`g.node[data-id="${id}"]`, { timeout: 20_000 });
    }
    // Traffic through the mesh: productpage -> reviews with a non-zero rate and the padlock.
    const busy = 'g.edge[data-id="wl:demo/productpage>svc:demo/reviews"][data-status="ok"][data-mtls="full"]';
    await page.waitForSelector(busy, { timeout: 30_000 });
    const cps = Number(await page.getAttribute(busy, 'data-cps'));
    assert.ok(cps > 0, `productpage -> reviews carries traffic (${cps} conn/s)`);
    assert.ok(await page.$(`${busy} g.lock`), 'the meshed edge shows the mTLS padlock');
    // Both versions get traffic (the service balances over v1 and v2).
    await page.waitForSelector('g.edge[data-id="svc:demo/reviews>wl:demo/reviews-v1"]:not([data-status="idle"])', { timeout: 15_000 });
    await page.waitForSelector('g.edge[data-id="svc:demo/reviews>wl:demo/reviews-v2"]:not([data-status="idle"])', { timeout: 15_000 });
    assert.equal(await page.$('g.edge[data-denied="true"]'), null, 'nothing is denied before the policy');

    await mesh.applyDeny();
    const denied = 'g.edge[data-id="wl:demo/rogue>svc:demo/productpage"][data-denied="true"]';
    const t0 = Date.now();
    await page.waitForSelector(denied, { timeout: 20_000 });
    t.diagnostic(`the denied edge appeared ${Date.now() - t0} ms after the policy file was written`);
    // The page also lists the policy (read by the control plane from its own state), the event of it being served, and the access-log line of a denial.
    await page.waitForSelector('#policies td:has-text("deny-rogue")', { timeout: 10_000 });
    await page.waitForSelector('#events li:has-text("policy demo/deny-rogue (DENY) is served")', { timeout: 10_000 });
    await page.waitForSelector('#events li[data-kind="deny"], #events li.error', { timeout: 10_000 });
    // The waypoint in front of reviews is a node of the graph, and an edge's charts are drawn by uPlot.
    await page.waitForSelector('g.node[data-id="wl:demo/waypoint"]', { timeout: 10_000 });
    // Clicking the edge's label (drawn above the lines, like a click on the line itself) selects the edge.
    await page.click('g.edge-label[data-edge="wl:demo/productpage>svc:demo/reviews"]');
    await page.waitForSelector('g.edge.selected[data-id="wl:demo/productpage>svc:demo/reviews"]', { timeout: 5_000 });
    await page.waitForSelector('#c-cps .uplot canvas', { timeout: 10_000 });
    assert.equal(await page.evaluate('typeof uPlot'), 'function', 'the chart library is served by the dashboard');

    // Golden signals per workload: every demo workload has a row whose rate sparkline has points and a non-zero rate.
    const demoWorkloads = ['loadgen', 'frontend', 'productpage', 'reviews-v1', 'reviews-v2', 'ratings', 'details', 'rogue'].map((w) => `wl:demo/${w}`);
    const t1 = Date.now();
    // (Browser-side code as strings: this project compiles without the DOM types.)
    await page.waitForFunction(
      `${JSON.stringify(demoWorkloads)}.every((id) => {
        const row = document.querySelector('#workloads tr.wl[data-id="' + id + '"]');
        const rate = row && row.querySelector('svg.spark[data-signal="rate"]');
        if (!row || !rate) return false;
        // a non-zero call rate in some recent round (reviews-v2 and ratings get 10% of the load: a 5 s window can be empty)
        return Number(rate.getAttribute('data-points')) >= 3 && Number(rate.getAttribute('data-max')) > 0 && rate.querySelector('polyline') !== null;
      })`,
      undefined,
      { timeout: 20_000 },
    );
    t.diagnostic(`workload golden signals with non-zero rates for ${demoWorkloads.length} workloads after ${Date.now() - t1} ms`);
    const rows = await page.$$eval('#workloads tr.wl', (trs) =>
      trs.map((tr) => ({
        id: tr.getAttribute('data-id') ?? '',
        inRate: Number(tr.getAttribute('data-in-rate')),
        outRate: Number(tr.getAttribute('data-out-rate')),
        errorShare: Number(tr.getAttribute('data-error-share')),
        signals: [...tr.querySelectorAll('svg.spark')].map((s) => s.getAttribute('data-signal')),
        p99Max: Number(tr.querySelector('svg.spark[data-signal="p99"]')?.getAttribute('data-max')),
        rateMax: Number(tr.querySelector('svg.spark[data-signal="rate"]')?.getAttribute('data-max')),
      })),
    );
    for (const r of rows) assert.deepEqual(r.signals, ['rate', 'errors', 'p99', 'active'], `${r.id}: four sparklines`);
    const row = (id: string): (typeof rows)[number] => {
      const r = rows.find((x) => x.id === id);
      assert.ok(r, id);
      return r;
    };
    assert.ok(row('wl:demo/loadgen').outRate > 0 && row('wl:demo/loadgen').inRate === 0, 'the load generator only calls');
    assert.ok(row('wl:demo/ratings').rateMax > 0 && row('wl:demo/ratings').outRate === 0, 'ratings serves reviews-v2 and calls nothing');
    assert.ok(row('wl:demo/reviews-v1').p99Max > 0, 'reviews-v1 has a p99 (its calls go through the waypoint)');
    assert.ok(row('wl:demo/rogue').errorShare > 0, 'the rogue client has errors (its denials)');
    // Once the rate window has passed since the policy, every call of the rogue client is denied.
    await page.waitForSelector('#workloads tr.wl[data-id="wl:demo/rogue"][data-error-share="1.000"]', { timeout: 15_000 });
    // The rows carry the server's numbers: the JSON API has the same workloads and non-zero rates.
    const wl = (await (await fetch(`${url}api/workloads?points=30`)).json()) as { workloads: Array<{ id: string; points: Array<{ inCalls: number; outCalls: number }> }> };
    for (const id of demoWorkloads) {
      const w = wl.workloads.find((x) => x.id === id);
      assert.ok(w && w.points.length <= 30 && w.points.some((p) => p.inCalls + p.outCalls > 0), `/api/workloads: ${id} has calls`);
    }
    assert.ok(row('wl:demo/productpage').inRate > 0 && row('wl:demo/productpage').outRate > 0, 'productpage serves and calls');
    // Clicking a workload node selects its row and shows its signals as charts in the side panel (in place of the edge's).
    await page.click('g.node[data-id="wl:demo/productpage"]');
    await page.waitForSelector('#workloads tr.wl.selected[data-id="wl:demo/productpage"]', { timeout: 5_000 });
    await page.waitForSelector('#wl-detail:not([hidden]) #w-rate .uplot canvas', { timeout: 5_000 });
    await page.waitForSelector('#wl-detail #w-p99 .uplot canvas', { timeout: 5_000 });
    assert.ok(await page.$('#edge-panel[hidden]'), 'the edge panel makes room');
    assert.match((await page.textContent('#wl-title')) ?? '', /demo\/productpage/);

    // Layout: the graph fits its panel (the rightmost node is not behind the side panel), idle services are listed, not drawn.
    const geo = (await page.evaluate(`(() => {
      const aside = document.querySelector('aside').getBoundingClientRect();
      const nodesRight = Math.max(...[...document.querySelectorAll('g.node')].map((n) => n.getBoundingClientRect().right));
      const labels = [...document.querySelectorAll('g.edge-label text')].map((t) => t.getBoundingClientRect());
      let overlaps = 0;
      for (let i = 0; i < labels.length; i++)
        for (let j = i + 1; j < labels.length; j++) {
          const a = labels[i], b = labels[j];
          if (a.left < b.right - 1 && a.right > b.left + 1 && a.top < b.bottom - 1 && a.bottom > b.top + 1) overlaps++;
        }
      const drawnIdle = [...document.querySelectorAll('g.node[data-kind="service"], g.node[data-kind="waypoint"]')]
        .map((n) => n.getAttribute('data-id'))
        .filter((id) => ![...document.querySelectorAll('g.edge')].some((e) => { const [s, d] = e.getAttribute('data-id').split('>'); return s === id || d === id; }));
      const listed = [...document.querySelectorAll('#idle-nodes [data-id]')].map((n) => n.getAttribute('data-id'));
      return { asideLeft: aside.left, nodesRight, labels: labels.length, overlaps, drawnIdle, listed, scrollW: document.documentElement.scrollWidth, clientW: document.documentElement.clientWidth };
    })()`)) as { asideLeft: number; nodesRight: number; labels: number; overlaps: number; drawnIdle: string[]; listed: string[]; scrollW: number; clientW: number };
    t.diagnostic(`layout: nodes end at x=${geo.nodesRight.toFixed(0)}, side panel at x=${geo.asideLeft.toFixed(0)}; ${geo.labels} edge labels, ${geo.overlaps} overlapping; not drawn: ${geo.listed.join(', ')}`);
    assert.ok(geo.nodesRight <= geo.asideLeft, 'every node is left of the side panel');
    assert.ok(geo.scrollW <= geo.clientW, 'no horizontal scrolling');
    assert.deepEqual(geo.drawnIdle, [], 'no service or waypoint is drawn without an edge');
    assert.equal(geo.overlaps, 0, 'edge labels do not overlap');
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    t.diagnostic(`screenshot: ${SCREENSHOT}`);

    // The same facts through the JSON API.
    const snap = (await (await fetch(`${url}api/snapshot`)).json()) as { graph: { edges: Array<{ id: string; status: string; deniedTotal: number }> }; health: { agents: Array<{ ready: boolean }> } };
    assert.ok(snap.graph.edges.some((e) => e.id === 'wl:demo/rogue>svc:demo/productpage' && e.deniedTotal > 0));
    assert.ok(snap.health.agents.length === 2 && snap.health.agents.every((a) => a.ready), 'both agents ready');
    assert.deepEqual(consoleErrors, [], 'no console errors');
  });

  test('the dashboard goes and comes back with the control plane process, on the same URL', async (t) => {
    assertPrivileged(t);
    assert.ok(mesh);
    const url = mesh.dashboard.url;
    const port = Number(new URL(url).port);
    const before = listenerPids(port);
    await labStopControlPlane(name);
    assert.equal(listening(port), false, 'no control plane, no dashboard');
    const t0 = Date.now();
    const { pid } = await labStartControlPlane(name);
    assert.ok(!before.includes(pid), 'a new process');
    let s = await servedBy(`${url}healthz`).catch(() => undefined);
    while (s?.status !== 200 && Date.now() - t0 < 15_000) {
      await new Promise((r) => setTimeout(r, 200));
      s = await servedBy(`${url}healthz`).catch(() => undefined);
    }
    assert.equal(s?.server, `ambit-control-plane/${pid}`, 'the restarted control plane serves the same URL (flags kept in the launch file)');
    assert.deepEqual(listenerPids(port), [pid]);
    t.diagnostic(`control plane restarted (pid ${pid}); dashboard back on ${url} after ${Date.now() - t0} ms`);
  });
});
