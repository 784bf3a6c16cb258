/**
 * The dashboard page: plain HTML, CSS and a browser script (SVG graph;
 * per-edge time series drawn with uPlot, which the dashboard serves from
 * its npm package, see vendor.ts), served as is: no CDN, so the page works
 * without internet. The script polls nothing but this
 * server's JSON API (see server.ts); it prefers the SSE stream and falls
 * back to polling /api/snapshot.
 *
 * Hooks for tests and scripts: every node is `<g class="node" data-id
 * data-kind data-health>`, every edge `<g class="edge" data-id data-status
 * data-cps data-mtls data-denied>`; #status carries data-rounds.
 *
 * The script is a raw string: it must not contain backticks or "${".
 */

export const INDEX_HTML = String.raw`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>__TITLE__ mesh dashboard</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/vendor/uplot.css">
<link rel="stylesheet" href="/app.css">
</head>
<body>
<header>
  <h1>__TITLE__ <span class="sub">service graph</span></h1>
  <div id="status" data-rounds="0">connecting...</div>
  <div class="legend">
    <span><i class="sw ok"></i>traffic</span><span><i class="sw error"></i>failing</span><span><i class="sw denied"></i>denied by policy</span><span><i class="sw idle"></i>idle</span><span><svg width="12" height="14" viewBox="0 0 12 14"><rect x="1" y="6" width="10" height="7" rx="1.5" fill="#3fb68b"/><path d="M3 6V4a3 3 0 0 1 6 0v2" stroke="#3fb68b" stroke-width="1.6" fill="none"/></svg> mutual TLS</span>
    <span>&#9675; workload &#9651; service &#9671; waypoint</span>
  </div>
</header>
<main>
  <section id="graph-panel">
    <svg id="graph" role="img" aria-label="service graph"></svg>
  </section>
  <aside>
    <section id="edge-panel">
      <h2>Edge <span id="edge-title">(click an edge)</span></h2>
      <div id="edge-facts"></div>
      <div class="charts">
        <figure><figcaption>connections / s</figcaption><div id="c-cps" class="chart"></div></figure>
        <figure><figcaption>bytes / s</figcaption><div id="c-bytes" class="chart"></div></figure>
        <figure><figcaption>open connections</figcaption><div id="c-active" class="chart"></div></figure>
        <figure><figcaption>denied + failed / s</figcaption><div id="c-fail" class="chart"></div></figure>
        <figure><figcaption>p99 latency (ms, L7 via waypoint)</figcaption><div id="c-p99" class="chart"></div></figure>
      </div>
    </section>
    <section id="health-panel"><h2>Agents</h2><div id="agents"></div><h2>Control plane</h2><div id="cp"></div><h2>Policies</h2><div id="policies"></div><h2>Waypoints</h2><div id="waypoints"></div></section>
  </aside>
</main>
<section id="events-panel"><h2>Events and access log</h2><ol id="events"></ol></section>
<script src="/vendor/uplot.js"></script>
<script src="/app.js"></script>
</body>
</html>
`;

