// The flow-run graph: our own layered layout (longest-path layers, barycentre ordering) drawn
// on a <canvas> with pan, zoom, fit and level of detail. No library.
// This file is also its own Web Worker: a big graph is laid out off the main thread.
(function (global) {
  "use strict";

  // -- layout (pure: no DOM, runs in the page or in a Worker) ------------------------------------
  // n nodes 0..n-1, edges as [up, down] index pairs. Returns {layer, rank} (Int32Array each):
  // the column of each node and its row inside the column.
  function layout(n, edgeUps, edgeDowns, sweeps) {
    var ups = [], downs = [], i, e;
    for (i = 0; i < n; i++) { ups.push([]); downs.push([]); }
    var indeg = new Int32Array(n);
    for (e = 0; e < edgeUps.length; e++) {
      var u = edgeUps[e], d = edgeDowns[e];
      if (u === d) continue;
      ups[d].push(u); downs[u].push(d); indeg[d]++;
    }
    // longest path from the sources (Kahn's order); nodes left in a cycle go after
    var layer = new Int32Array(n), queue = new Int32Array(n), head = 0, tail = 0, placed = new Uint8Array(n);
    for (i = 0; i < n; i++) if (indeg[i] === 0) queue[tail++] = i;
    while (head < tail) {
      var v = queue[head++]; placed[v] = 1;
      var ds = downs[v];
      for (e = 0; e < ds.length; e++) {
        var w = ds[e];
        if (layer[v] + 1 > layer[w]) layer[w] = layer[v] + 1;
        if (--indeg[w] === 0) queue[tail++] = w;
      }
    }
    var maxLayer = 0;
    for (i = 0; i < n; i++) if (layer[i] > maxLayer) maxLayer = layer[i];
    for (i = 0; i < n; i++) if (!placed[i]) layer[i] = ++maxLayer;
    var layers = [];
    for (i = 0; i <= maxLayer; i++) layers.push([]);
    for (i = 0; i < n; i++) layers[layer[i]].push(i);  // first order: creation order
    var pos = new Float64Array(n);
    function number(list) {
      var size = list.length || 1;
      for (var k = 0; k < list.length; k++) pos[list[k]] = (k + 0.5) / size;  // 0..1: columns compare
    }
    layers.forEach(number);
    var bary = new Float64Array(n);
    function sweep(list, neighbours) {
      for (var k = 0; k < list.length; k++) {
        var node = list[k], near = neighbours[node];
        if (!near.length) { bary[node] = pos[node]; continue; }
        var sum = 0;
        for (var j = 0; j < near.length; j++) sum += pos[near[j]];
        bary[node] = sum / near.length;
      }
      list.sort(function (a, b) { return bary[a] - bary[b] || a - b; });
      number(list);
    }
    for (var s = 0; s < sweeps; s++) {
      if (s % 2 === 0) for (i = 1; i < layers.length; i++) sweep(layers[i], ups);
      else for (i = layers.length - 2; i >= 0; i--) sweep(layers[i], downs);
    }
    var rank = new Int32Array(n);
    for (i = 0; i < layers.length; i++) for (var k = 0; k < layers[i].length; k++) rank[layers[i][k]] = k;
    return {layer: layer, rank: rank};
  }

  if (typeof document === "undefined") {  // loaded as a Worker
    global.onmessage = function (msg) {
      var t0 = Date.now(), d = msg.data;
      var out = layout(d.n, d.ups, d.downs, d.sweeps);
      global.postMessage({layer: out.layer, rank: out.rank, ms: Date.now() - t0}, [out.layer.buffer, out.rank.buffer]);
    };
    return;
  }

  var SCRIPT = document.currentScript && document.currentScript.src;
  var NODE_W = 180, NODE_H = 30, GAP_X = 70, GAP_Y = 14, SWEEPS = 4, WORKER_FROM = 2000, MAX_FAR_EDGES = 1500, MAX_CURVES = 600,
      DASHED_MAX = 300;
  var SYMBOLS = {COMPLETED: "✓", CACHED: "✓", FAILED: "✗", CRASHED: "⚠", RUNNING: "▶", RETRYING: "↻",
    PENDING: "○", SCHEDULED: "◷", CANCELLED: "⊘", CANCELLING: "⊘", PAUSED: "‖"};
  var CSS_STATE = {COMPLETED: "completed", CACHED: "completed", FAILED: "failed", CRASHED: "crashed",
    RUNNING: "running", RETRYING: "running", PENDING: "pending", SCHEDULED: "scheduled", CANCELLED: "cancelled",
    CANCELLING: "cancelled", PAUSED: "paused"};

  function runLayout(n, ups, downs, done) {
    var t0 = performance.now();
    if (n >= WORKER_FROM && SCRIPT && global.Worker) {
      try {
        var worker = new Worker(SCRIPT);
        worker.onmessage = function (m) { worker.terminate(); done(m.data.layer, m.data.rank, performance.now() - t0, true); };
        worker.onerror = function () { worker.terminate(); var o = layout(n, ups, downs, SWEEPS); done(o.layer, o.rank, performance.now() - t0, false); };
        worker.postMessage({n: n, ups: ups, downs: downs, sweeps: SWEEPS});
        return;
      } catch (err) { /* no worker: lay out here */ }
    }
    var out = layout(n, ups, downs, SWEEPS);
    done(out.layer, out.rank, performance.now() - t0, false);
  }

  // -- the view -----------------------------------------------------------------------------------
  function GraphView(canvas, options) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d");
    this.options = options || {};
    this.nodes = [];       // drawn nodes: {id, name, state_type, x, y, group, subflow, kind}
    this.edges = [];       // [{from: node, to: node, kind}]
    this.byId = {};
    this.groups = [];      // expanded subflows: {id, name, nodes: [...], box}
    this.expanded = {};    // subflow run id -> its graph
    this.k = 1; this.tx = 20; this.ty = 20;
    this.base = null;
    this.stats = {layoutMs: 0, inWorker: false, frames: 0, drawnNodes: 0, drawnEdges: 0, lastFrameMs: 0};
    this.pending = false;
    this.colours = {};
    this.readColours();
    this.bind();
  }

  GraphView.prototype.readColours = function () {
    var style = getComputedStyle(document.documentElement);
    var names = ["completed", "failed", "crashed", "running", "pending", "scheduled", "cancelled", "paused"];
    for (var i = 0; i < names.length; i++) this.colours[names[i]] = style.getPropertyValue("--state-" + names[i]).trim() || "#888";
    this.colours.line = style.getPropertyValue("--line").trim() || "#ccc";
    this.colours.fg = style.getPropertyValue("--fg").trim() || "#000";
    this.colours.muted = style.getPropertyValue("--muted").trim() || "#666";
    this.colours.bg = style.getPropertyValue("--bg").trim() || "#fff";
  };

  GraphView.prototype.colourOf = function (state) { return this.colours[CSS_STATE[state] || "pending"]; };

  // The run's graph (the API's JSON), and the graphs of the subflows shown expanded.
  GraphView.prototype.setGraph = function (graph, done) {
    this.base = graph;
    this.relayout(done);
  };

  GraphView.prototype.relayout = function (done) {
    var self = this, nodes = [], byId = {}, edges = [];
    function add(raw, group, kind) {
      var node = {id: raw.id, name: raw.name || raw.task_name || raw.id, task_name: raw.task_name, state_type: raw.state_type,
        state_name: raw.state_name, message: raw.state_message, duration: raw.duration_seconds, group: group,
        subflow: raw.subflow_run_id || null, kind: kind || "task", x: 0, y: 0};
      byId[node.id] = node; nodes.push(node); return node;
    }
    function addGraph(graph, group) {
      graph.nodes.forEach(function (n) { add(n, group); });
      graph.edges.forEach(function (e) { edges.push([e.upstream, e.downstream, e.kind]); });
      (graph.groups || []).forEach(function (g) {
        var starter = g.parent_task_run_id && byId[g.parent_task_run_id];
        if (starter) { starter.subflow = g.id; starter.subflowName = g.name; }
        else {  // no task run stands for it: a node of its own
          var stand = add({id: g.id, name: g.name, task_name: g.flow_name, state_type: g.state_type,
            state_name: g.state_name, subflow_run_id: g.id}, group, "subflow");
          stand.subflowName = g.name;
        }
      });
      (graph.groups || []).forEach(function (g) {
        var child = self.expanded[g.id];
        if (!child) return;
        var from = byId[g.parent_task_run_id] || byId[g.id];
        var first = nodes.length;
        addGraph(child, g.id);
        var inner = {};
        child.edges.forEach(function (e) { inner[e.downstream] = 1; });
        for (var i = first; i < nodes.length; i++) {  // the subflow's roots hang off the node that started it
          if (nodes[i].group === g.id && !inner[nodes[i].id]) edges.push([from.id, nodes[i].id, "subflow"]);
        }
      });
    }
    addGraph(this.base, null);
    var index = {}, ups = [], downs = [], kept = [];
    nodes.forEach(function (n, i) { index[n.id] = i; });
    edges.forEach(function (e) {
      if (index[e[0]] === undefined || index[e[1]] === undefined) return;
      ups.push(index[e[0]]); downs.push(index[e[1]]);
      kept.push({from: nodes[index[e[0]]], to: nodes[index[e[1]]], kind: e[2]});
    });
    runLayout(nodes.length, new Int32Array(ups), new Int32Array(downs), function (layer, rank, ms, inWorker) {
      // A column taller than the graph is wide wraps into several side by side, so a
      // 5,000-node layer still fits a screen-shaped view.
      var colW = NODE_W + GAP_X, rowH = NODE_H + GAP_Y, i, l;
      var maxRows = Math.max(20, Math.ceil(Math.sqrt(nodes.length * colW / rowH)));
      var counts = [], layers = 0;
      for (i = 0; i < nodes.length; i++) { l = layer[i]; counts[l] = Math.max(counts[l] || 0, rank[i] + 1); layers = Math.max(layers, l + 1); }
      var start = [], columns = 0, tallest = 0;
      for (l = 0; l < layers; l++) {
        start[l] = columns;
        columns += Math.max(1, Math.ceil((counts[l] || 0) / maxRows));
        tallest = Math.max(tallest, Math.min(counts[l] || 0, maxRows));
      }
      for (i = 0; i < nodes.length; i++) {  // each column centred on the tallest one
        l = layer[i];
        var rows = Math.min(counts[l], maxRows), sub = Math.floor(rank[i] / maxRows);
        var left = counts[l] - sub * maxRows, here = Math.min(rows, left);
        nodes[i].col = start[l] + sub;
        nodes[i].x = nodes[i].col * colW;
        nodes[i].y = (tallest - here) * rowH / 2 + (rank[i] % maxRows) * rowH;
        nodes[i].layer = l;
      }
      self.nodes = nodes; self.byId = byId; self.edges = kept;
      self.width = columns * colW;
      self.height = tallest * rowH;
      self.columns = self.indexColumns();
      self.groupBoxes();
      self.stats.layoutMs = Math.round(ms); self.stats.inWorker = inWorker;
      if (!self.placedOnce) { self.placedOnce = true; self.fit(); } else self.redraw();
      if (done) done();
    });
  };

  GraphView.prototype.indexColumns = function () {
    var columns = {};
    this.nodes.forEach(function (n) { (columns[n.col] = columns[n.col] || []).push(n); });
    for (var key in columns) columns[key].sort(function (a, b) { return a.y - b.y; });
    return columns;
  };

  GraphView.prototype.groupBoxes = function () {
    var boxes = {}, self = this;
    this.nodes.forEach(function (n) {
      if (!n.group) return;
      var b = boxes[n.group] = boxes[n.group] || {id: n.group, x0: Infinity, y0: Infinity, x1: -Infinity, y1: -Infinity};
      b.x0 = Math.min(b.x0, n.x); b.y0 = Math.min(b.y0, n.y);
      b.x1 = Math.max(b.x1, n.x + NODE_W); b.y1 = Math.max(b.y1, n.y + NODE_H);
    });
    this.groups = Object.keys(boxes).map(function (id) {
      var starter = self.nodes.filter(function (n) { return n.subflow === id; })[0];
      var b = boxes[id];
      b.name = starter ? (starter.subflowName || starter.name) : id.slice(0, 8);
      return b;
    });
  };

  // -- drawing ------------------------------------------------------------------------------------
  GraphView.prototype.resize = function () {
    var ratio = global.devicePixelRatio || 1, rect = this.canvas.getBoundingClientRect();
    var w = Math.max(1, Math.round(rect.width * ratio)), h = Math.max(1, Math.round(rect.height * ratio));
    if (this.canvas.width !== w || this.canvas.height !== h) { this.canvas.width = w; this.canvas.height = h; }
    this.ratio = ratio; this.viewW = rect.width; this.viewH = rect.height;
  };

  GraphView.prototype.redraw = function () {
    var self = this;
    if (this.pending) return;
    this.pending = true;
    global.requestAnimationFrame(function () { self.pending = false; self.draw(); });
  };

  GraphView.prototype.draw = function () {
    var t0 = performance.now();
    this.resize();
    var ctx = this.ctx, k = this.k, ratio = this.ratio;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, this.canvas.width, this.canvas.height);
    if (!this.viewW) return;  // hidden tab: drawn when shown
    if (!this.nodes.length) {
      ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
      ctx.fillStyle = this.colours.muted; ctx.font = "14px system-ui, sans-serif"; ctx.textAlign = "center";
      ctx.fillText(this.base ? "No task runs yet" : "Loading…", this.viewW / 2, this.viewH / 2);
      ctx.textAlign = "start";
      return;
    }
    ctx.setTransform(k * ratio, 0, 0, k * ratio, this.tx * ratio, this.ty * ratio);
    var x0 = -this.tx / k, y0 = -this.ty / k, x1 = x0 + this.viewW / k, y1 = y0 + this.viewH / k;
    var detail = k >= 0.45, tiny = k < 0.12, drawnEdges = 0, drawnNodes = 0, i, n;
    // groups (expanded subflows) behind everything
    ctx.lineWidth = 1 / k;
    for (i = 0; i < this.groups.length; i++) {
      var g = this.groups[i], pad = 10;
      ctx.strokeStyle = this.colours.muted; ctx.setLineDash([6 / k, 4 / k]);
      ctx.strokeRect(g.x0 - pad, g.y0 - pad - 14, g.x1 - g.x0 + 2 * pad, g.y1 - g.y0 + 2 * pad + 14);
      ctx.setLineDash([]);
      if (detail) { ctx.fillStyle = this.colours.muted; ctx.font = "11px system-ui, sans-serif"; ctx.fillText("subflow " + g.name + " ↗", g.x0 - pad + 4, g.y0 - 10); }
    }
    // edges: curves up close, straight thin lines far away, wait_for dashed
    ctx.strokeStyle = this.colours.muted;
    // at most one device pixel: the rasteriser's hairline path, many times cheaper than a
    // wider stroke (1.2 px made every frame of a 1,000-node dbt graph a 60-100 ms task)
    ctx.lineWidth = (detail ? 1 : tiny ? 0.5 : 0.8) / k;
    ctx.globalAlpha = detail ? 0.9 : 0.45;
    var dashed = [], visible = [];
    for (i = 0; i < this.edges.length; i++) {
      var e = this.edges[i], ax = e.from.x + NODE_W, ay = e.from.y + NODE_H / 2, bx = e.to.x, by = e.to.y + NODE_H / 2;
      if (Math.max(ax, bx) < x0 || Math.min(ax, bx) > x1 || Math.max(ay, by) < y0 || Math.min(ay, by) > y1) continue;
      visible.push(e);
    }
    // far away, thousands of edges are a grey haze: a sample of them draws the same haze
    // at a fraction of the raster work (the browser's, not ours, is what a frame costs then)
    var stride = !detail && visible.length > MAX_FAR_EDGES ? Math.ceil(visible.length / MAX_FAR_EDGES) : 1;
    var curves = detail && visible.length <= MAX_CURVES;
    ctx.beginPath();
    for (i = 0; i < visible.length; i += stride) {
      e = visible[i]; ax = e.from.x + NODE_W; ay = e.from.y + NODE_H / 2; bx = e.to.x; by = e.to.y + NODE_H / 2;
      drawnEdges++;
      if (detail && e.kind !== "data") { dashed.push(e); continue; }
      ctx.moveTo(ax, ay);
      if (curves) { var mx = (ax + bx) / 2; ctx.bezierCurveTo(mx, ay, mx, by, bx, by); } else ctx.lineTo(bx, by);
    }
    ctx.stroke();
    if (dashed.length) {
      // dashes cost the rasteriser dearly: past a few hundred visible, wait_for edges are fainter instead
      if (dashed.length <= DASHED_MAX) ctx.setLineDash([5 / k, 4 / k]); else ctx.globalAlpha = 0.5;
      ctx.beginPath();
      for (i = 0; i < dashed.length; i++) {
        var d = dashed[i], sx = d.from.x + NODE_W, sy = d.from.y + NODE_H / 2, ex = d.to.x, ey = d.to.y + NODE_H / 2, cx = (sx + ex) / 2;
        ctx.moveTo(sx, sy);
        if (curves) ctx.bezierCurveTo(cx, sy, cx, ey, ex, ey); else ctx.lineTo(ex, ey);
      }
      ctx.stroke(); ctx.setLineDash([]);
    }
    ctx.globalAlpha = 1;
    // nodes, batched by colour; text only when it can be read; too small to tell apart, a
    // column's neighbours of one colour are one strip
    var byColour = {};
    if (tiny) { drawnNodes = this.drawStrips(ctx, x0, y0, x1, y1); this.finish(t0, drawnNodes, drawnEdges); return; }
    for (i = 0; i < this.nodes.length; i++) {
      n = this.nodes[i];
      if (n.x + NODE_W < x0 || n.x > x1 || n.y + NODE_H < y0 || n.y > y1) continue;
      drawnNodes++;
      var c = this.colourOf(n.state_type);
      (byColour[c] = byColour[c] || []).push(n);
    }
    for (var colour in byColour) {
      var list = byColour[colour];
      if (!detail) {
        ctx.fillStyle = colour;
        for (i = 0; i < list.length; i++) ctx.fillRect(list[i].x, list[i].y, NODE_W, NODE_H);
        continue;
      }
      for (i = 0; i < list.length; i++) {
        n = list[i];
        ctx.fillStyle = this.colours.bg; ctx.fillRect(n.x, n.y, NODE_W, NODE_H);
        ctx.fillStyle = colour; ctx.fillRect(n.x, n.y, 6, NODE_H);
        ctx.strokeStyle = colour; ctx.lineWidth = (n === this.hover ? 2.5 : 1) / k;
        ctx.strokeRect(n.x, n.y, NODE_W, NODE_H);
        if (n.subflow) { ctx.strokeRect(n.x + 3, n.y + 3, NODE_W - 6, NODE_H - 6); }
      }
    }
    if (detail) {
      ctx.font = "12px system-ui, sans-serif"; ctx.textBaseline = "middle";
      for (colour in byColour) {
        list = byColour[colour];
        for (i = 0; i < list.length; i++) {
          n = list[i];
          ctx.fillStyle = colour;
          ctx.fillText(SYMBOLS[n.state_type] || "•", n.x + 10, n.y + NODE_H / 2);
          ctx.fillStyle = this.colours.fg;
          var label = (n.subflow ? (this.expanded[n.subflow] ? "▾ " : "▸ ") : "") + shortName(n.name);
          ctx.fillText(fitText(ctx, label, NODE_W - 34), n.x + 26, n.y + NODE_H / 2);
        }
      }
    }
    this.finish(t0, drawnNodes, drawnEdges);
  };

  GraphView.prototype.finish = function (t0, drawnNodes, drawnEdges) {
    this.stats.frames++; this.stats.drawnNodes = drawnNodes; this.stats.drawnEdges = drawnEdges;
    this.stats.lastFrameMs = Math.round((performance.now() - t0) * 10) / 10;
    this.stats.slowestFrameMs = Math.max(this.stats.slowestFrameMs || 0, this.stats.lastFrameMs);
  };

  GraphView.prototype.drawStrips = function (ctx, x0, y0, x1, y1) {
    var shown = 0;
    for (var key in this.columns) {
      var column = this.columns[key];
      if (!column.length || column[0].x + NODE_W < x0 || column[0].x > x1) continue;
      var top = null, bottom = 0, colour = null;
      for (var i = 0; i <= column.length; i++) {
        var n = column[i], c = n ? this.colourOf(n.state_type) : null;
        if (n && (n.y + NODE_H < y0 || n.y > y1)) continue;
        if (n) shown++;
        if (c === colour && n) { bottom = n.y + NODE_H; continue; }
        if (colour !== null) { ctx.fillStyle = colour; ctx.fillRect(column[0].x, top, NODE_W, bottom - top); }
        colour = c; top = n ? n.y : null; bottom = n ? n.y + NODE_H : 0;
      }
    }
    return shown;
  };

  // dbt nodes ("model.<project>.<name>", from plait-dbt) read better without their project
  var DBT_NAME = /^(model|test|seed|snapshot|source|analysis|exposure)\.[^.]+\.(.+?)(-\d+)?$/;
  function shortName(name) {
    var m = DBT_NAME.exec(name || "");
    return m ? m[1] + " " + m[2] : name;
  }

  function fitText(ctx, text, width) {
    if (ctx.measureText(text).width <= width) return text;
    var lo = 0, hi = text.length;
    while (lo < hi) { var mid = (lo + hi + 1) >> 1; if (ctx.measureText(text.slice(0, mid) + "…").width <= width) lo = mid; else hi = mid - 1; }
    return text.slice(0, lo) + "…";
  }

  // -- moving around ------------------------------------------------------------------------------
  GraphView.prototype.fit = function () {
    this.resize();
    if (!this.viewW || !this.nodes.length) { this.redraw(); return; }
    var k = Math.min(this.viewW / (this.width + 40), this.viewH / (this.height + 40), 1.5);
    this.k = Math.max(k, 0.002);
    this.tx = (this.viewW - this.width * this.k) / 2 + GAP_X * this.k / 2;
    this.ty = (this.viewH - this.height * this.k) / 2;
    this.redraw();
  };

  GraphView.prototype.zoom = function (factor, cx, cy) {
    if (cx === undefined) { cx = this.viewW / 2; cy = this.viewH / 2; }
    var k = Math.min(4, Math.max(0.002, this.k * factor));
    this.tx = cx - (cx - this.tx) * k / this.k; this.ty = cy - (cy - this.ty) * k / this.k; this.k = k;
    this.redraw();
  };

  GraphView.prototype.nodeAt = function (px, py) {
    var x = (px - this.tx) / this.k, y = (py - this.ty) / this.k;
    var column = this.columns && this.columns[Math.floor(x / (NODE_W + GAP_X))];
    if (!column) return null;
    var lo = 0, hi = column.length - 1;
    while (lo <= hi) {  // the column is sorted by y
      var mid = (lo + hi) >> 1, n = column[mid];
      if (y < n.y) hi = mid - 1; else if (y > n.y + NODE_H) lo = mid + 1;
      else return x >= n.x && x <= n.x + NODE_W ? n : null;
    }
    return null;
  };

  GraphView.prototype.groupAt = function (px, py) {
    var x = (px - this.tx) / this.k, y = (py - this.ty) / this.k;
    for (var i = 0; i < this.groups.length; i++) {
      var g = this.groups[i];
      if (x >= g.x0 - 10 && x <= g.x1 + 10 && y >= g.y0 - 24 && y <= g.y0 - 4) return g;
    }
    return null;
  };

  GraphView.prototype.toggle = function (subflowId) {
    var self = this;
    if (this.expanded[subflowId]) { delete this.expanded[subflowId]; this.relayout(); return; }
    if (!this.options.fetchChild) return;
    this.options.fetchChild(subflowId).then(function (graph) { self.expanded[subflowId] = graph; self.relayout(); });
  };

  GraphView.prototype.bind = function () {
    var self = this, canvas = this.canvas, drag = null;
    canvas.addEventListener("pointerdown", function (e) {
      rect = null;
      drag = {x: e.clientX, y: e.clientY, tx: self.tx, ty: self.ty, moved: false};
      canvas.setPointerCapture(e.pointerId); canvas.classList.add("dragging");
    });
    var rect = null;  // read once per gesture: a layout read per move could force a reflow each time
    function box() { return rect || (rect = canvas.getBoundingClientRect()); }
    global.addEventListener("scroll", function () { rect = null; }, true);
    global.addEventListener("resize", function () { rect = null; });
    canvas.addEventListener("pointerenter", function () { rect = null; });
    canvas.addEventListener("pointermove", function (e) {
      var rect = box();
      if (drag) {
        var dx = e.clientX - drag.x, dy = e.clientY - drag.y;
        if (Math.abs(dx) + Math.abs(dy) > 4) drag.moved = true;
        if (drag.moved) { self.tx = drag.tx + dx; self.ty = drag.ty + dy; self.redraw(); }
        return;
      }
      var hit = self.nodeAt(e.clientX - rect.left, e.clientY - rect.top);
      if (hit !== self.hover) { self.hover = hit; self.redraw(); if (self.options.onHover) self.options.onHover(hit, e); }
      canvas.style.cursor = hit ? "pointer" : "";
    });
    canvas.addEventListener("pointerup", function (e) {
      canvas.classList.remove("dragging");
      var was = drag; drag = null;
      if (!was || was.moved) return;
      var rect = box(), px = e.clientX - rect.left, py = e.clientY - rect.top;
      var hit = self.nodeAt(px, py);
      if (hit && hit.subflow) {  // click: show its tasks here; ctrl/cmd-click: open its own page
        if (e.ctrlKey || e.metaKey) { if (self.options.onOpenRun) self.options.onOpenRun(hit.subflow); }
        else self.toggle(hit.subflow);
        return;
      }
      if (hit && hit.kind === "task" && self.options.onOpen) { self.options.onOpen(hit); return; }
      var group = self.groupAt(px, py);
      if (group && self.options.onOpenRun) self.options.onOpenRun(group.id);
    });
    canvas.addEventListener("pointerleave", function () { if (self.hover) { self.hover = null; self.redraw(); } if (self.options.onHover) self.options.onHover(null); });
    canvas.addEventListener("wheel", function (e) {
      e.preventDefault();
      var rect = box();
      self.zoom(Math.exp(-e.deltaY * 0.0015), e.clientX - rect.left, e.clientY - rect.top);
    }, {passive: false});
    canvas.addEventListener("keydown", function (e) {
      var step = 60, used = true;
      if (e.key === "+" || e.key === "=") self.zoom(1.25);
      else if (e.key === "-") self.zoom(0.8);
      else if (e.key === "0") self.fit();
      else if (e.key === "ArrowLeft") { self.tx += step; self.redraw(); }
      else if (e.key === "ArrowRight") { self.tx -= step; self.redraw(); }
      else if (e.key === "ArrowUp") { self.ty += step; self.redraw(); }
      else if (e.key === "ArrowDown") { self.ty -= step; self.redraw(); }
      else used = false;
      if (used) e.preventDefault();
    });
    global.addEventListener("resize", function () { self.redraw(); });
    if (global.matchMedia) global.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", function () { self.readColours(); self.redraw(); });
    new MutationObserver(function () { self.readColours(); self.redraw(); })
      .observe(document.documentElement, {attributes: true, attributeFilter: ["data-theme"]});
  };

  // State changes from the live stream: colours change without a new layout.
  GraphView.prototype.setState = function (id, stateType, stateName) {
    var node = this.byId[id];
    if (!node) return false;
    node.state_type = stateType; node.state_name = stateName || node.state_name;
    this.redraw();
    return true;
  };

  global.PlaitGraph = {GraphView: GraphView, layout: layout, shortName: shortName, NODE_W: NODE_W, NODE_H: NODE_H};
})(this);
