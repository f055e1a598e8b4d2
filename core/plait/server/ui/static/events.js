// Events page: new events arrive over plait.live() and are put on top of the table.
// Every value is set as text (never as HTML): payloads are user data.
(function () {
  "use strict";
  var MAX_ROWS = 500;
  function link(resource) {
    var parts = (resource || "").split("/");
    var rest = parts.slice(1);
    if (parts[0] === "flow-run" && rest.length === 1) return "/flow-runs/" + encodeURIComponent(rest[0]);
    if (parts[0] === "block" && rest.length === 2) return "/blocks/" + rest.map(encodeURIComponent).join("/");
    if (parts[0] === "work-pool" && rest.length === 1) return "/work-pools/" + encodeURIComponent(rest[0]);
    if (parts[0] === "automation" && rest.length >= 1) return "/automations/" + encodeURIComponent(rest.join("/"));
    return null;
  }
  function cell(row, text, cls) {
    var td = document.createElement("td");
    if (cls) td.className = cls;
    if (text instanceof Node) td.appendChild(text); else td.textContent = text;
    row.appendChild(td);
    return td;
  }
  function add(data) {
    var body = document.querySelector("#events tbody");
    if (!body || body.querySelector('tr[data-seq="' + data.seq + '"]')) return;
    var row = document.createElement("tr");
    row.dataset.seq = data.seq;
    row.className = "event-new";
    var time = document.createElement("time");
    time.setAttribute("datetime", data.occurred || "");
    time.title = (data.occurred || "").replace("T", " ").slice(0, 19) + " UTC";
    time.textContent = time.title;
    cell(row, time);
    var code = document.createElement("code");
    code.textContent = data.kind;
    cell(row, code);
    var href = link(data.resource);
    if (href) { var a = document.createElement("a"); a.href = href; a.textContent = data.resource; cell(row, a); }
    else cell(row, data.resource || "");
    var summary = JSON.stringify(data.payload || {});
    cell(row, summary.length > 200 ? summary.slice(0, 199) + "…" : summary, "wide mono small");
    body.insertBefore(row, body.firstChild);
    while (body.rows.length > MAX_ROWS) body.deleteRow(body.rows.length - 1);
    var wrap = document.getElementById("events-wrap"), empty = document.getElementById("events-empty");
    if (wrap) wrap.hidden = false;
    if (empty) empty.hidden = true;
    window.plait.localTimes(row);
  }
  document.addEventListener("DOMContentLoaded", function () {
    var config = JSON.parse(document.getElementById("events-live").textContent);
    window.plait.live(config.url, config.kinds, function (kind, data) { add(data); });
  });
})();
