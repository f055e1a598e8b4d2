// The flow-run timeline: one bar per task run from its real start to its end (now, while it
// runs), in state colours, with a time axis. Only the rows in view are drawn.
(function (global) {
  "use strict";
  var ROW = 20, BAR = 14, AXIS = 26, LABEL_W = 220;
  var CSS_STATE = {COMPLETED: "completed", CACHED: "completed", FAILED: "failed", CRASHED: "crashed",
    RUNNING: "running", RETRYING: "running", PENDING: "pending", SCHEDULED: "scheduled", CANCELLED: "cancelled",
    CANCELLING: "cancelled", PAUSED: "paused"};

  function Timeline(scroller, canvas, spacer) {
    this.scroller = scroller; this.canvas = canvas; this.spacer = spacer;
    this.ctx = canvas.getContext("2d");
    this.rows = []; this.bars = [];
    this.pending = false;
    var self = this;
    scroller.addEventListener("scroll", function () { self.redraw(); });
    global.addEventListener("resize", function () { self.layout(); });
  }

  // nodes: the graph's nodes; rows sorted by start (unstarted ones last)
  Timeline.prototype.setNodes = function (nodes) {
    var now = Date.now(), t0 = Infinity, t1 = -Infinity;
    this.rows = nodes.map(function (n) {
      var s = n.start_time ? Date.parse(n.start_time) : NaN;
      var e = n.end_time ? Date.parse(n.end_time) : (isNaN(s) ? NaN : now);
      return {id: n.id, name: n.name, state: n.state_type, start: s, end: e, finished: !!n.end_time};
    });
    this.rows.sort(function (a, b) {
      var sa = isNaN(a.start) ? Infinity : a.start, sb = isNaN(b.start) ? Infinity : b.start;
      return sa - sb;
    });
    this.rows.forEach(function (r) { if (!isNaN(r.start)) { t0 = Math.min(t0, r.start); t1 = Math.max(t1, r.end); } });
    this.t0 = t0; this.t1 = t1 > t0 ? t1 : t0 + 1000;
    this.layout();
  };

  Timeline.prototype.layout = function () {
    var width = this.scroller.clientWidth || 800;
    this.width = width;
    this.spacer.style.height = (AXIS + this.rows.length * ROW + 8) + "px";
    var span = this.t1 - this.t0, plot = Math.max(50, width - LABEL_W - 16), t0 = this.t0;
    // every bar's geometry (the page's tests read it from window.plaitTimeline)
    this.bars = this.rows.map(function (r, i) {
      if (isNaN(r.start)) return {id: r.id, row: i, x: 0, w: 0, state: r.state, finished: r.finished};
      var x = LABEL_W + (r.start - t0) / span * plot, w = Math.max(2, (r.end - r.start) / span * plot);
      return {id: r.id, row: i, x: x, w: w, state: r.state, finished: r.finished};
    });
    this.redraw();
  };

  Timeline.prototype.redraw = function () {
    var self = this;
    if (this.pending) return;
    this.pending = true;
    global.requestAnimationFrame(function () { self.pending = false; self.draw(); });
  };

  Timeline.prototype.draw = function () {
    var ratio = global.devicePixelRatio || 1, w = this.scroller.clientWidth, h = this.scroller.clientHeight;
    if (!w || !h) return;
    this.canvas.style.width = w + "px"; this.canvas.style.height = h + "px";
    this.canvas.width = Math.round(w * ratio); this.canvas.height = Math.round(h * ratio);
    this.canvas.style.marginBottom = (-h) + "px";  // the spacer, not the canvas, sets the scroll height
    var ctx = this.ctx, style = getComputedStyle(document.documentElement);
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, w, h);
    var top = this.scroller.scrollTop, first = Math.max(0, Math.floor(top / ROW)), last = Math.min(this.rows.length, first + Math.ceil(h / ROW) + 1);
    ctx.font = "12px system-ui, sans-serif"; ctx.textBaseline = "middle";
    var colours = {}, fg = style.getPropertyValue("--fg"), muted = style.getPropertyValue("--muted"), line = style.getPropertyValue("--line");
    for (var i = first; i < last; i++) {
      var r = this.rows[i], b = this.bars[i], y = AXIS + i * ROW - top;
      var key = CSS_STATE[r.state] || "pending";
      var colour = colours[key] || (colours[key] = style.getPropertyValue("--state-" + key).trim());
      ctx.fillStyle = fg;
      var label = global.PlaitGraph ? global.PlaitGraph.shortName(r.name) : r.name;
      ctx.fillText(label.length > 30 ? label.slice(0, 29) + "…" : label, 6, y + ROW / 2);
      if (b.w > 0) { ctx.fillStyle = colour; ctx.fillRect(b.x, y + (ROW - BAR) / 2, b.w, BAR); }
    }
    // the axis stays on top
    ctx.fillStyle = style.getPropertyValue("--card") || "#fff"; ctx.fillRect(0, 0, w, AXIS);
    ctx.strokeStyle = line; ctx.beginPath(); ctx.moveTo(LABEL_W, AXIS - 0.5); ctx.lineTo(w, AXIS - 0.5); ctx.stroke();
    if (isFinite(this.t0)) {
      var span = this.t1 - this.t0, plot = Math.max(50, w - LABEL_W - 16), ticks = 6;
      ctx.fillStyle = muted;
      for (var t = 0; t <= ticks; t++) {
        var x = LABEL_W + plot * t / ticks, at = this.t0 + span * t / ticks;
        ctx.fillRect(x, AXIS - 6, 1, 6);
        var text = t === 0 ? new Date(at).toLocaleTimeString() : "+" + formatSpan(span * t / ticks);
        ctx.fillText(text, Math.min(x + 2, w - ctx.measureText(text).width - 2), AXIS / 2);
      }
    }
  };

  function formatSpan(ms) {
    if (ms < 1000) return Math.round(ms) + " ms";
    if (ms < 60000) return (ms / 1000).toFixed(1) + " s";
    if (ms < 3600000) return Math.floor(ms / 60000) + "m " + Math.round(ms % 60000 / 1000) + "s";
    return Math.floor(ms / 3600000) + "h " + Math.round(ms % 3600000 / 60000) + "m";
  }

  global.PlaitTimeline = Timeline;
})(this);