export const APP_CSS = String.raw`
:root { --bg:#0f1720; --panel:#17212c; --fg:#dbe4ee; --dim:#8597a8; --ok:#3fb68b; --err:#e8a33d; --deny:#e5484d; --idle:#4b5b6b; --svc:#6aa6ff; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--fg); font:13px/1.4 system-ui, sans-serif; }
header { display:flex; gap:24px; align-items:center; padding:8px 16px; background:var(--panel); border-bottom:1px solid #243240; flex-wrap:wrap; }
h1 { font-size:17px; margin:0; } h1 .sub { color:var(--dim); font-weight:normal; }
h2 { font-size:13px; margin:10px 0 4px; color:var(--dim); text-transform:uppercase; letter-spacing:.05em; }
#status { color:var(--dim); }
.legend { display:flex; gap:14px; color:var(--dim); align-items:center; }
.sw { display:inline-block; width:18px; height:3px; margin-right:5px; vertical-align:middle; }
.sw.ok { background:var(--ok); } .sw.error { background:var(--err); } .sw.denied { background:var(--deny); } .sw.idle { background:var(--idle); }
main { display:flex; min-height:560px; }
#graph-panel { flex:1; min-width:0; overflow-x:auto; }
#graph { min-height:520px; display:block; }
aside { width:360px; flex:none; padding:0 12px; background:var(--panel); border-left:1px solid #243240; }
figure { margin:4px 0 8px; } figcaption { color:var(--dim); font-size:11px; }
.chart { width:300px; min-height:90px; background:#101921; border-radius:4px; color:#8597a8; font:10px sans-serif; }
.chart .empty { padding:8px; }
table { border-collapse:collapse; width:100%; font-size:12px; }
td, th { text-align:left; padding:2px 4px; border-bottom:1px solid #22303d; vertical-align:top; }
th { color:var(--dim); font-weight:normal; }
.okc { color:var(--ok); } .errc { color:var(--err); } .denyc { color:var(--deny); } .dim { color:var(--dim); }
#events-panel { padding:4px 16px 16px; }
#events { list-style:none; margin:0; padding:0; font:12px/1.5 ui-monospace, monospace; max-height:260px; overflow:auto; }
#events li { border-bottom:1px solid #1d2935; padding:1px 0; white-space:nowrap; overflow:hidden; text-overflow:ellipsis; }
#events li.warn { color:var(--err); } #events li.error { color:var(--deny); }
#events .k { display:inline-block; width:56px; color:var(--dim); }
.node text { fill:var(--fg); font-size:12px; text-anchor:middle; }
.node .ver { fill:var(--dim); font-size:10px; }
.node { cursor:default; }
.edge { cursor:pointer; }
.edge path.line { fill:none; }
.edge path.hit { fill:none; stroke:transparent; stroke-width:14; }
.edge text { font-size:10px; fill:var(--fg); paint-order:stroke; stroke:var(--bg); stroke-width:3px; }
.edge.selected path.line { filter:drop-shadow(0 0 4px #9cf); }
#edge-facts { font-size:12px; color:var(--dim); min-height:32px; }
`;

