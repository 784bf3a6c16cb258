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
 * data-cps data-mtls data-denied>`; #status carries data-rounds. Services
 * without any edge are not drawn but listed in #idle-nodes. Every workload
 * has a row `<tr class="wl" data-id data-in-rate data-out-rate
 * data-error-share data-active>` in #workloads with one `<svg class="spark"
 * data-signal="rate|errors|p99|active" data-points data-max>` per signal.
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
  <div id="left">
  <section id="graph-panel">
    <svg id="graph" role="img" aria-label="service graph"></svg>
    <div id="idle-nodes" class="dim"></div>
  </section>
  <section id="workloads-panel">
    <h2>Workloads <span class="sub">golden signals, last <span id="wl-span">-</span>; <i class="sw ok"></i>in (served) <i class="sw out"></i>out (called)</span></h2>
    <div id="workloads"><div class="dim">waiting for the first scrape...</div></div>
  </section>
  </div>
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
    <section id="wl-detail" hidden>
      <h2>Workload <span id="wl-title"></span></h2>
      <div id="wl-facts"></div>
      <div class="charts">
        <figure><figcaption>calls / s: <span class="okc">in (served)</span>, <span class="svcc">out (called)</span></figcaption><div id="w-rate" class="chart"></div></figure>
        <figure><figcaption>errors / s (failed + denied): <span class="errc">in</span>, <span class="denyc">out</span></figcaption><div id="w-err" class="chart"></div></figure>
        <figure><figcaption>p99 latency (ms, L7 via waypoint): <span class="okc">in</span>, <span class="svcc">out</span></figcaption><div id="w-p99" class="chart"></div></figure>
        <figure><figcaption>open connections</figcaption><div id="w-active" class="chart"></div></figure>
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
#left { flex:1; min-width:0; }
#graph-panel { overflow:hidden; }
#graph { display:block; width:100%; }
#idle-nodes { padding:0 16px 4px; font-size:12px; min-height:18px; }
#workloads-panel { padding:0 16px 8px; }
#workloads-panel h2 .sub { text-transform:none; letter-spacing:0; font-weight:normal; margin-left:8px; }
.sw.out { background:#6aa6ff; }
table.wl-table td { vertical-align:middle; padding:3px 6px; }
table.wl-table td.name { white-space:nowrap; }
table.wl-table td.name .dim { font-size:11px; }
table.wl-table tr.selected td { background:#1d2b3a; }
table.wl-table .num { display:inline-block; min-width:88px; font:11px ui-monospace, monospace; color:var(--fg); vertical-align:middle; margin-left:6px; white-space:nowrap; }
svg.spark { vertical-align:middle; background:#101921; border-radius:3px; }
svg.spark polyline { fill:none; stroke-width:1.5; stroke-linejoin:round; }
aside { width:360px; flex:none; padding:0 12px; background:var(--panel); border-left:1px solid #243240; }
figure { margin:4px 0 8px; } figcaption { color:var(--dim); font-size:11px; }
.chart { width:300px; min-height:90px; background:#101921; border-radius:4px; color:#8597a8; font:10px sans-serif; }
.chart .empty { padding:8px; }
table { border-collapse:collapse; width:100%; font-size:12px; }
td, th { text-align:left; padding:2px 4px; border-bottom:1px solid #22303d; vertical-align:top; }
th { color:var(--dim); font-weight:normal; }
.okc { color:var(--ok); } .svcc { color:var(--svc); } .errc { color:var(--err); } .denyc { color:var(--deny); } .dim { color:var(--dim); }
#events-panel { padding:4px 16px 16px; }
#events { list-style:none; margin:0; padding:0; font:12px/1.5 ui-monospace, monospace; max-height:260px; overflow:auto; }
#events li { border-bottom:1px solid #1d2935; padding:1px 0; white-space:nowrap; overflow:hidden; text-overflow:ellipsis; }
#events li.warn { color:var(--err); } #events li.error { color:var(--deny); }
#events .k { display:inline-block; width:56px; color:var(--dim); }
.node text { fill:var(--fg); font-size:12px; text-anchor:middle; }
.node .ver { fill:var(--dim); font-size:10px; }
.node { cursor:pointer; }
.edge { cursor:pointer; }
.edge path.line { fill:none; }
.edge path.hit { fill:none; stroke:transparent; stroke-width:14; }
.edge text, .edge-label text { font-size:10px; fill:var(--fg); paint-order:stroke; stroke:var(--bg); stroke-width:3px; }
.edge-label { cursor:pointer; }
.node.selected > circle, .node.selected > path { filter:drop-shadow(0 0 5px #9cf); }
.edge.selected path.line { filter:drop-shadow(0 0 4px #9cf); }
#edge-facts, #wl-facts { font-size:12px; color:var(--dim); min-height:32px; }
aside section[hidden] { display:none; }
`;

