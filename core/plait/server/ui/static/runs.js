// The runs page: while it shows the newest page, a state change anywhere refreshes its body
// (summary, chart, table) with one request, at most once a second.
(function () {
  "use strict";
  document.addEventListener("DOMContentLoaded", function () {
    var body = document.getElementById("runs-body");
    if (!body || !window.plait) return;
    var refresh = plait.throttle(function () {
      var table = body.querySelector("table.runs");
      if (table && table.dataset.firstPage !== "1") return;  // an older page stays as it is
      htmx.ajax("GET", location.pathname + location.search, {target: "#runs-body", swap: "innerHTML",
        headers: {"HX-Target": "runs-body"}});
    }, 1000);
    plait.live("/api/v1/events/stream?kind=flow-run.state-changed", ["flow-run.state-changed"], function () {
      refresh();
    });
  });
})();
