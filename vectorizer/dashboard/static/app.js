// Vectorizer's dashboard: plain JavaScript, no dependency. Every figure comes from the server's
// JSON routes (/vectorizer/*, the Qdrant routes for search); nothing reads a collection's points
// except a search, and collections come a page at a time.
"use strict";
(() => {
  const STORE = "vectorizer.api-key";
  const POLL_MS = 2000;
  const WINDOW = 150; // points kept per chart (5 minutes at one poll every 2 s)
  const PAGE = 50;
  const $ = (id) => document.getElementById(id);

  class ApiError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  async function api(method, path, body) {
    const headers = {};
    const key = sessionStorage.getItem(STORE);
    if (key) headers["api-key"] = key;
    if (body !== undefined) headers["content-type"] = "application/json";
    const answer = await fetch(path, {method, headers, body: body === undefined ? undefined : JSON.stringify(body)});
    const data = await answer.json().catch(() => null);
    if (answer.status === 401) {
      $("key-form").hidden = false;
      throw new ApiError(401, "this server needs an API key");
    }
    if (!answer.ok) throw new ApiError(answer.status, (data && data.status && data.status.error) || answer.statusText);
    return data.result;
  }

  function showError(error) {
    const el = $("error");
    el.textContent = error ? `${error.status ? "HTTP " + error.status + ": " : ""}${error.message}` : "";
    el.hidden = !error;
  }

  function cells(row, values) {
    const tr = document.createElement("tr");
    for (const value of values) {
      const td = document.createElement("td");
      if (typeof value === "number") td.className = "num";
      td.textContent = value === null || value === undefined ? "–" : String(value);
      tr.appendChild(td);
    }
    row.appendChild(tr);
  }

  function fill(table, rows) {
    const body = $(table).querySelector("tbody");
    body.replaceChildren();
    for (const values of rows) cells(body, values);
  }

  const age = (s) => s === null || s === undefined ? "–" : s < 120 ? `${Math.round(s)} s` :
    s < 7200 ? `${Math.round(s / 60)} min` : `${(s / 3600).toFixed(1)} h`;
  const bytes = (n) => n < 1024 ? `${n} B` : n < 1 << 20 ? `${(n / 1024).toFixed(1)} KiB` :
    n < 1 << 30 ? `${(n / (1 << 20)).toFixed(1)} MiB` : `${(n / (1 << 30)).toFixed(2)} GiB`;

  // Charts: one SVG polyline per series over a sliding window. data-points / data-last say what is drawn.
  const COLORS = ["#2f6fdf", "#e67e22", "#c0392b"];
  function chart(id, series) {
    const svg = $(id);
    const width = svg.clientWidth || 400, height = svg.clientHeight || 160, left = 44, bottom = 16;
    const all = series.flatMap((s) => s.values.map((p) => p[1])).filter((v) => Number.isFinite(v));
    const top = Math.max(...all, 0) || 1; // all zero (or nothing yet): a scale of 1
    const times = series.flatMap((s) => s.values.map((p) => p[0]));
    const t0 = Math.min(...times), t1 = Math.max(...times, t0 + 1);
    const ns = "http://www.w3.org/2000/svg";
    svg.replaceChildren();
    const label = (text, x, y) => {
      const t = document.createElementNS(ns, "text");
      t.setAttribute("x", x); t.setAttribute("y", y); t.textContent = text; svg.appendChild(t);
      return t;
    };
    label(top >= 100 ? top.toFixed(0) : top.toPrecision(3), 2, 12);
    label("0", 2, height - bottom);
    series.forEach((s, i) => {
      const points = s.values.filter((p) => Number.isFinite(p[1])).map((p) =>
        `${left + (p[0] - t0) / (t1 - t0) * (width - left - 4)},${(height - bottom) - p[1] / top * (height - bottom - 8)}`);
      const line = document.createElementNS(ns, "polyline");
      line.setAttribute("points", points.join(" "));
      line.setAttribute("fill", "none");
      line.setAttribute("stroke", COLORS[i % COLORS.length]);
      line.setAttribute("stroke-width", "1.5");
      svg.appendChild(line);
      if (series.length > 1) label(s.name, left + 8 + i * 40, 12).style.fill = COLORS[i % COLORS.length];
    });
    const first = series[0].values;
    svg.dataset.points = String(first.length);
    svg.dataset.last = first.length ? String(first[first.length - 1][1]) : "";
  }

  // Prometheus' histogram_quantile over the difference of two cumulative reads.
  function quantile(q, bounds, counts) {
    const total = counts[counts.length - 1];
    if (!(total > 0)) return NaN;
    const rank = q * total;
    let i = counts.findIndex((c) => c >= rank);
    if (i >= bounds.length) return bounds[bounds.length - 1];
    const below = i === 0 ? 0 : counts[i - 1], lower = i === 0 ? 0 : bounds[i - 1];
    return lower + (bounds[i] - lower) * (rank - below) / Math.max(1e-12, counts[i] - below);
  }

  // Overview --------------------------------------------------------------------------
  const history = {lag: [], ingest: [], search: [[], [], []], upsert: [[], [], []]};
  let previous = null, previousLatency = null;
  const keep = (list, point) => { list.push(point); if (list.length > WINDOW) list.shift(); };

  async function refreshOverview() {
    const status = await api("GET", "/vectorizer/status");
    const now = Date.now() / 1000;
    const state = $("state");
    state.textContent = status.ready ? "ready" : (status.problem || "catching up");
    state.className = "badge " + (status.ready ? "ready" : "not-ready");
    $("s-collections").textContent = status.collections;
    $("s-points").textContent = status.points.toLocaleString();
    $("s-lag").textContent = status.lag;
    $("s-dead").textContent = status.dead_letters;
    const snap = status.snapshot;
    $("s-snapshot").textContent = snap.newest ? `${age(snap.age_seconds)} ago${snap.failing ? " (failing)" : ""}` : "none";
    fill("partitions", status.partitions.map((p) => [p.partition, p.applied, p.log_end, p.lag,
                                                    p.lag_seconds === null ? null : Number(p.lag_seconds.toFixed(1))]));
    fill("reasons", Object.entries(status.dead_letters_by_reason));
    keep(history.lag, [now, status.lag]);
    if (previous) keep(history.ingest, [now, Math.max(0, status.vectors_applied - previous.vectors) / (now - previous.t)]);
    previous = {t: now, vectors: status.vectors_applied};
    chart("chart-lag", [{name: "lag", values: history.lag}]);
    chart("chart-ingest", [{name: "vectors/s", values: history.ingest}]);
    const latency = await api("GET", "/vectorizer/latency");
    if (previousLatency) {
      for (const group of ["search", "upsert"]) {
        const now_ = latency.groups[group], before = previousLatency.groups[group];
        const delta = now_.map((c, i) => c - before[i]);
        [0.5, 0.95, 0.99].forEach((q, i) => keep(history[group][i], [now, 1000 * quantile(q, latency.buckets, delta)]));
      }
    }
    previousLatency = latency;
    for (const group of ["search", "upsert"]) {
      chart(`chart-${group}`, ["p50", "p95", "p99"].map((name, i) => ({name, values: history[group][i]})));
    }
  }

  // Collections ------------------------------------------------------------------------
  let offset = 0;
  async function refreshCollections() {
    const prefix = $("c-prefix").value;
    const page = await api("GET", `/vectorizer/collections?offset=${offset}&limit=${PAGE}&prefix=${encodeURIComponent(prefix)}`);
    fill("c-table", page.collections.map((c) => {
      const dense = Object.entries(c.vectors);
      const show = (f) => dense.map(([name, v]) => (name ? `${name}: ` : "") + f(v)).join(", ") || "–";
      return [c.name, c.kind, c.points, show((v) => v.size), show((v) => v.distance),
              show((v) => v.quantization ? Object.keys(v.quantization).join("") : "none"),
              Object.entries(c.payload_indexes).map(([f, t]) => `${f} (${typeof t === "string" ? t : t.type})`).join(", ") || "–",
              c.aliases.join(", ") || "–"];
    }));
    $("c-range").textContent = page.total ? `${offset + 1}–${offset + page.collections.length} of ${page.total}` : "none";
    $("c-prev").disabled = offset === 0;
    $("c-next").disabled = offset + PAGE >= page.total;
  }

  // Snapshots and verify ---------------------------------------------------------------
  async function refreshSnapshots() {
    const listed = await api("GET", "/vectorizer/snapshots");
    fill("snap-table", listed.snapshots.map((s) => s.error ? [s.name, "unreadable", s.error, "", ""] :
      [s.name, age(s.age_seconds), bytes(s.bytes), s.files, JSON.stringify(s.offsets)]));
    showVerify(await api("GET", "/vectorizer/verify"));
  }

  function showVerify(report) {
    if (!report) return;
    const when = new Date(report.finished * 1000).toLocaleString();
    $("verify-result").textContent = `${report.ok ? "OK" : report.problems.length + " problem(s)"} — ` +
      `${report.collection || "every collection"}, ${report.seconds} s, finished ${when}`;
    const list = $("verify-problems");
    list.replaceChildren();
    for (const p of report.problems) {
      const li = document.createElement("li");
      li.textContent = `${p.kind}: ${p.collection ? "[" + p.collection + "] " : ""}${p.detail}`;
      list.appendChild(li);
    }
  }

  // Dead letters ------------------------------------------------------------------------
  async function refreshDeadLetters() {
    const found = await api("GET", "/vectorizer/dead_letters?limit=100");
    $("dl-note").textContent = found.dead_letters.length ? (found.more ? "The newest 100 dead letters." : "") :
      "No dead letters.";
    fill("dl-table", found.dead_letters.map((d) => [d.offset, d.collection, d.reason, d.status, d.producer, d.time, d.detail]));
  }

  // Search -----------------------------------------------------------------------------
  async function search(event) {
    event.preventDefault();
    const name = encodeURIComponent($("q-collection").value.trim());
    const limit = Number($("q-limit").value) || 10;
    const input = $("q-input").value;
    let found;
    if ($("q-mode").value === "text") {
      found = await api("POST", `/collections/${name}/search/text`, {query: input, limit});
    } else {
      let vector;
      try { vector = JSON.parse(input); } catch (e) { throw new ApiError(0, "the vector is not valid JSON"); }
      found = await api("POST", `/collections/${name}/points/query`, {query: vector, limit, with_payload: true});
    }
    fill("hits", found.points.map((p, i) => [i + 1, p.id, Number(p.score.toFixed(4)),
                                            JSON.stringify(p.payload || {}).slice(0, 200)]));
  }

  async function suggest() {
    const page = await api("GET", `/vectorizer/collections?limit=20&prefix=${encodeURIComponent($("q-collection").value)}`);
    const list = $("q-names");
    list.replaceChildren();
    for (const c of page.collections) {
      const option = document.createElement("option");
      option.value = c.name;
      list.appendChild(option);
    }
  }

  // Pages ------------------------------------------------------------------------------
  const PAGES = {overview: refreshOverview, collections: refreshCollections, snapshots: refreshSnapshots,
                 "dead-letters": refreshDeadLetters, search: async () => {}};
  const current = () => (location.hash.slice(1) in PAGES ? location.hash.slice(1) : "overview");

  async function run(task) {
    try { await task(); showError(null); } catch (error) { showError(error); }
  }

  function show() {
    const page = current();
    for (const section of document.querySelectorAll(".page")) section.hidden = section.id !== page;
    for (const link of document.querySelectorAll("nav a")) link.classList.toggle("active", link.dataset.page === page);
    return run(PAGES[page]);
  }

  window.addEventListener("hashchange", show);
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(STORE, $("key-input").value);
    $("key-form").hidden = true;
    show();
  });
  $("c-prefix").addEventListener("input", () => { offset = 0; run(refreshCollections); });
  $("c-prev").addEventListener("click", () => { offset = Math.max(0, offset - PAGE); run(refreshCollections); });
  $("c-next").addEventListener("click", () => { offset += PAGE; run(refreshCollections); });
  $("take-snapshot").addEventListener("click", () => run(async () => { await api("POST", "/vectorizer/snapshots"); await refreshSnapshots(); }));
  $("run-verify").addEventListener("click", () => run(async () => showVerify(await api("POST", "/vectorizer/verify"))));
  $("search-form").addEventListener("submit", (event) => run(() => search(event)));
  $("q-collection").addEventListener("input", () => run(suggest));
  setInterval(() => { if (current() === "overview" && $("key-form").hidden) run(refreshOverview); }, POLL_MS);
  show();
})();