export const APP_JS = String.raw`'use strict';
(function () {
  var SVGNS = 'http://www.w3.org/2000/svg';
  var COLORS = { ok: '#3fb68b', error: '#e8a33d', denied: '#e5484d', idle: '#4b5b6b' };
  var state = { graph: null, health: null, events: [], lastSeq: 0, selected: null, selectedWl: null, panel: 'edge', workloads: null, layoutKey: '', pos: {}, polling: false, interval: 2000 };

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
  function fmtShort(n) {
    if (!n) return '0';
    if (n >= 100) return n.toFixed(0);
    return n.toFixed(1);
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
    // workloads without traffic stay visible (bottom row); services, waypoints and externals without edges are only listed
    var idle = [], hidden = [];
    nodes.forEach(function (n) { if (layer[n.id] !== undefined) cols[layer[n.id]].push(n); else if (n.kind === 'workload') idle.push(n); else hidden.push(n); });
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
    // The drawing is laid out at least 120 units per column and scaled down (viewBox) to the panel's width.
    var svg = document.getElementById('graph');
    var W = Math.max(svg.parentNode.clientWidth || 900, 110 + maxLayer * 120, idle.length * 110 + 40);
    var tallest = cols.reduce(function (m, c) { return Math.max(m, c.length); }, 1);
    // Rows 115 units apart, every column centred on the middle; room above for labels, below for the names.
    var ROW = 115;
    var H = Math.max(220, 110 + (tallest - 1) * ROW) + (idle.length ? 90 : 0);
    var mid = 45 + ((tallest - 1) * ROW) / 2;
    var pos = {};
    var colW = (W - 110) / Math.max(1, maxLayer);
    cols.forEach(function (col, ci) {
      var x = maxLayer === 0 ? W / 2 : 55 + ci * colW;
      col.forEach(function (n, i) { pos[n.id] = { x: x, y: mid + (i - (col.length - 1) / 2) * ROW }; });
    });
    idle.forEach(function (n, i) { pos[n.id] = { x: 60 + i * 110, y: H - 60 }; });
    return { pos: pos, width: W, height: H, hidden: hidden };
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
  // A point of the edge's cubic curve (control points at the middle x).
  function bezierAt(c, t) {
    var u = 1 - t;
    return { x: u * u * u * c[0] + 3 * u * u * t * c[2] + 3 * u * t * t * c[4] + t * t * t * c[6], y: u * u * u * c[1] + 3 * u * u * t * c[3] + 3 * u * t * t * c[5] + t * t * t * c[7] };
  }
  function overlaps(a, list) {
    for (var i = 0; i < list.length; i++) {
      var b = list[i];
      if (a.x0 < b.x1 && a.x1 > b.x0 && a.y0 < b.y1 && a.y1 > b.y0) return true;
    }
    return false;
  }
  function edgeLabel(e) {
    if (e.status === 'denied') return 'denied ' + fmtShort(e.deniedPerSec) + '/s';
    if (e.rps > 0) return fmtShort(e.rps) + ' rps';
    if (e.failedPerSec > 0) return fmtShort(e.failedPerSec) + ' fail/s';
    if (e.status !== 'idle' && e.cps < 0.05 && e.active > 0) return e.active + ' open';
    if (e.status !== 'idle') return fmtShort(e.cps) + ' c/s';
    return '';
  }
  function edgeTitle(e) {
    return short(e.source) + ' -> ' + short(e.target) + (e.service ? ' (' + e.service + ')' : '') + ': ' + fmtRate(e.cps) + ' conn/s, ' + fmtBytes(e.bytesPerSec) + '/s, ' + e.active + ' open' +
      (e.rps > 0 ? '; ' + fmtRate(e.rps) + ' req/s, ' + (e.errorRate * 100).toFixed(1) + '% errors' : '') + (e.p99Ms !== undefined ? ', p99 ' + e.p99Ms.toFixed(0) + ' ms' : '') +
      (e.failedPerSec > 0 ? '; ' + fmtRate(e.failedPerSec) + ' failed/s' : '') + '; mTLS ' + e.mtls + (e.deniedTotal ? '; ' + e.deniedTotal + ' denied' : '');
  }
  function drawGraph() {
    var svg = document.getElementById('graph');
    var g = state.graph;
    if (!g) return;
    var panelW = svg.parentNode.clientWidth || 900;
    var key = g.nodes.map(function (n) { return n.id; }).join(',') + '|' + g.edges.map(function (e) { return e.id; }).join(',') + '|' + panelW;
    if (key !== state.layoutKey) {
      var lay = layout(g.nodes.slice(), g.edges);
      state.pos = lay.pos;
      state.layoutKey = key;
      svg.setAttribute('viewBox', '0 0 ' + lay.width + ' ' + lay.height);
      svg.setAttribute('preserveAspectRatio', 'xMinYMin meet');
      svg.style.height = Math.round(lay.height * Math.min(1, panelW / lay.width)) + 'px';
      var idleBox = document.getElementById('idle-nodes');
      idleBox.textContent = '';
      if (lay.hidden.length) {
        idleBox.appendChild(document.createTextNode('not drawn, no traffic: '));
        lay.hidden.forEach(function (n, i) {
          var sp = h('span', (i ? ', ' : '') + n.name + ' (' + n.kind + ')');
          sp.setAttribute('data-id', n.id);
          idleBox.appendChild(sp);
        });
      }
    }
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    var defs = el('defs', {}, svg);
    Object.keys(COLORS).forEach(function (k) {
      var m = el('marker', { id: 'arrow-' + k, viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 9, markerHeight: 9, markerUnits: 'userSpaceOnUse', orient: 'auto-start-reverse' }, defs);
      el('path', { d: 'M0 0 L10 5 L0 10 Z', fill: COLORS[k] }, m);
    });
    var edgesG = el('g', { class: 'edges' }, svg);
    var nodesG = el('g', { class: 'nodes' }, svg);
    var labelsG = el('g', { class: 'labels' }, svg);
    // Occupied boxes: every node with its two text lines, then each label placed.
    var taken = [];
    g.nodes.forEach(function (n) {
      var p = state.pos[n.id];
      if (!p) return;
      var sub = [n.version, n.namespace, n.node].filter(function (x) { return x; }).join(' . ');
      var half = Math.max(20, n.name.length * 3.5, sub.length * 2.9);
      taken.push({ x0: p.x - half, y0: p.y - 20, x1: p.x + half, y1: p.y + 48 });
    });
    // in id order, so a label keeps its spot from round to round while the rates change
    var ordered = g.edges.slice().sort(function (a, b) { return a.id < b.id ? -1 : a.id > b.id ? 1 : 0; });
    ordered.forEach(function (e) {
      var a = state.pos[e.source], b = state.pos[e.target];
      if (!a || !b) return;
      var st = e.status;
      var color = COLORS[st] || COLORS.idle;
      var x1 = a.x + 20, y1 = a.y, x2 = b.x - 22, y2 = b.y;
      if (b.x <= a.x) { x1 = a.x; y1 = a.y + 20; x2 = b.x; y2 = b.y + 20; }
      var mx = (x1 + x2) / 2;
      var c = [x1, y1, mx, y1, mx, y2, x2, y2];
      // An edge that skips columns bends around the nodes it would cross (e.g. service -> workload past the waypoint).
      var crossed = g.nodes.filter(function (n) {
        var p = state.pos[n.id];
        if (!p || n.id === e.source || n.id === e.target || p.x <= x1 + 10 || p.x >= x2 - 10) return false;
        return Math.abs(bezierAt(c, (p.x - x1) / (x2 - x1)).y - p.y) < 32;
      });
      if (crossed.length) {
        var py = state.pos[crossed[0].id].y;
        var off = (bezierAt(c, 0.5).y >= py ? 1 : -1) * 75;
        c = [x1, y1, x1 + (x2 - x1) * 0.35, y1 + off, x1 + (x2 - x1) * 0.65, y2 + off, x2, y2];
      }
      var d = 'M' + x1 + ' ' + y1 + ' C' + c[2] + ' ' + c[3] + ' ' + c[4] + ' ' + c[5] + ' ' + x2 + ' ' + y2;
      var width = st === 'idle' ? 1.5 : Math.min(7, 2 + Math.log2(1 + (e.cps || 0) + (e.rps || 0)));
      var attrs = { class: 'edge' + (state.selected === e.id ? ' selected' : ''), 'data-id': e.id, 'data-status': st, 'data-cps': (e.cps || 0).toFixed(3), 'data-rps': (e.rps || 0).toFixed(3), 'data-mtls': e.mtls, 'data-denied': e.deniedPerSec > 0 ? 'true' : 'false' };
      var eg = el('g', attrs, edgesG);
      el('path', { class: 'line', d: d, stroke: color, 'stroke-width': width, 'marker-end': 'url(#arrow-' + (COLORS[st] ? st : 'idle') + ')', 'stroke-dasharray': st === 'denied' ? '7 4' : st === 'idle' ? '3 4' : '' }, eg);
      el('path', { class: 'hit', d: d }, eg);
      var title = el('title', {}, eg);
      title.textContent = edgeTitle(e);
      var select = function () { state.selected = e.id; state.panel = 'edge'; showPanel(); drawGraph(); refreshEdge(); };
      eg.addEventListener('click', select);
      var label = edgeLabel(e);
      var lock = e.mtls === 'full' || e.mtls === 'partial';
      if (!label && !lock) return;
      // The label (and padlock) goes at the first spot along the curve that overlaps no node and no other label.
      var w = (label ? label.length * 5.6 : 0) + (lock ? 14 : 0), hgt = 13;
      var spots = [0.5, 0.38, 0.62, 0.28, 0.72, 0.2, 0.8];
      var best = null;
      for (var i = 0; i < spots.length * 2 && !best; i++) {
        var pt = bezierAt(c, spots[i % spots.length]);
        var dy = i < spots.length ? -8 : 10;
        var box = { x0: pt.x - w / 2, y0: pt.y + dy - hgt + 3, x1: pt.x + w / 2, y1: pt.y + dy + 3 };
        if (!overlaps(box, taken)) best = { x: pt.x, y: pt.y + dy, box: box };
      }
      if (!best) { var m0 = bezierAt(c, 0.5); best = { x: m0.x, y: m0.y - 8, box: { x0: m0.x - w / 2, y0: m0.y - 18, x1: m0.x + w / 2, y1: m0.y - 5 } }; }
      taken.push(best.box);
      var lg = el('g', { class: 'edge-label', 'data-edge': e.id }, labelsG);
      var lt = el('title', {}, lg);
      lt.textContent = edgeTitle(e);
      lg.addEventListener('click', select);
      if (lock) padlock(eg, best.box.x0 + 6, best.y - 4).setAttribute('opacity', e.mtls === 'full' ? '1' : '0.5');
      if (label) { var t = el('text', { x: best.box.x0 + (lock ? 14 : 0), y: best.y, 'text-anchor': 'start' }, lg); t.textContent = label; }
    });
    g.nodes.forEach(function (n) {
      var p = state.pos[n.id];
      if (!p) return;
      var ng = el('g', { class: 'node' + (state.selectedWl === n.id ? ' selected' : ''), 'data-id': n.id, 'data-kind': n.kind, 'data-health': n.health, transform: 'translate(' + p.x + ',' + p.y + ')' }, nodesG);
      nodeShape(ng, n);
      var t = el('text', { y: 32 }, ng);
      t.textContent = n.name;
      var sub = [n.version, n.namespace, n.node].filter(function (x) { return x; }).join(' . ');
      var t2 = el('text', { y: 45, class: 'ver' }, ng);
      t2.textContent = sub;
      var title = el('title', {}, ng);
      title.textContent = n.kind + ' ' + short(n.id) + (n.node ? ' on ' + n.node : '');
      if (n.kind === 'workload' || n.kind === 'waypoint') ng.addEventListener('click', function () { selectWorkload(n.id, true); });
    });
  }

  // ---------------------------------------------------------------- charts
  var charts = {};
  function chart(id, points, pick, color) { chartLines(id, points, [{ pick: pick, color: color }]); }
  // One uPlot chart with a line per { pick, color } (same x: the rounds).
  function chartLines(id, points, lines) {
    var box = document.getElementById(id);
    if (!box) return;
    var xs = points.map(function (p) { return p.t / 1000; });
    var yss = lines.map(function (l) {
      return points.map(function (p) { var v = l.pick(p); return v === undefined || v === null || !isFinite(v) ? null : v; });
    });
    var present = yss.some(function (ys) { return ys.some(function (v) { return v !== null; }); });
    if (!present || typeof uPlot === 'undefined') {
      if (charts[id]) { charts[id].destroy(); delete charts[id]; }
      box.innerHTML = '<div class="empty">no data</div>';
      return;
    }
    var data = [xs].concat(yss);
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
        series: [{}].concat(lines.map(function (l) { return { stroke: l.color, width: 1.5, spanGaps: false, points: { show: false } }; })),
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
    if (!e || state.panel !== 'edge') return;
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

  // ---------------------------------------------------------------- workloads (golden signals)
  // A sparkline: one polyline per series (values may be null: gaps), on a shared y scale from 0.
  function spark(signal, series, width, height) {
    var s = document.createElementNS(SVGNS, 'svg');
    s.setAttribute('class', 'spark');
    s.setAttribute('width', String(width));
    s.setAttribute('height', String(height));
    s.setAttribute('viewBox', '0 0 ' + width + ' ' + height);
    s.setAttribute('data-signal', signal);
    var max = 0, n = 0;
    series.forEach(function (sr) { n = Math.max(n, sr.values.length); sr.values.forEach(function (v) { if (v !== null && v > max) max = v; }); });
    s.setAttribute('data-points', String(n));
    s.setAttribute('data-max', String(max));
    el('line', { x1: 0, y1: height - 1.5, x2: width, y2: height - 1.5, stroke: '#22303d', 'stroke-width': 1 }, s);
    var step = n > 1 ? width / (n - 1) : width;
    // a series that stayed at zero is drawn dim (a red line at zero would read as an alarm)
    series.forEach(function (sr) { sr.quiet = !sr.values.some(function (v) { return v !== null && v > 0; }); });
    series.forEach(function (sr) {
      var seg = [];
      var flush = function () {
        if (seg.length === 1) seg.push((parseFloat(seg[0]) + 1) + ',' + seg[0].split(',')[1]);
        if (seg.length > 1) el('polyline', { points: seg.join(' '), stroke: sr.quiet ? '#4b5b6b' : sr.color, 'data-series': sr.name }, s);
        seg = [];
      };
      var off = n - sr.values.length;
      sr.values.forEach(function (v, i) {
        if (v === null) { flush(); return; }
        var x = ((off + i) * step).toFixed(1);
        var y = (height - 2 - (max > 0 ? (v / max) * (height - 5) : 0)).toFixed(1);
        seg.push(x + ',' + y);
      });
      flush();
    });
    return s;
  }
  function pct(x) { return x > 0 && x < 0.001 ? '<0.1%' : (x * 100).toFixed(x >= 0.1 || x === 0 ? 0 : 1) + '%'; }
  function showPanel() {
    document.getElementById('edge-panel').hidden = state.panel !== 'edge';
    document.getElementById('wl-detail').hidden = state.panel !== 'workload';
  }
  function refreshWorkloadPanel() {
    var v = state.workloads;
    var w = v && state.selectedWl && v.workloads.filter(function (x) { return x.id === state.selectedWl; })[0];
    document.getElementById('wl-title').textContent = w ? w.namespace + '/' + w.name : '';
    var facts = document.getElementById('wl-facts');
    facts.textContent = '';
    if (!w || state.panel !== 'workload') return;
    var dir = function (name, d) {
      return name + ' ' + fmtRate(d.callsPerSec) + (d.l7 ? ' req/s' : ' conn/s') + ', ' + pct(d.errorShare) + ' errors' + (d.deniedPerSec > 0 ? ' (' + fmtRate(d.deniedPerSec) + '/s denied)' : '') + (d.p99Ms !== undefined ? ', p99 ' + d.p99Ms.toFixed(0) + ' ms' : '');
    };
    facts.textContent = [w.kind, w.node ? 'on ' + w.node : '', dir('in', w.in), dir('out', w.out), w.active + ' open'].filter(function (x) { return x; }).join(' . ') + ' (last ' + v.windowSeconds + 's)';
    var pts = w.points;
    chartLines('w-rate', pts, [{ pick: function (p) { return p.inCalls; }, color: '#3fb68b' }, { pick: function (p) { return p.outCalls; }, color: '#6aa6ff' }]);
    chartLines('w-err', pts, [{ pick: function (p) { return p.inErrors; }, color: '#e8a33d' }, { pick: function (p) { return p.outErrors; }, color: '#e5484d' }]);
    chartLines('w-p99', pts, [{ pick: function (p) { return p.inP99; }, color: '#3fb68b' }, { pick: function (p) { return p.outP99; }, color: '#6aa6ff' }]);
    chart('w-active', pts, function (p) { return p.active; }, '#b08cff');
  }
  function selectWorkload(id, scroll) {
    state.selectedWl = id;
    state.panel = 'workload';
    showPanel();
    refreshWorkloadPanel();
    drawGraph();
    var rows = document.querySelectorAll('#workloads tr.wl');
    for (var i = 0; i < rows.length; i++) rows[i].classList.toggle('selected', rows[i].getAttribute('data-id') === id);
    var row = document.querySelector('#workloads tr.wl[data-id="' + id + '"]');
    if (row && scroll && row.scrollIntoView) row.scrollIntoView({ block: 'nearest' });
  }
  function drawWorkloads(view) {
    var box = document.getElementById('workloads');
    document.getElementById('wl-span').textContent = view.workloads.length && view.workloads[0].points.length ? Math.round(view.workloads[0].points.length * view.intervalMs / 1000) + 's (numbers: last ' + view.windowSeconds + 's)' : '-';
    box.textContent = '';
    if (view.workloads.length === 0) { box.appendChild(h('div', 'no workloads known', 'dim')); return; }
    var t = h('table', null, 'wl-table');
    var head = h('tr');
    ['workload', 'calls / s (requests via waypoint, else connections)', 'errors (failed + denied)', 'p99 latency (L7, via waypoint)', 'open connections'].forEach(function (x) { head.appendChild(h('th', x)); });
    t.appendChild(head);
    var IN = '#3fb68b', OUT = '#6aa6ff';
    view.workloads.slice().sort(function (a, b) { return a.name.localeCompare(b.name); }).forEach(function (w) {
      var tr = h('tr', null, 'wl' + (state.selectedWl === w.id ? ' selected' : ''));
      tr.setAttribute('data-id', w.id);
      tr.setAttribute('data-kind', w.kind);
      tr.setAttribute('data-in-rate', w.in.callsPerSec.toFixed(3));
      tr.setAttribute('data-out-rate', w.out.callsPerSec.toFixed(3));
      tr.setAttribute('data-error-share', Math.max(w.in.errorShare, w.out.errorShare).toFixed(3));
      tr.setAttribute('data-active', String(w.active));
      tr.addEventListener('click', function () { selectWorkload(w.id, false); });
      var name = h('td', null, 'name');
      name.appendChild(h('div', w.name + (w.kind === 'waypoint' ? ' (waypoint)' : '')));
      name.appendChild(h('div', [w.version, w.namespace, w.node].filter(function (x) { return x; }).join(' . '), 'dim'));
      tr.appendChild(name);
      var pts = w.points;
      var col = function (pick) { return pts.map(function (p) { var v = pick(p); return v === undefined || v === null || !isFinite(v) ? null : v; }); };
      var cell = function (signal, series, text, title) {
        var td = h('td');
        td.appendChild(spark(signal, series, 150, 28));
        var num = h('span', null, 'num');
        text.forEach(function (x, i) { if (i) num.appendChild(h('br')); num.appendChild(h('span', x.text, x.cls || '')); });
        td.appendChild(num);
        td.title = title;
        return td;
      };
      var unit = function (d) { return d.l7 ? 'req/s' : 'conn/s'; };
      var rateText = [];
      if (w.in.callsPerSec > 0 || !(w.out.callsPerSec > 0)) rateText.push({ text: 'in ' + fmtShort(w.in.callsPerSec) + ' ' + unit(w.in), cls: 'okc' });
      if (w.out.callsPerSec > 0) rateText.push({ text: 'out ' + fmtShort(w.out.callsPerSec) + ' ' + unit(w.out), cls: 'svcc' });
      tr.appendChild(cell('rate', [{ name: 'in', color: IN, values: col(function (p) { return p.inCalls; }) }, { name: 'out', color: OUT, values: col(function (p) { return p.outCalls; }) }], rateText,
        'calls per second: in = served by ' + w.name + ', out = made by it; requests where a waypoint saw them, connections elsewhere'));
      var errText = [];
      [['in', w.in], ['out', w.out]].forEach(function (x) {
        var d = x[1];
        if (d.callsPerSec > 0 || d.errorsPerSec > 0) errText.push({ text: x[0] + ' ' + pct(d.errorShare) + (d.deniedPerSec > 0 ? ' denied' : ''), cls: d.errorShare > 0 ? (d.deniedPerSec > 0 ? 'denyc' : 'errc') : 'dim' });
      });
      if (!errText.length) errText.push({ text: '-', cls: 'dim' });
      tr.appendChild(cell('errors', [{ name: 'in', color: '#e8a33d', values: col(function (p) { return p.inErrors; }) }, { name: 'out', color: '#e5484d', values: col(function (p) { return p.outErrors; }) }], errText,
        'failed connections (denials included) and failed or denied requests per second; the number is their share of the calls'));
      var p99Text = [];
      if (w.in.p99Ms !== undefined) p99Text.push({ text: 'in ' + w.in.p99Ms.toFixed(0) + ' ms', cls: 'okc' });
      if (w.out.p99Ms !== undefined) p99Text.push({ text: 'out ' + w.out.p99Ms.toFixed(0) + ' ms', cls: 'svcc' });
      if (!p99Text.length) p99Text.push({ text: w.in.l7 || w.out.l7 ? 'no requests' : 'no L7 data', cls: 'dim' });
      tr.appendChild(cell('p99', [{ name: 'in', color: IN, values: col(function (p) { return p.inP99; }) }, { name: 'out', color: OUT, values: col(function (p) { return p.outP99; }) }], p99Text,
        'p99 request duration from the waypoint\'s histogram (only for calls through a waypoint)'));
      tr.appendChild(cell('active', [{ name: 'active', color: '#b08cff', values: col(function (p) { return p.active; }) }], [{ text: String(w.active) + ' open' }],
        'connections open at each scrape (opened - closed), to and from ' + w.name));
      t.appendChild(tr);
    });
    box.appendChild(t);
  }
  var wlPending = false;
  function refreshWorkloads() {
    if (wlPending) return;
    wlPending = true;
    fetch('/api/workloads?points=60').then(function (r) { return r.ok ? r.json() : null; }).then(function (v) { if (v) { state.workloads = v; drawWorkloads(v); refreshWorkloadPanel(); } }).catch(function () { /* the next round retries */ }).then(function () { wlPending = false; });
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
    st.textContent = 'live . ' + snap.graph.nodes.length + ' nodes, ' + snap.graph.edges.length + ' edges (' + moving + ' active) . rates over ' + snap.graph.windowSeconds + 's . scraped ' + new Date(snap.graph.at).toLocaleTimeString() + ' via ' + snap.health.scrape.how + ' in ' + snap.health.scrape.lastRoundMs + ' ms' + (snap.health.scrape.servedBy ? ' . served by ' + snap.health.scrape.servedBy : '');
    st.setAttribute('data-rounds', String(snap.graph.rounds));
    drawGraph();
    drawHealth();
    drawEvents(fresh);
    refreshEdge();
    refreshWorkloads();
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
