/**
 * The dashboard in a real browser against a live lab: the living demo (small
 * rate, no deny policy at first) with its dashboard on an ephemeral loopback
 * port, Debian's chromium driven by playwright-core. Checks that the graph
 * shows the app's workloads and services, that meshed edges carry non-zero
 * traffic and the mTLS padlock, that applying the deny policy turns the
 * rogue client's edge red, and that the page logged no console errors.
 * Saves a screenshot (AMBIT_DASHBOARD_SCREENSHOT or /tmp/ambit-dashboard.png).
 * Needs root (network namespaces) and /usr/bin/chromium.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { chromium, type Browser, type Page } from 'playwright-core';
import { startLivingMesh, type LivingMesh } from '../../src/demo/living.js';
import { assertPrivileged, inCI, requiresRoot, requiresTool } from '../helpers/privileged.js';

const CHROMIUM = process.env.AMBIT_CHROMIUM ?? '/usr/bin/chromium';
const SCREENSHOT = process.env.AMBIT_DASHBOARD_SCREENSHOT ?? '/tmp/ambit-dashboard.png';
const name = `dash${randomBytes(2).toString('hex')}`;

function chromiumGate(): { skip?: string } {
  if (existsSync(CHROMIUM) || inCI) return {};
  return { skip: `needs chromium at ${CHROMIUM} (apt-get install chromium)` };
}

describe('dashboard in a browser', { ...requiresRoot(), ...requiresTool('curl'), ...chromiumGate(), timeout: 120_000 }, () => {
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

  test('the graph shows the app, live traffic with mTLS, then the denied edge', async (t) => {
    assertPrivileged(t);
    assert.ok(mesh);
    const url = mesh.dashboard.url;
    assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/$/, 'loopback only');
    await page.goto(url);

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
    // The page also lists the policy and the access-log line of a denial.
    await page.waitForSelector('#policies td:has-text("deny-rogue")', { timeout: 10_000 });
    await page.waitForSelector('#events li[data-kind="deny"], #events li.error', { timeout: 10_000 });
    // The waypoint in front of reviews is a node of the graph, and an edge's charts are drawn by uPlot.
    await page.waitForSelector('g.node[data-id="wl:demo/waypoint"]', { timeout: 10_000 });
    await page.click(busy);
    await page.waitForSelector('#c-cps .uplot canvas', { timeout: 10_000 });
    assert.equal(await page.evaluate('typeof uPlot'), 'function', 'the chart library is served by the dashboard');
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    t.diagnostic(`screenshot: ${SCREENSHOT}`);

    // The same facts through the JSON API.
    const snap = (await (await fetch(`${url}api/snapshot`)).json()) as { graph: { edges: Array<{ id: string; status: string; deniedTotal: number }> }; health: { agents: Array<{ ready: boolean }> } };
    assert.ok(snap.graph.edges.some((e) => e.id === 'wl:demo/rogue>svc:demo/productpage' && e.deniedTotal > 0));
    assert.ok(snap.health.agents.length === 2 && snap.health.agents.every((a) => a.ready), 'both agents ready');
    assert.deepEqual(consoleErrors, [], 'no console errors');
  });
});
