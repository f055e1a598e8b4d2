// plait dashboard: times in the browser's zone, theme switch, CSRF on every htmx change,
// and plait.live(): one EventSource per page for live updates.
(function () {
  "use strict";
  var csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";

  // one formatter for every <time>: toLocaleString builds a new one per call (~1 ms each here)
  var local = new Intl.DateTimeFormat(undefined, {year: "numeric", month: "short", day: "numeric",
    hour: "2-digit", minute: "2-digit", second: "2-digit"});
  function localTimes(root) {
    (root || document).querySelectorAll("time[datetime]:not([data-local])").forEach(function (el) {
      var d = new Date(el.getAttribute("datetime"));
      if (isNaN(d)) return;
      el.dataset.local = "1";
      el.textContent = local.format(d);
    });
  }

  function throttle(fn, ms) {
    var timer = null, again = false;
    return function () {
      if (timer) { again = true; return; }
      fn();
      timer = setTimeout(function () { timer = null; if (again) { again = false; fn(); } }, ms);
    };
  }

  // One stream per page: url is /api/v1/events/stream?...; the server names each message by
  // its event kind, so the page lists the kinds it handles. onEvent(kind, parsedData).
  function live(url, kinds, onEvent) {
    var source = new EventSource(url);
    var mark = document.querySelector("[data-live]");
    source.onopen = function () { if (mark) { mark.dataset.on = "1"; mark.textContent = "live"; } };
    source.onerror = function () { if (mark) { mark.dataset.on = "0"; mark.textContent = "reconnecting…"; } };
    kinds.forEach(function (kind) {
      source.addEventListener(kind, function (e) {
        var data = null;
        try { data = JSON.parse(e.data); } catch (err) { return; }
        onEvent(kind, data);
      });
    });
    window.addEventListener("pagehide", function () { source.close(); });
    return source;
  }

  document.addEventListener("DOMContentLoaded", function () {
    localTimes();
    var toggle = document.querySelector("[data-theme-toggle]");
    if (toggle) toggle.addEventListener("click", function () {
      var root = document.documentElement;
      var dark = root.dataset.theme ? root.dataset.theme === "dark" : matchMedia("(prefers-color-scheme: dark)").matches;
      root.dataset.theme = dark ? "light" : "dark";
      try { localStorage.setItem("plait-theme", root.dataset.theme); } catch (e) { /* private mode */ }
    });
  });
  document.addEventListener("htmx:configRequest", function (e) { e.detail.headers["X-Plait-CSRF"] = csrf; });
  document.addEventListener("htmx:afterSwap", function (e) { localTimes(e.target); });

  window.plait = {live: live, throttle: throttle, localTimes: localTimes, csrf: csrf};
})();
