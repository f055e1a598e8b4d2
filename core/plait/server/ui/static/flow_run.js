// The flow-run page: tabs (kept in the URL's hash), the graph, timeline and task table drawn
// from GET /api/v1/flow-runs/{id}/graph (fetched once, then again only when the live stream
// names a task run the page does not know), the logs with a live tail, and one event stream.
(function () {
  "use strict";
  var root = document.getElementById("flow-run");
  if (!root) return;
  var runId = root.dataset.runId, api = "/api/v1";
  var PAGE = 100, LOG_PAGE = 1000;
  var ORDER = {FAILED: 0, CRASHED: 1, RUNNING: 2, RETRYING: 2, PAUSED: 3, CANCELLING: 4, CANCELLED: 5, PENDING: 6,
    SCHEDULED: 7, COMPLETED: 8, CACHED: 8};
  var SYMBOLS = {COMPLETED: "✓", CACHED: "✓", FAILED: "✗", CRASHED: "⚠", RUNNING: "▶", RETRYING: "↻",
    PENDING: "○", SCHEDULED: "◷", CANCELLED: "⊘", CANCELLING: "⊘", PAUSED: "‖"};
  var CSS_STATE = {COMPLETED: "completed", CACHED: "completed", FAILED: "failed", CRASHED: "crashed",
    RUNNING: "running", RETRYING: "running", PENDING: "pending", SCHEDULED: "scheduled", CANCELLED: "cancelled",
    CANCELLING: "cancelled", PAUSED: "paused"};
  var FINAL = {COMPLETED: 1, CACHED: 1, FAILED: 1, CRASHED: 1, CANCELLED: 1};
  var graph = null, nodesById = {}, view = null, timeline = null, tablePage = 0;
  var exposed = window.plaitGraph = {ready: false, nodes: 0, edges: 0, fetches: 0, fetchMs: 0, layoutMs: 0};

  function $(sel, el) { return (el || root).querySelector(sel); }
  function getJSON(url) {
    return fetch(url, {credentials: "same-origin", headers: {Accept: "application/json"}}).then(function (r) {
      if (!r.ok) return r.json().catch(function () { return {}; }).then(function (b) {
        throw new Error((b.error && b.error.message) || ("HTTP " + r.status));
      });
      return r.json();
    });
  }
  function esc(text) {
    return String(text == null ? "" : text).replace(/[&<>"']/g, function (c) {
      return {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c];
    });
  }
  function badge(type, name) {
    var t = (type || "").toUpperCase();
    return '<span class="badge state-' + (CSS_STATE[t] || "pending") + '" data-state="' + esc(t) + '"><span aria-hidden="true">' +
      (SYMBOLS[t] || "•") + "</span> " + esc(name || (t.charAt(0) + t.slice(1).toLowerCase()) || "Unknown") + "</span>";
  }
  function duration(s) {
    if (s == null) return "—";
    if (s < 1) return Math.round(s * 1000) + " ms";
    if (s < 60) return s.toFixed(1) + " s";
    var m = Math.floor(s / 60); if (m < 60) return m + "m " + String(Math.floor(s % 60)).padStart(2, "0") + "s";
    return Math.floor(m / 60) + "h " + String(m % 60).padStart(2, "0") + "m";
  }
  function when(iso) {
    if (!iso) return '<span class="muted">—</span>';
    var d = new Date(iso);
    return '<time datetime="' + esc(iso) + '" title="' + esc(iso) + '">' + esc(d.toLocaleTimeString()) + "</time>";
  }

  // -- tabs ---------------------------------------------------------------------------------------
  var tabs = Array.prototype.slice.call(document.querySelectorAll("[data-tab]"));
  function show(name) {
    if (!tabs.some(function (t) { return t.dataset.tab === name; })) name = "graph";
    tabs.forEach(function (t) {
      var on = t.dataset.tab === name;
      t.setAttribute("aria-selected", on ? "true" : "false");
      t.tabIndex = on ? 0 : -1;
      document.getElementById("panel-" + t.dataset.tab).hidden = !on;
    });
    if (name === "graph" && view) { if (!view.viewW) view.fit(); else view.redraw(); }
    if (name === "timeline" && timeline) timeline.layout();
    if (name === "logs") scrollLogs();
  }
  window.addEventListener("hashchange", function () { show(location.hash.slice(1)); });
  tabs.forEach(function (t, i) {
    t.addEventListener("keydown", function (e) {
      var step = e.key === "ArrowRight" ? 1 : e.key === "ArrowLeft" ? -1 : 0;
      if (!step) return;
      var next = tabs[(i + step + tabs.length) % tabs.length];
      next.focus(); location.hash = next.dataset.tab;
    });
  });
  show(location.hash.slice(1));

  // -- the graph ----------------------------------------------------------------------------------
  var tip = $("[data-graph-tip]");
  view = new window.PlaitGraph.GraphView(document.getElementById("fr-graph"), {
    onOpen: function (node) { location.href = "/task-runs/" + encodeURIComponent(node.id); },
    onOpenRun: function (id) { location.href = "/flow-runs/" + encodeURIComponent(id); },
    fetchChild: function (id) { return getJSON(api + "/flow-runs/" + encodeURIComponent(id) + "/graph"); },
    onHover: function (node, e) {
      if (!node) { tip.hidden = true; return; }
      var rect = view.canvas.getBoundingClientRect();
      tip.textContent = node.name + " — " + (node.state_name || node.state_type) + (node.duration != null ? " · " + duration(node.duration) : "") +
        (node.subflow ? "\nsubflow: click to " + (view.expanded[node.subflow] ? "fold" : "show its tasks") + ", ctrl-click to open it" : "") +
        (node.message ? "\n" + String(node.message).slice(0, 400) : "");
      tip.style.left = Math.min(e.clientX - rect.left + 12, rect.width - 300) + "px";
      tip.style.top = (e.clientY - rect.top + 12) + "px";
      tip.hidden = false;
    }
  });
  document.querySelectorAll("[data-graph]").forEach(function (b) {
    b.addEventListener("click", function () {
      var what = b.dataset.graph;
      if (what === "fit") view.fit(); else view.zoom(what === "zoom-in" ? 1.25 : 0.8);
    });
  });

  function expose() {
    exposed.nodes = view.nodes.length;
    exposed.edges = view.edges.length;
    exposed.layoutMs = view.stats.layoutMs;
    exposed.layoutInWorker = view.stats.inWorker;
    exposed.ready = true;
  }
  // what the canvas holds, for tests and for anyone curious in the console
  exposed.edgePairs = function () {
    return view.edges.map(function (e) { return [e.from.id, e.to.id, e.kind]; });
  };
  exposed.edgeNames = function () {
    return view.edges.map(function (e) { return [e.from.task_name || e.from.name, e.to.task_name || e.to.name, e.kind]; });
  };
  exposed.nodeState = function (id) { var n = view.byId[id]; return n ? n.state_type : null; };
  exposed.stats = function () { return view.stats; };
  Object.defineProperty(exposed, "view", {value: view, enumerable: false});  // JSON.stringify(plaitGraph) stays small

  var fetching = false, again = false, lastFetch = 0;
  // The first graph comes with the page (the same JSON as the API's); later ones from the API.
  function embedded() {
    var holder = document.getElementById("fr-graph-data");
    if (!holder) return null;
    var t0 = performance.now(), data = JSON.parse(holder.textContent);
    holder.remove();
    exposed.parseMs = Math.round(performance.now() - t0);
    return Promise.resolve(data);
  }
  function load() {
    if (fetching) { again = true; return; }
    fetching = true;
    var t0 = performance.now();
    (embedded() || getJSON(api + "/flow-runs/" + encodeURIComponent(runId) + "/graph")).then(function (data) {
      exposed.fetchMs = Math.round(performance.now() - t0); exposed.fetches++;
      lastFetch = performance.now() - t0;
      graph = data; nodesById = {};
      data.nodes.forEach(function (n) { nodesById[n.id] = n; });
      setRunState(data.flow_run.state_type, data.flow_run.state_name);
      document.querySelectorAll("[data-task-count]").forEach(function (el) { el.textContent = data.nodes.length; });
      $("[data-run-duration]").textContent = duration(data.flow_run.duration_seconds);
      var status = $("[data-graph-status]");
      status.textContent = data.nodes.length + " task runs, " + data.edges.length + " dependencies" +
        (data.groups.length ? ", " + data.groups.length + " subflow runs" : "");
      view.setGraph(data, function () {
        expose();
        status.textContent += " · laid out in " + view.stats.layoutMs + " ms" + (view.stats.inWorker ? " (worker)" : "");
      });
      // each its own task, so none of them holds the main thread long at 10,000 runs
      setTimeout(renderTable, 0); setTimeout(renderTimeline, 0); setTimeout(fillTaskFilter, 0);
    }).catch(function (err) {
      $("[data-graph-status]").textContent = "could not load the graph: " + err.message;
    }).then(function () {
      fetching = false;
      if (again) { again = false; setTimeout(load, Math.max(1000, 3 * lastFetch)); }
    });
  }

  // -- the task table: failed first, filtered, one page of rows at a time ---------------------------
  var filters = $("[data-task-filters]");
  filters.addEventListener("input", function () { tablePage = 0; renderTable(); });
  filters.addEventListener("change", function () { tablePage = 0; renderTable(); });
  function tableRows() {
    var state = filters.elements.state.value, q = filters.elements.q.value.trim().toLowerCase();
    var rows = graph ? graph.nodes.filter(function (n) {
      return (!state || n.state_type === state) &&
        (!q || n.name.toLowerCase().indexOf(q) >= 0 || n.task_name.toLowerCase().indexOf(q) >= 0);
    }) : [];
    var order = {};
    graph.nodes.forEach(function (n, i) { order[n.id] = i; });
    rows.sort(function (a, b) {
      var ra = ORDER[a.state_type], rb = ORDER[b.state_type];
      return (ra === undefined ? 9 : ra) - (rb === undefined ? 9 : rb) || order[a.id] - order[b.id];
    });
    return rows;
  }
  function renderTable() {
    if (!graph) return;
    var rows = tableRows(), pages = Math.max(1, Math.ceil(rows.length / PAGE));
    tablePage = Math.min(tablePage, pages - 1);
    var shown = rows.slice(tablePage * PAGE, (tablePage + 1) * PAGE);
    $("[data-task-rows]").innerHTML = shown.length ? shown.map(function (n) {
      return '<tr data-task-run-id="' + esc(n.id) + '"><td>' + badge(n.state_type, n.state_name) + "</td>" +
        '<td><a href="/task-runs/' + encodeURIComponent(n.id) + '">' + esc(n.name) + "</a>" +
        (n.subflow_run_id ? ' <a class="small" href="/flow-runs/' + encodeURIComponent(n.subflow_run_id) + '">subflow run ↗</a>' : "") +
        (n.task_name !== n.name ? '<div class="muted small">' + esc(n.task_name) + "</div>" : "") + "</td>" +
        "<td>" + when(n.start_time) + "</td><td>" + duration(n.duration_seconds) + "</td><td>" + (n.run_count || 0) + "</td>" +
        "<td>" + (n.state_message ? '<pre class="fr-message state-' + (CSS_STATE[n.state_type] || "pending") + '-edge" data-message>' + esc(n.state_message) + "</pre>" : '<span class="muted">—</span>') + "</td></tr>";
    }).join("") : '<tr><td colspan="6" class="muted">No task run matches.</td></tr>';
    var pager = $("[data-task-pager]");
    pager.innerHTML = rows.length > PAGE ?
      '<button type="button" data-page="-1"' + (tablePage ? "" : " disabled") + ">← Previous</button>" +
      '<span class="muted">rows ' + (tablePage * PAGE + 1) + "–" + (tablePage * PAGE + shown.length) + " of " + rows.length + "</span>" +
      '<button type="button" data-page="1"' + (tablePage < pages - 1 ? "" : " disabled") + ">Next →</button>" :
      '<span class="muted">' + rows.length + " task run" + (rows.length === 1 ? "" : "s") + "</span>";
  }
  $("[data-task-pager]").addEventListener("click", function (e) {
    var step = e.target.dataset && e.target.dataset.page;
    if (step) { tablePage += Number(step); renderTable(); }
  });

  // -- the timeline -------------------------------------------------------------------------------
  timeline = new window.PlaitTimeline($("[data-timeline-scroll]"), document.getElementById("fr-timeline"), $("[data-timeline-spacer]"));
  function renderTimeline() {
    if (!graph) return;
    timeline.setNodes(graph.nodes);
    var started = graph.nodes.filter(function (n) { return n.start_time; }).length;
    $("[data-timeline-status]").textContent = started + " of " + graph.nodes.length + " task runs started";
    window.plaitTimeline = {rows: timeline.rows.length, bars: timeline.bars};
  }

  // -- logs: the first page, filters over the loaded lines, a live tail --------------------------------
  var logBox = $("[data-log-box]"), logForm = $("[data-log-filters]"), lines = [], lastLogId = null, nextCursor = null;
  var LEVELS = {DEBUG: 10, INFO: 20, WARNING: 30, ERROR: 40, CRITICAL: 50};
  var stuckToBottom = true;
  logBox.addEventListener("scroll", function () {
    stuckToBottom = logBox.scrollHeight - logBox.scrollTop - logBox.clientHeight < 24;
  });
  function scrollLogs() { if (stuckToBottom) logBox.scrollTop = logBox.scrollHeight; }
  function lineMatches(l) {
    var level = LEVELS[logForm.elements.level.value] || 0, task = logForm.elements.task.value, q = logForm.elements.q.value.trim().toLowerCase();
    if ((l.level_no || LEVELS[l.level] || 0) < level) return false;
    if (task === "-" && l.task_run_id) return false;
    if (task && task !== "-" && l.task_name !== task) return false;
    return !q || String(l.message).toLowerCase().indexOf(q) >= 0;
  }
  function lineHtml(l) {
    return '<div class="fr-line lvl-' + esc(String(l.level).toLowerCase()) + '" data-log-id="' + l.id + '">' +
      '<span class="fr-ts">' + esc((l.timestamp || "").replace("T", " ").slice(11, 23)) + "</span> " +
      '<span class="fr-lvl">' + esc(l.level) + "</span> " +
      (l.task_run_id ? '<a class="fr-task" href="/task-runs/' + encodeURIComponent(l.task_run_id) + '">' + esc(l.task_run_name || l.task_name) + "</a> " : "") +
      '<span class="fr-msg">' + esc(l.message) + "</span></div>";
  }
  function renderLogs() {
    var shown = lines.filter(lineMatches);
    logBox.innerHTML = shown.length ? shown.map(lineHtml).join("") : '<p class="muted">No log lines' + (lines.length ? " match." : " yet.") + "</p>";
    $("[data-log-status]").textContent = shown.length + " of " + lines.length + " loaded lines";
    scrollLogs();
  }
  function appendLogs(items) {
    if (!items.length) return;
    var known = lines.length ? lines[lines.length - 1].id : -1;
    items = items.filter(function (l) { return l.id > known; });
    lines = lines.concat(items);
    lastLogId = lines.length ? lines[lines.length - 1].id : lastLogId;
    if (logBox.querySelector("p.muted")) { renderLogs(); return; }
    var html = items.filter(lineMatches).map(lineHtml).join("");
    if (html) logBox.insertAdjacentHTML("beforeend", html);
    $("[data-log-status]").textContent = logBox.children.length + " of " + lines.length + " loaded lines";
    scrollLogs();
  }
  function loadLogs(cursor) {
    var url = api + "/flow-runs/" + encodeURIComponent(runId) + "/logs?limit=" + LOG_PAGE + (cursor ? "&cursor=" + encodeURIComponent(cursor) : "");
    return getJSON(url).then(function (page) {
      nextCursor = page.next_cursor;
      $("[data-log-more]").hidden = !nextCursor;
      lines = lines.concat(page.items);
      lastLogId = lines.length ? lines[lines.length - 1].id : null;
      renderLogs();
    }).catch(function (err) { $("[data-log-status]").textContent = "could not load the logs: " + err.message; });
  }
  $("[data-log-more]").addEventListener("click", function () { if (nextCursor) loadLogs(nextCursor); });
  logForm.addEventListener("input", renderLogs);
  logForm.addEventListener("change", renderLogs);
  var tailing = false, tailAgain = false;
  function tail() {
    if (tailing) { tailAgain = true; return; }
    tailing = true;
    var url = api + "/logs?flow_run=" + encodeURIComponent(runId) + "&limit=" + LOG_PAGE + (lastLogId != null ? "&after=" + lastLogId : "");
    getJSON(url).then(function (page) {
      appendLogs(page.items);
      if (page.next_cursor) tailAgain = true;  // more than a page arrived: read on
    }).catch(function () { /* the next event tries again */ }).then(function () {
      tailing = false;
      if (tailAgain) { tailAgain = false; tail(); }
    });
  }
  function fillTaskFilter() {
    var select = logForm.elements.task, have = {};
    Array.prototype.forEach.call(select.options, function (o) { have[o.value] = 1; });
    var names = {};
    graph.nodes.forEach(function (n) { names[n.task_name] = 1; });
    Object.keys(names).sort().slice(0, 500).forEach(function (name) {
      if (have[name]) return;
      var o = document.createElement("option"); o.value = name; o.textContent = name; select.appendChild(o);
    });
  }

  // -- live: one stream for the run, its task runs and its logs -------------------------------------
  function setRunState(type, name) {
    if (!type || root.dataset.state === type && $("[data-run-state]").textContent === name) return;
    var changed = root.dataset.state !== type;
    root.dataset.state = type;
    $("[data-run-badge]").innerHTML = badge(type, name);
    $("[data-run-state]").textContent = name || type;
    if (changed) exposed.runState = type;
  }
  var dirty = {table: false, timeline: false};
  var repaint = window.plait.throttle(function () {
    if (dirty.table) renderTable();
    if (dirty.timeline) renderTimeline();
    dirty.table = dirty.timeline = false;
  }, 500);
  var refetch = window.plait.throttle(load, 1000);
  var tailSoon = window.plait.throttle(tail, 250);
  // only this run's events and its subflow runs' reach the page (the server filters them)
  var streamUrl = api + "/events/stream?kind=flow-run.state-changed&kind=task-run.state-changed&kind=logs.written" +
    root.dataset.follow.split(",").map(function (id) { return "&flow_run=" + encodeURIComponent(id); }).join("");
  window.plait.live(streamUrl, ["flow-run.state-changed", "task-run.state-changed", "logs.written"], function (kind, event) {
    var p = event.payload || {};
    if (kind === "flow-run.state-changed") {
      if (p.flow_run_id === runId) { setRunState(p.state_type, p.state_name); refetch(); }
      else if (graph && graph.groups.some(function (g) { return g.id === p.flow_run_id; })) refetch();
    } else if (kind === "task-run.state-changed") {
      if (p.flow_run_id !== runId) return;
      var node = nodesById[p.task_run_id];
      if (!node) { refetch(); return; }  // a new task run: its place in the graph is the server's
      if (node.state_type === p.state_type && node.state_name === p.state_name) return;
      node.state_type = p.state_type; node.state_name = p.state_name;
      // times follow from the event; a message (a failure's) needs the stored run
      if (p.state_type === "RUNNING" && !node.start_time) node.start_time = event.occurred;
      if (FINAL[p.state_type] && !node.end_time) node.end_time = event.occurred;
      view.setState(p.task_run_id, p.state_type, p.state_name);
      dirty.table = dirty.timeline = true; repaint();
      if (p.state_type !== "COMPLETED" && FINAL[p.state_type] || p.state_type === "RETRYING") refetch();
    } else if (kind === "logs.written" && p.flow_run_id === runId) {
      tailSoon();
    }
  });

  load();
  loadLogs();
})();
