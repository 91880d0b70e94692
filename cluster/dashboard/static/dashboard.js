// The dashboard's only script: fills CSRF fields, confirms dangerous actions,
// and keeps the live part of the page fresh from the SSE stream, falling back
// to polling /dashboard/api/live (and saying so) while the stream is down.
(function () {
  "use strict";
  var body = document.body;
  var csrf = document.querySelector('meta[name="csrf"]').content;
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form.method.toLowerCase() !== "post") return;
    if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) { event.preventDefault(); return; }
    var field = form.querySelector('input[name="csrf"]');
    if (field) field.value = csrf;
  });

  var page = body.dataset.livePage;
  if (!page) return;
  var base = "/dashboard/";
  var live = document.getElementById("live");
  var conn = document.getElementById("conn");
  var STALL_MS = 8000, POLL_MS = 2000, RETRY_MS = 4000;
  var source = null, lastMessage = 0, pollTimer = null, retryTimer = null;

  function show(state, text) {
    conn.className = "conn " + state;
    conn.textContent = text;
    body.dataset.conn = state;
  }

  function apply(data) {
    lastMessage = Date.now();
    var active = document.activeElement;
    // Do not pull the input from under someone typing a worker count.
    if (active && active.tagName === "INPUT" && live.contains(active)) return;
    live.innerHTML = data.html;
    body.dataset.version = data.version;
  }

  function poll() {
    fetch(base + "api/live?page=" + encodeURIComponent(page), {credentials: "same-origin", cache: "no-store"})
      .then(function (r) { if (!r.ok) throw new Error(r.status); return r.json(); })
      .then(function (data) { apply(data); if (!source) show("polling", "stream down: polling every 2 s"); })
      .catch(function () { if (!source) show("offline", "supervisor unreachable: retrying"); });
  }

  function fallBack() {
    if (source) { source.close(); source = null; }
    show("polling", "stream down: polling every 2 s");
    if (!pollTimer) { poll(); pollTimer = setInterval(poll, POLL_MS); }
    if (!retryTimer) retryTimer = setTimeout(function () { retryTimer = null; connect(); }, RETRY_MS);
  }

  function connect() {
    source = new EventSource(base + "stream?page=" + encodeURIComponent(page));
    lastMessage = Date.now();
    source.addEventListener("open", function () { lastMessage = Date.now(); });
    source.addEventListener("keepalive", function () { lastMessage = Date.now(); });
    source.addEventListener("snapshot", function (event) {
      apply(JSON.parse(event.data));
      if (pollTimer) { clearInterval(pollTimer); pollTimer = null; }
      show("live", "live");
    });
    source.addEventListener("error", fallBack);
  }

  // A stream that stays silent (a stalled supervisor, a proxy holding it) counts as dropped:
  // the producer sends every second, a keepalive comes every five.
  setInterval(function () {
    if (source && Date.now() - lastMessage > STALL_MS) fallBack();
  }, 1000);
  connect();
})();