export const APP_JS = String.raw`'use strict';
(function () {
  var SVGNS = 'http://www.w3.org/2000/svg';
  var COLORS = { ok: '#3fb68b', error: '#e8a33d', denied: '#e5484d', idle: '#4b5b6b' };
  var state = { graph: null, health: null, events: [], lastSeq: 0, selected: null, layoutKey: '', pos: {}, polling: false, interval: 2000 };

  function el(tag, attrs, parent) {
    var e = document.createElementNS(SVGNS, tag);
    for (var k in attrs) if (Object.prototype.hasOwnProperty.call(attrs, k)) e.setAttribute(k, String(attrs[k]));
    if (parent) parent.appendChild(e);
    return e;
  }
  function h(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }
  function fmtRate(n) {
    if (!n) return '0';
    if (n >= 100) return n.toFixed(0);
    if (n >= 10) return n.toFixed(1);
    return n.toFixed(2);
  }
  function fmtBytes(n) {
    if (n >= 1048576) return (n / 1048576).toFixed(1) + ' MB';
    if (n >= 1024) return (n / 1024).toFixed(1) + ' KB';
    return Math.round(n) + ' B';
  }
  function fmtDur(ms) {
    if (ms === undefined || ms === null) return '-';
    var s = Math.round(ms / 1000);
    if (s < 0) return 'expired';
    if (s < 120) return s + 's';
    if (s < 7200) return Math.round(s / 60) + 'm';
    if (s < 172800) return Math.round(s / 3600) + 'h';
    return Math.round(s / 86400) + 'd';
  }
  function short(id) { return id.replace(/^(wl|svc|ext):/, ''); }

  // ---------------------------------------------------------------- layout
  function layout(nodes, edges) {
    var out = {}, inc = {}, ids = nodes.map(function (n) { return n.id; });
    ids.forEach(function (id) { out[id] = []; inc[id] = 0; });
    edges.forEach(function (e) { if (out[e.source] && out[e.target] !== undefined) { out[e.source].push(e.target); inc[e.target]++; } });
    var layer = {};
    var connected = {};
    edges.forEach(function (e) { connected[e.source] = true; connected[e.target] = true; });
    // longest path from the sources, cycles cut by a depth limit
    function visit(id, d, seen) {
      if (seen[id] || d > 30) return;
      if (layer[id] !== undefined && layer[id] >= d) return;
      layer[id] = d;
      seen[id] = true;
      out[id].forEach(function (t) { visit(t, d + 1, seen); });
      seen[id] = false;
    }
    ids.filter(function (id) { return connected[id] && inc[id] === 0; }).forEach(function (id) { visit(id, 0, {}); });
    ids.filter(function (id) { return connected[id] && layer[id] === undefined; }).forEach(function (id) { visit(id, 0, {}); });
    // a source sits just left of its nearest target (a client calling deep into the app is drawn there, not in column 0)
    ids.filter(function (id) { return connected[id] && inc[id] === 0; }).forEach(function (id) {
      var m = Math.min.apply(null, out[id].map(function (t) { return layer[t]; }).concat([99]));
      if (m !== 99 && m - 1 > layer[id]) layer[id] = m - 1;
    });
    var maxLayer = 0;
    ids.forEach(function (id) { if (layer[id] !== undefined && layer[id] > maxLayer) maxLayer = layer[id]; });
    var cols = [];
    for (var i = 0; i <= maxLayer; i++) cols.push([]);
    var idle = [];
    nodes.forEach(function (n) { if (layer[n.id] === undefined) idle.push(n); else cols[layer[n.id]].push(n); });
    // order each column by the mean position of its predecessors (one barycentre pass)
    var rank = {};
    cols.forEach(function (col, ci) {
      col.forEach(function (n) {
        var preds = edges.filter(function (e) { return e.target === n.id && rank[e.source] !== undefined; }).map(function (e) { return rank[e.source]; });
        n._bc = preds.length ? preds.reduce(function (a, b) { return a + b; }, 0) / preds.length : 0;
      });
      col.sort(function (a, b) { return ci === 0 ? a.id.localeCompare(b.id) : (a._bc - b._bc) || a.id.localeCompare(b.id); });
      col.forEach(function (n, i) { rank[n.id] = i; });
    });
    var svg = document.getElementById('graph');
    var W = Math.max(svg.parentNode.clientWidth || 900, 120 + maxLayer * 110);
    var tallest = cols.reduce(function (m, c) { return Math.max(m, c.length); }, 1);
    var H = Math.max(520, tallest * 110 + (idle.length ? 120 : 40));
    var pos = {};
    var colW = (W - 120) / Math.max(1, maxLayer);
    cols.forEach(function (col, ci) {
      var x = maxLayer === 0 ? W / 2 : 60 + ci * colW;
      var gap = (H - (idle.length ? 120 : 40)) / (col.length + 1);
      col.forEach(function (n, i) { pos[n.id] = { x: x, y: 20 + gap * (i + 1) }; });
    });
    idle.forEach(function (n, i) { pos[n.id] = { x: 80 + i * 110, y: H - 50 }; });
    return { pos: pos, width: W, height: H };
  }

  // ---------------------------------------------------------------- graph drawing
  function padlock(parent, x, y) {
    var g = el('g', { class: 'lock', transform: 'translate(' + (x - 5) + ',' + (y - 7) + ')' }, parent);
    el('rect', { x: 0, y: 6, width: 10, height: 7, rx: 1.5, fill: '#3fb68b' }, g);
    el('path', { d: 'M2 6V4a3 3 0 0 1 6 0v2', stroke: '#3fb68b', 'stroke-width': 1.6, fill: 'none' }, g);
    var t = el('title', {}, g);
    t.textContent = 'mutual TLS';
    return g;
  }
  function nodeShape(g, n) {
    var stroke = n.health === 'denied' ? COLORS.denied : n.health === 'error' ? COLORS.error : n.health === 'ok' ? COLORS.ok : COLORS.idle;
    if (n.kind === 'service') el('path', { d: 'M0 -18 L17 12 L-17 12 Z', fill: '#1b2a3d', stroke: '#6aa6ff', 'stroke-width': 2 }, g);
    else if (n.kind === 'waypoint') el('path', { d: 'M0 -18 L18 0 L0 18 L-18 0 Z', fill: '#2a2140', stroke: '#b08cff', 'stroke-width': 2 }, g);
    else if (n.kind === 'external') el('circle', { r: 16, fill: '#1a1f26', stroke: '#8597a8', 'stroke-width': 2, 'stroke-dasharray': '4 3' }, g);
    else el('circle', { r: 17, fill: '#15303a', stroke: stroke, 'stroke-width': 2.5 }, g);
  }
  function drawGraph() {
    var svg = document.getElementById('graph');
    var g = state.graph;
    if (!g) return;
    var key = g.nodes.map(function (n) { return n.id; }).join(',') + '|' + g.edges.map(function (e) { return e.id; }).join(',') + '|' + (svg.parentNode.clientWidth || 0);
    if (key !== state.layoutKey) {
      var lay = layout(g.nodes.slice(), g.edges);
      state.pos = lay.pos;
      state.layoutKey = key;
      svg.setAttribute('viewBox', '0 0 ' + lay.width + ' ' + lay.height);
      svg.style.height = lay.height + 'px';
      svg.style.width = lay.width + 'px';
    }
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    var defs = el('defs', {}, svg);
    Object.keys(COLORS).forEach(function (k) {
      var m = el('marker', { id: 'arrow-' + k, viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 9, markerHeight: 9, markerUnits: 'userSpaceOnUse', orient: 'auto-start-reverse' }, defs);
      el('path', { d: 'M0 0 L10 5 L0 10 Z', fill: COLORS[k] }, m);
    });
    var edgesG = el('g', { class: 'edges' }, svg);
    var nodesG = el('g', { class: 'nodes' }, svg);
    g.edges.forEach(function (e) {
      var a = state.pos[e.source], b = state.pos[e.target];
      if (!a || !b) return;
      var st = e.status;
      var color = COLORS[st] || COLORS.idle;
      var x1 = a.x + 20, y1 = a.y, x2 = b.x - 22, y2 = b.y;
      if (b.x <= a.x) { x1 = a.x; y1 = a.y + 20; x2 = b.x; y2 = b.y + 20; }
      var mx = (x1 + x2) / 2;
      var d = 'M' + x1 + ' ' + y1 + ' C' + mx + ' ' + y1 + ' ' + mx + ' ' + y2 + ' ' + x2 + ' ' + y2;
      var width = st === 'idle' ? 1.5 : Math.min(7, 2 + Math.log2(1 + (e.cps || 0) + (e.rps || 0)));
      var eg = el('g', { class: 'edge' + (state.selected === e.id ? ' selected' : ''), 'data-id': e.id, 'data-status': st, 'data-cps': (e.cps || 0).toFixed(3), 'data-rps': (e.rps || 0).toFixed(3), 'data-mtls': e.mtls, 'data-denied': e.deniedPerSec > 0 ? 'true' : 'false' }, edgesG);
      el('path', { class: 'line', d: d, stroke: color, 'stroke-width': width, 'marker-end': 'url(#arrow-' + (COLORS[st] ? st : 'idle') + ')', 'stroke-dasharray': st === 'denied' ? '7 4' : st === 'idle' ? '3 4' : '' }, eg);
      el('path', { class: 'hit', d: d }, eg);
      var lx = mx, ly = (y1 + y2) / 2 - 6;
      var label;
      if (st === 'denied') label = 'denied ' + fmtRate(e.deniedPerSec) + '/s';
      else if (e.rps > 0) label = fmtRate(e.rps) + ' rps' + (e.errorRate > 0 ? ' ' + (e.errorRate * 100).toFixed(0) + '% err' : '') + (e.p99Ms !== undefined ? ' p99 ' + e.p99Ms.toFixed(0) + 'ms' : '');
      else if (e.failedPerSec > 0) label = fmtRate(e.failedPerSec) + ' fail/s';
      else if (st !== 'idle') label = fmtRate(e.cps) + ' c/s';
      else label = '';
      if (label) { var t = el('text', { x: lx + 7, y: ly, 'text-anchor': 'middle' }, eg); t.textContent = label; }
      if (e.mtls === 'full' || e.mtls === 'partial') padlock(eg, lx - (label ? label.length * 2.9 + 3 : 0), ly - 4).setAttribute('opacity', e.mtls === 'full' ? '1' : '0.5');
      var title = el('title', {}, eg);
      title.textContent = short(e.source) + ' -> ' + short(e.target) + (e.service ? ' (' + e.service + ')' : '') + ': ' + fmtRate(e.cps) + ' conn/s, ' + fmtBytes(e.bytesPerSec) + '/s, ' + e.active + ' open; mTLS ' + e.mtls + (e.deniedTotal ? '; ' + e.deniedTotal + ' denied' : '');
      eg.addEventListener('click', function () { state.selected = e.id; drawGraph(); refreshEdge(); });
    });
    g.nodes.forEach(function (n) {
      var p = state.pos[n.id];
      if (!p) return;
      var ng = el('g', { class: 'node', 'data-id': n.id, 'data-kind': n.kind, 'data-health': n.health, transform: 'translate(' + p.x + ',' + p.y + ')' }, nodesG);
      nodeShape(ng, n);
      var t = el('text', { y: 32 }, ng);
      t.textContent = n.name;
      var sub = [n.version, n.namespace, n.node].filter(function (x) { return x; }).join(' . ');
      var t2 = el('text', { y: 45, class: 'ver' }, ng);
      t2.textContent = sub;
      var title = el('title', {}, ng);
      title.textContent = n.kind + ' ' + short(n.id) + (n.node ? ' on ' + n.node : '');
    });
  }

  // ---------------------------------------------------------------- charts
  var charts = {};
  function chart(id, points, pick, color) {
    var box = document.getElementById(id);
    if (!box) return;
    var xs = [], ys = [];
    points.forEach(function (p) {
      var v = pick(p);
      xs.push(p.t / 1000);
      ys.push(v === undefined || v === null || !isFinite(v) ? null : v);
    });
    var present = ys.filter(function (v) { return v !== null; });
    if (present.length === 0 || typeof uPlot === 'undefined') {
      if (charts[id]) { charts[id].destroy(); delete charts[id]; }
      box.innerHTML = '<div class="empty">no data</div>';
      return;
    }
    var data = [xs, ys];
    var u = charts[id];
    if (!u) {
      box.textContent = '';
      u = new uPlot({
        width: 300, height: 90, legend: { show: false }, cursor: { show: false },
        scales: { x: { time: true }, y: { range: function (_u, min, max) { return [0, max > 0 ? max * 1.1 : 1]; } } },
        axes: [
          { stroke: '#8597a8', grid: { stroke: '#22303d', width: 1 }, ticks: { show: false }, size: 18, font: '9px sans-serif' },
          { stroke: '#8597a8', grid: { stroke: '#22303d', width: 1 }, ticks: { show: false }, size: 36, font: '9px sans-serif', values: function (_u, vals) { return vals.map(fmtRate); } },
        ],
        series: [{}, { stroke: color, width: 1.5, spanGaps: false, points: { show: false } }],
      }, data, box);
      charts[id] = u;
    } else {
      u.setData(data);
    }
  }
  function refreshEdge() {
    var id = state.selected;
    var g = state.graph;
    var e = g && g.edges.filter(function (x) { return x.id === id; })[0];
    document.getElementById('edge-title').textContent = e ? short(e.source) + ' \u2192 ' + short(e.target) : '(click an edge)';
    var facts = document.getElementById('edge-facts');
    facts.textContent = '';
    if (!e) return;
    facts.textContent = (e.service ? 'service ' + e.service + ' . ' : '') + e.protocol + ' . mTLS ' + e.mtls + ' . ' + e.openedTotal + ' connections, ' + fmtBytes(e.bytesTotal) + ' total, ' + e.deniedTotal + ' denied, ' + e.failedTotal + ' failed';
    fetch('/api/series?edge=' + encodeURIComponent(id)).then(function (r) { return r.ok ? r.json() : null; }).then(function (s) {
      if (!s || state.selected !== id) return;
      var pts = s.points;
      chart('c-cps', pts, function (p) { return p.rps > 0 ? p.rps : p.cps; }, '#3fb68b');
      chart('c-bytes', pts, function (p) { return p.bytesPerSec; }, '#6aa6ff');
      chart('c-active', pts, function (p) { return p.active; }, '#b08cff');
      chart('c-fail', pts, function (p) { return p.deniedPerSec + p.failedPerSec; }, '#e5484d');
      chart('c-p99', pts, function (p) { return p.p99Ms; }, '#e8a33d');
    }).catch(function () { /* the next round retries */ });
  }

  // ---------------------------------------------------------------- health and events
  function table(parent, head, rows) {
    var t = h('table');
    var tr = h('tr');
    head.forEach(function (x) { tr.appendChild(h('th', x)); });
    t.appendChild(tr);
    rows.forEach(function (r) {
      var row = h('tr');
      r.forEach(function (cell) {
        var td = h('td');
        if (cell && typeof cell === 'object') { td.textContent = cell.text; td.className = cell.cls || ''; if (cell.title) td.title = cell.title; } else td.textContent = cell === undefined ? '' : String(cell);
        row.appendChild(td);
      });
      t.appendChild(row);
    });
    parent.appendChild(t);
  }
  function drawHealth() {
    var hv = state.health;
    if (!hv) return;
    var agents = document.getElementById('agents');
    agents.textContent = '';
    table(agents, ['node', 'state', 'pods up', 'open conns', 'certificates'], hv.agents.map(function (a) {
      var stateCell = !a.up ? { text: 'down', cls: 'denyc' } : a.ready ? { text: 'ready', cls: 'okc' } : { text: 'not ready: ' + a.pending.join(', '), cls: 'errc' };
      var avail = a.certificates.filter(function (c) { return c.state === 'Available'; }).length;
      var soonest = a.certificates.reduce(function (m, c) { return c.remainingMs !== undefined && (m === undefined || c.remainingMs < m) ? c.remainingMs : m; }, undefined);
      var list = a.certificates.map(function (c) { return c.identity + ' ' + c.state + ' until ' + c.notAfter; }).join(', ');
      var certs = a.certificates.length ? { text: avail + '/' + a.certificates.length + ' valid, next expiry in ' + fmtDur(soonest), cls: avail === a.certificates.length ? 'okc' : 'errc', title: list } : '-';
      return [a.node, stateCell, a.workloadsUp + '/' + a.workloads, a.openConnections === undefined ? '-' : a.openConnections, certs];
    }));
    var cp = document.getElementById('cp');
    cp.textContent = '';
    var c = hv.controlPlane;
    if (!c) cp.appendChild(h('div', 'not scraped', 'dim'));
    else if (!c.up) cp.appendChild(h('div', 'down: ' + (c.error || ''), 'denyc'));
    else {
      cp.appendChild(h('div', 'config version ' + c.version + ': ' + (c.served ? c.served.workloads + ' workloads, ' + c.served.services + ' services, ' + c.served.authorizations + ' authorizations' : '') + (c.rejections ? ', ' + c.rejections + ' rejected by agents' : ''), 'okc'));
      c.issues.forEach(function (i) { cp.appendChild(h('div', i, 'errc')); });
    }
    var pol = document.getElementById('policies');
    pol.textContent = '';
    if (!c || c.policies.length === 0) pol.appendChild(h('div', 'none', 'dim'));
    else table(pol, ['policy', 'action', 'scope', 'rules'], c.policies.map(function (p) { return [p.namespace + '/' + p.name, { text: p.action, cls: /DENY/.test(p.action) ? 'denyc' : 'okc' }, p.scope, p.rules]; }));
    var wp = document.getElementById('waypoints');
    wp.textContent = '';
    if (hv.waypoints.length === 0) wp.appendChild(h('div', 'none in this lab', 'dim'));
    else table(wp, ['waypoint', 'state', 'requests'], hv.waypoints.map(function (w) { return [w.namespace + '/' + w.name, w.up ? { text: 'up', cls: 'okc' } : { text: 'down', cls: 'denyc' }, w.requests]; }));
  }
  function drawEvents(newOnes) {
    var list = document.getElementById('events');
    newOnes.forEach(function (ev) {
      var li = h('li', null, ev.level);
      li.setAttribute('data-kind', ev.kind);
      var time = new Date(ev.t).toLocaleTimeString();
      li.appendChild(h('span', time + ' ', 'dim'));
      li.appendChild(h('span', ev.kind, 'k'));
      li.appendChild(document.createTextNode(ev.text));
      list.insertBefore(li, list.firstChild);
    });
    while (list.childNodes.length > 200) list.removeChild(list.lastChild);
  }

  // ---------------------------------------------------------------- data
  function apply(snap) {
    state.graph = snap.graph;
    state.health = snap.health;
    state.interval = snap.graph.intervalMs || 2000;
    var fresh = snap.events.filter(function (e) { return e.seq > state.lastSeq; });
    if (fresh.length) state.lastSeq = fresh[fresh.length - 1].seq;
    if (!state.selected || !snap.graph.edges.some(function (e) { return e.id === state.selected; })) {
      var busiest = snap.graph.edges.slice().sort(function (a, b) { return (b.cps + b.rps) - (a.cps + a.rps); })[0];
      state.selected = busiest ? busiest.id : null;
    }
    var st = document.getElementById('status');
    var moving = snap.graph.edges.filter(function (e) { return e.status !== 'idle'; }).length;
    st.textContent = 'live . ' + snap.graph.nodes.length + ' nodes, ' + snap.graph.edges.length + ' edges (' + moving + ' active) . rates over ' + snap.graph.windowSeconds + 's . scraped ' + new Date(snap.graph.at).toLocaleTimeString() + ' via ' + snap.health.scrape.how + ' in ' + snap.health.scrape.lastRoundMs + ' ms';
    st.setAttribute('data-rounds', String(snap.graph.rounds));
    drawGraph();
    drawHealth();
    drawEvents(fresh);
    refreshEdge();
  }
  function poll() {
    fetch('/api/snapshot?since=' + state.lastSeq).then(function (r) { return r.json(); }).then(apply).catch(function () {
      document.getElementById('status').textContent = 'dashboard server unreachable; retrying...';
    }).then(function () { setTimeout(poll, state.interval); });
  }
  function start() {
    if (window.EventSource && !/[?&]poll/.test(location.search)) {
      var es = new EventSource('/api/stream');
      var got = false;
      es.addEventListener('snapshot', function (m) { got = true; apply(JSON.parse(m.data)); });
      es.onerror = function () {
        if (!got) { es.close(); if (!state.polling) { state.polling = true; poll(); } }
      };
    } else { state.polling = true; poll(); }
    window.addEventListener('resize', function () { state.layoutKey = ''; drawGraph(); });
  }
  start();
})();
`;
