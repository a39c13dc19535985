/* recstream dashboard: polls the worker's JSON API and draws it. Computes no figures of its own:
 * every number shown is a field of an API response (docs/dashboard.md lists them). */
(function () {
  "use strict";

  const POLL_MS = 2000;
  const TIMEOUT_MS = 5000;
  const STEP_FOR_MINUTES = { 5: 2, 15: 10, 60: 30 };
  const TYPE_COLORS = { view: "#5aa9ff", like: "#ef5a7a", share: "#3fb67a", comment: "#e5a83b", skip: "#9c8470", follow: "#b07aa1" };
  const hasCharts = typeof window.Chart === "function";
  // The read API key, when the server has keys (per-user history, dead-letter payloads): opened once as
  // /?key=..., kept for this tab only, and taken out of the address bar.
  const API_KEY = (function () {
    const params = new URLSearchParams(location.search);
    const given = params.get("key");
    if (given) {
      sessionStorage.setItem("recstream-key", given);
      params.delete("key");
      const rest = params.toString();
      history.replaceState(null, "", location.pathname + (rest ? "?" + rest : "") + location.hash);
    }
    return sessionStorage.getItem("recstream-key");
  })();

  // --- small helpers ---------------------------------------------------------------------
  const $ = (sel, root) => (root || document).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "dataset") Object.assign(node.dataset, v);
      else node.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }
  const isNum = (v) => typeof v === "number" && isFinite(v);
  const fmt = {
    int: (v) => (isNum(v) ? Math.round(v).toLocaleString("en-US") : "—"),
    num: (v, d = 1) => (isNum(v) ? v.toLocaleString("en-US", { minimumFractionDigits: d, maximumFractionDigits: d }) : "—"),
    pct: (v) => (isNum(v) ? (v * 100).toFixed(1) + "%" : "—"),
    secs: (ms) => (isNum(ms) ? (ms / 1000).toFixed(1) + " s" : "—"),
    ms: (v) => (isNum(v) ? (v < 1000 ? v.toFixed(0) + " ms" : (v / 1000).toFixed(2) + " s") : "—"),
    clock: (epochS) => new Date(epochS * 1000).toLocaleTimeString("en-GB", { hour12: false }),
    stamp: (ms) => (isNum(ms) ? new Date(ms).toLocaleString("en-GB", { hour12: false }) : "—"),
    ago: (ms) => {
      if (!isNum(ms)) return "—";
      const s = Math.max(0, (Date.now() - ms) / 1000);
      if (s < 60) return Math.round(s) + " s ago";
      if (s < 3600) return Math.round(s / 60) + " min ago";
      if (s < 86400) return Math.round(s / 3600) + " h ago";
      return Math.round(s / 86400) + " d ago";
    },
  };
  const TREND = { up: "▲ rising", down: "▼ falling", flat: "► steady", new: "✦ new" };

  function setKpi(root, key, value, text) {
    const node = $(`[data-kpi="${key}"]`, root);
    if (!node) return;
    node.dataset.value = value === null || value === undefined ? "" : String(value);
    $(".value", node).textContent = text;
  }
  function setSub(root, key, text) {
    const node = $(`[data-sub="${key}"]`, root);
    if (node) node.textContent = text;
  }
  function videoCell(v) {
    return el("td", { class: "vid" },
      el("span", { class: "cap" }, v.caption || "(no caption)"),
      el("div", { class: "tags" }, el("span", { class: "id" }, v.video_id), (v.hashtags || []).map((h) => el("span", { class: "tag" }, "#" + h))));
  }
  function openVideo(id) { location.hash = "#/video/" + encodeURIComponent(id); }
  function clickableRow(tr, id) {
    tr.dataset.videoId = id;
    tr.tabIndex = 0;
    tr.addEventListener("click", () => openVideo(id));
    tr.addEventListener("keydown", (e) => { if (e.key === "Enter") openVideo(id); });
    return tr;
  }

  // --- connection state: live, degraded (the API answered with an error), down (no answer) -
  const conn = {
    state: "connecting", lastOk: null, since: null, failures: 0,
    ok() {
      this.failures = 0; this.since = null; this.lastOk = Date.now();
      this.render("live", "live · updated " + fmt.clock(this.lastOk / 1000));
    },
    degraded(message) {
      this.failures = 0; this.lastOk = Date.now();
      this.render("degraded", "degraded: " + message);
    },
    down() {
      this.failures += 1;
      if (!this.since) this.since = Date.now();
      this.render("down", `worker unreachable — retrying (${this.failures})`);
    },
    render(state, text) {
      this.state = state;
      const pill = $("#conn-status");
      pill.dataset.state = state;
      pill.textContent = text;
      const down = state === "down";
      $("#conn-banner").hidden = !down;
      document.body.classList.toggle("stale", down);
      if (down) {
        $("#conn-banner-detail").textContent =
          `${location.host} has not answered since ${fmt.clock(this.since / 1000)}; retrying every ${POLL_MS / 1000} s. ` +
          (this.lastOk ? `The figures below are from ${fmt.clock(this.lastOk / 1000)}.` : "No data received yet.");
      }
    },
  };

  class Unreachable extends Error {}
  /** GET a JSON endpoint. Resolves {status, body} for any HTTP answer below 500; a 5xx marks the
   * page degraded and rejects; no answer at all marks it down and rejects. */
  async function api(path) {
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), TIMEOUT_MS);
    let resp;
    try {
      resp = await fetch(path, { signal: ctl.signal, cache: "no-store", headers: API_KEY ? { Accept: "application/json", "X-API-Key": API_KEY } : { Accept: "application/json" } });
    } catch (err) {
      conn.down();
      throw new Unreachable(String(err));
    } finally {
      clearTimeout(timer);
    }
    let body = null;
    try { body = await resp.json(); } catch (_) { body = null; }
    if (resp.status >= 500) {
      conn.degraded((body && (body.error || body.detail)) || "HTTP " + resp.status);
      throw new Error("HTTP " + resp.status);
    }
    conn.ok();
    return { status: resp.status, body };
  }

  // --- charts (Chart.js from web/static/vendor) -------------------------------------------
  const charts = {};
  if (hasCharts) {
    Chart.defaults.color = "#8b95a3";
    Chart.defaults.borderColor = "#2a313b";
    Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
    Chart.defaults.animation = false;
    Chart.defaults.maintainAspectRatio = false;
    Chart.defaults.plugins.legend.labels.boxWidth = 12;
  } else {
    $("#asset-banner").hidden = false;
  }
  const timeAxis = { type: "linear", ticks: { maxTicksLimit: 7, callback: (v) => fmt.clock(v) }, grid: { display: false } };

  function chart(id, config) {
    if (!hasCharts) return null;
    if (!charts[id]) charts[id] = new Chart(document.getElementById(id), config);
    return charts[id];
  }
  function showEmpty(canvasId, empty) {
    const box = document.getElementById(canvasId).parentElement;
    const note = $(".empty", box);
    if (note) note.hidden = !empty;
  }
  function points(t, ys, scale = 1) {
    return t.map((x, i) => ({ x, y: isNum(ys[i]) ? ys[i] * scale : null }));
  }
  // A value with no neighbour draws no line: give it a dot so that a lone bucket is still visible.
  const loneDot = (ctx) => {
    const d = ctx.dataset.data, i = ctx.dataIndex, y = (p) => (p && typeof p === "object" ? p.y : p);
    return y(d[i]) !== null && y(d[i - 1]) == null && y(d[i + 1]) == null ? 3 : 0;
  };
  function line(label, color, data, extra) {
    // Bridge a few empty buckets, not minutes of silence: a long gap stays a gap.
    return Object.assign({ label, data, borderColor: color, backgroundColor: color + "33", borderWidth: 1.6, pointRadius: loneDot,
      pointBackgroundColor: color, pointHitRadius: 6, spanGaps: false, tension: 0.25 }, extra || {});
  }

  // --- Live: overview + trending ------------------------------------------------------------
  const live = {
    minutes: 5,
    async refresh() {
      const step = STEP_FOR_MINUTES[this.minutes] || 1;
      const [ov, tr] = await Promise.all([api(`/api/overview?minutes=${this.minutes}&step=${step}`), api("/api/trending?k=10")]);
      this.renderOverview(ov.body);
      this.renderTrending(tr.body.items || []);
    },
    renderOverview(d) {
      const root = $("#live-kpis"), t = d.totals;
      setKpi(root, "events_per_s", t.events_per_s, fmt.num(t.events_per_s, 2));
      setSub(root, "current", `now ${fmt.num(d.current.events_per_s, 1)}/s · ${fmt.int(t.events)} events`);
      setKpi(root, "active_users", t.active_users, fmt.int(t.active_users));
      setSub(root, "events", `in the last ${this.minutes} min`);
      setKpi(root, "avg_watch_time_ms", t.avg_watch_time_ms, fmt.secs(t.avg_watch_time_ms));
      setSub(root, "views", `${fmt.int(t.views)} views`);
      setKpi(root, "completion_rate", t.completion_rate, fmt.pct(t.completion_rate));
      setKpi(root, "like_rate", t.like_rate, fmt.pct(t.like_rate));
      setKpi(root, "share_rate", t.share_rate, fmt.pct(t.share_rate));
      root.dataset.events = String(t.events);

      const s = d.series, t0 = s.t, gap = { spanGaps: d.step_s * 5 };
      const bounds = { min: d.since_s, max: d.until_s - d.step_s };
      const ev = chart("chart-events", {
        type: "line", data: { datasets: [] },
        options: { scales: { x: timeAxis, y: { stacked: true, beginAtZero: true, title: { display: true, text: "events / s" } } },
          plugins: { tooltip: { mode: "index", intersect: false, callbacks: { title: (it) => fmt.clock(it[0].parsed.x) } } } },
      });
      if (ev) {
        ev.data.datasets = Object.keys(s.events_per_s).map((k, i) =>
          line(k, TYPE_COLORS[k] || "#888", points(t0, s.events_per_s[k]), { fill: i === 0 ? "origin" : "-1", backgroundColor: (TYPE_COLORS[k] || "#888") + "55" }));
        Object.assign(ev.options.scales.x, bounds);
        ev.update("none");
      }
      showEmpty("chart-events", t.events === 0);

      const au = chart("chart-active", {
        type: "bar", data: { labels: [], datasets: [{ label: "users", data: [], backgroundColor: "#5aa9ff99" }] },
        options: { plugins: { legend: { display: false } }, scales: { y: { beginAtZero: true, ticks: { precision: 0 } }, x: { grid: { display: false } } } },
      });
      if (au) {
        au.data.labels = d.active_users.minutes.map((m) => fmt.clock(m).slice(0, 5));
        au.data.datasets[0].data = d.active_users.users;
        au.update("none");
      }
      showEmpty("chart-active", !d.active_users.users.some((u) => u > 0));

      const wt = chart("chart-watch", {
        type: "line", data: { datasets: [] },
        options: { scales: { x: timeAxis, y: { beginAtZero: true, title: { display: true, text: "avg watch (s)" } },
          y1: { position: "right", min: 0, max: 100, grid: { display: false }, title: { display: true, text: "completion %" } } },
          plugins: { tooltip: { mode: "index", intersect: false, callbacks: { title: (it) => fmt.clock(it[0].parsed.x) } } } },
      });
      if (wt) {
        wt.data.datasets = [line("avg watch time (s)", "#5aa9ff", points(t0, s.avg_watch_time_ms, 0.001), gap),
          line("completion rate (%)", "#3fb67a", points(t0, s.completion_rate, 100), { yAxisID: "y1", ...gap })];
        Object.assign(wt.options.scales.x, bounds);
        wt.update("none");
      }
      const rt = chart("chart-rates", {
        type: "line", data: { datasets: [] },
        options: { scales: { x: timeAxis, y: { beginAtZero: true, title: { display: true, text: "% of views" } } },
          plugins: { tooltip: { mode: "index", intersect: false, callbacks: { title: (it) => fmt.clock(it[0].parsed.x) } } } },
      });
      if (rt) {
        rt.data.datasets = [line("like rate (%)", TYPE_COLORS.like, points(t0, s.like_rate, 100), gap),
          line("share rate (%)", TYPE_COLORS.share, points(t0, s.share_rate, 100), gap)];
        Object.assign(rt.options.scales.x, bounds);
        rt.update("none");
      }
      showEmpty("chart-watch", t.views === 0);
      showEmpty("chart-rates", t.views === 0);
    },
    renderTrending(items) {
      const body = $("#trending-table tbody");
      body.replaceChildren(...items.map((v) => clickableRow(el("tr", {},
        el("td", {}, v.rank), videoCell(v), el("td", {}, v.creator_id || "—"),
        el("td", { class: "num", dataset: { field: "views" } }, fmt.int(v.views)),
        el("td", { class: "num" }, fmt.pct(v.completion_rate)),
        el("td", { class: "num" }, fmt.secs(v.avg_watch_time_ms)),
        el("td", { class: "trend " + v.trend.direction, title: `${v.trend.recent_views_per_min} views/min recently vs ${v.trend.views_per_min} over the longer window` },
          TREND[v.trend.direction] || v.trend.direction)), v.video_id)));
      $("#trending-table").hidden = items.length === 0;
      $("#trending-empty").hidden = items.length > 0;
    },
  };
  $("#window-select").addEventListener("change", (e) => { live.minutes = Number(e.target.value); poll.now(); });

  // --- Video analytics ------------------------------------------------------------------------
  const video = {
    id: null,
    async refresh() {
      $("#video-empty").hidden = !!this.id;
      if (!this.id) { $("#video-body").hidden = true; $("#video-missing").hidden = true; return; }
      const { status, body } = await api(`/api/videos/${encodeURIComponent(this.id)}/analytics?minutes=30`);
      if (status === 404) {
        $("#video-body").hidden = true;
        $("#video-missing").hidden = false;
        $("#video-missing").textContent = `No video "${this.id}": it has no metadata and no engagement yet.`;
        return;
      }
      $("#video-missing").hidden = true;
      $("#video-body").hidden = false;
      this.render(body);
    },
    render(d) {
      const m = d.meta || {}, st = d.stats || {};
      $("#video-caption").textContent = m.caption || d.video_id;
      $("#video-sub").textContent = [d.video_id, m.creator_id && "by " + m.creator_id, m.category,
        isNum(m.duration_ms) && fmt.secs(m.duration_ms), isNum(m.created_at) && "published " + fmt.ago(m.created_at)].filter(Boolean).join(" · ");
      $("#video-tags").replaceChildren(...(m.hashtags || []).map((h) => el("span", { class: "tag" }, "#" + h)));
      const tb = $("#video-trend");
      tb.className = "trend-badge trend " + d.trend.direction;
      tb.textContent = TREND[d.trend.direction] || "";
      const root = $("#video-kpis");
      for (const k of ["views", "likes", "shares", "comments", "skips"]) setKpi(root, k, st[k] || 0, fmt.int(st[k] || 0));
      setKpi(root, "avg_watch_time_ms", st.avg_watch_time_ms, fmt.secs(st.avg_watch_time_ms));
      setKpi(root, "completion_rate", st.completion_rate, fmt.pct(st.completion_rate));

      const wd = chart("chart-watchdist", {
        type: "bar", data: { labels: [], datasets: [{ label: "views", data: [], backgroundColor: "#5aa9ffaa" }] },
        options: { plugins: { legend: { display: false } }, scales: { y: { beginAtZero: true, ticks: { precision: 0 } }, x: { grid: { display: false }, title: { display: true, text: "share of the video watched" } } } },
      });
      if (wd) { wd.data.labels = d.watch_time.labels; wd.data.datasets[0].data = d.watch_time.views; wd.update("none"); }
      showEmpty("chart-watchdist", !d.watch_time.views.some((v) => v > 0));
      $("#watchdist-note").textContent = d.watch_time.source === "histogram" ? "" :
        "Coarse: completed views against the rest (no per-video watch-ratio histogram is kept yet).";

      const names = { lifetime: "lifetime", long: "last hour", short: "last minute" };
      const hz = chart("chart-horizons", {
        type: "bar", data: { labels: [], datasets: [] },
        options: { scales: { y: { beginAtZero: true, title: { display: true, text: "% of views" } }, x: { grid: { display: false } } } },
      });
      if (hz) {
        hz.data.labels = d.windows.map((w) => names[w.name] + (w.current === false ? " (ended)" : ""));
        hz.data.datasets = [["completion_rate", "completion", "#3fb67a"], ["like_rate", "like", TYPE_COLORS.like],
          ["share_rate", "share", "#5aa9ff"], ["skip_rate", "skip", TYPE_COLORS.skip]].map(([k, label, c]) =>
          ({ label, data: d.windows.map((w) => (isNum(w[k]) ? w[k] * 100 : null)), backgroundColor: c + "cc" }));
        hz.update("none");
      }

      const tl = d.timeline;
      const tc = chart("chart-timeline", {
        type: "bar", data: { datasets: [] },
        options: { scales: { x: Object.assign({}, timeAxis, { offset: false }), y: { beginAtZero: true, ticks: { precision: 0 }, title: { display: true, text: "views" } },
          y1: { position: "right", min: 0, max: 100, grid: { display: false }, title: { display: true, text: "%" } } } },
      });
      if (tc && tl) {
        tc.data.datasets = [
          { type: "bar", label: `views per ${tl.step_s} s`, data: points(tl.t, tl.views), backgroundColor: "#5aa9ff88" },
          line("completion rate (%)", "#3fb67a", points(tl.t, tl.completion_rate, 100), { type: "line", yAxisID: "y1" }),
          line("engagement rate (%)", TYPE_COLORS.like, points(tl.t, tl.engagement_rate, 100), { type: "line", yAxisID: "y1" }),
        ];
        Object.assign(tc.options.scales.x, { min: tl.t[0], max: tl.t[tl.t.length - 1] + tl.step_s });
        tc.update("none");
      }
      $("#chart-timeline").hidden = !tl;
      $("#timeline-empty").hidden = !!tl;

      const list = $("#similar-list");
      list.replaceChildren(...d.similar.map((s) => {
        const li = el("li", { tabindex: "0", dataset: { videoId: s.video_id } },
          el("span", { class: "vid" }, el("span", { class: "cap" }, s.caption || "(no caption)"), el("span", { class: "id" }, s.video_id)),
          el("span", { class: "score" }, fmt.num(s.score, 3)));
        li.addEventListener("click", () => openVideo(s.video_id));
        li.addEventListener("keydown", (e) => { if (e.key === "Enter") openVideo(s.video_id); });
        return li;
      }));
      $("#similar-empty").hidden = d.similar.length > 0;
    },
  };
  $("#video-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const id = $("#video-input").value.trim();
    if (id) openVideo(id);
  });

  // --- Recommendations explorer -----------------------------------------------------------
  const users = {
    id: null, shownRecs: new Set(), shownHist: new Set(), shownFor: null,
    async refresh() {
      $("#user-empty").hidden = !!this.id;
      $("#user-body").hidden = !this.id;
      if (!this.id) return;
      const id = encodeURIComponent(this.id);
      const strategy = $("#strategy-select").value;
      const [hist, recs] = await Promise.all([api(`/api/users/${id}/history?k=20`),
        api(`/recommendations/${id}?k=20&preview=true${strategy ? "&strategy=" + encodeURIComponent(strategy) : ""}`)]);
      const items = recs.body.items || [];
      const meta = items.length ? (await api(`/api/videos?ids=${items.map((i) => encodeURIComponent(i.video_id)).join(",")}`)).body.videos : {};
      const fresh = this.shownFor === this.id;
      this.renderHistory(hist.body, fresh);
      this.renderRecs(recs.body, meta, fresh);
      this.shownFor = this.id;
    },
    renderHistory(d, flash) {
      $("#user-seen").textContent = `${d.seen} videos engaged with`;
      const before = this.shownHist;
      this.shownHist = new Set(d.history.map((h) => h.video_id + "@" + h.ts));
      $("#history-table tbody").replaceChildren(...d.history.map((h) => {
        const tr = clickableRow(el("tr", { class: flash && !before.has(h.video_id + "@" + h.ts) ? "fresh" : null },
          videoCell(h), el("td", { title: fmt.stamp(h.ts) }, fmt.ago(h.ts)),
          el("td", { class: "num " + (h.weight >= 0.005 ? "pos" : h.weight <= -0.005 ? "neg" : "") },
            (h.weight >= 0.005 ? "+" : "") + fmt.num(Math.abs(h.weight) < 0.005 ? 0 : h.weight, 2))), h.video_id);
        return tr;
      }));
      $("#history-table").hidden = d.history.length === 0;
      $("#history-empty").hidden = d.history.length > 0;
    },
    renderRecs(d, meta, flash) {
      const how = d.strategy ? `strategy ${d.strategy}${$("#strategy-select").value ? " (override)" : " (the user's bucket)"}` : "";
      $("#recs-model").textContent = [how, d.model_version ? `model ${d.model_version}` : "no ALS model used"].filter(Boolean).join(" · ");
      const before = this.shownRecs;
      this.shownRecs = new Set(d.items.map((i) => i.video_id));
      $("#recs-table tbody").replaceChildren(...d.items.map((item, i) => {
        const m = Object.assign({ video_id: item.video_id }, meta[item.video_id] || {});
        return clickableRow(el("tr", { class: flash && !before.has(item.video_id) ? "fresh" : null },
          el("td", {}, i + 1), videoCell(m), el("td", {}, m.creator_id || "—"),
          el("td", { class: "num", dataset: { field: "score" } }, item.score.toFixed(4)),
          el("td", {}, el("div", { class: "tags" }, item.reasons.map((r) =>
            el("span", { class: "reason " + (r.startsWith("because") ? "r-cf" : "r-" + r) }, r))))), item.video_id);
      }));
      $("#recs-table").hidden = d.items.length === 0;
      $("#recs-empty").hidden = d.items.length > 0;
    },
  };
  $("#strategy-select").addEventListener("change", () => poll.now());
  $("#user-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const id = $("#user-input").value.trim();
    if (id) location.hash = "#/users/" + encodeURIComponent(id);
  });

  // --- Model --------------------------------------------------------------------------------
  const model = {
    async refresh() {
      const { body } = await api("/api/model");
      this.render(body);
    },
    render(d) {
      const none = d.versions.length === 0 && !d.active_version;
      $("#model-empty").hidden = !none;
      $("#model-body").hidden = none;
      $("#model-error").hidden = !d.error;
      $("#model-error").textContent = d.error || "";
      $("#tab-model").dataset.state = d.state;
      this.renderClosedLoop(d.closed_loop);
      if (none) return;
      const a = d.active || d.versions[0] || {};
      const data = a.data || {};
      const facts = [
        ["Active version", d.active_version || "none (no version passed the gate)"],
        ["Status", a.status || "—"],
        ["Trained", fmt.stamp(a.created_at) + (isNum(a.created_at) ? ` (${fmt.ago(a.created_at)})` : "")],
        ["Activated", fmt.stamp(a.activated_at)],
        ["Data", isNum(data.events) ? `${fmt.int(data.events)} events · ${fmt.int(data.users)} users · ${fmt.int(data.videos)} videos` : "—"],
        ["Event time", isNum(data.min_ts) ? `${fmt.stamp(data.min_ts)} → ${fmt.stamp(data.max_ts)}` : "—"],
        ["Trained on", data.trained_on || "—"],
        ["Training time", isNum(a.training_s) ? a.training_s.toFixed(1) + " s" : "—"],
        ["Gate", a.gate ? `${a.gate.passed ? "passed" : "refused"}: ${a.gate.reason}` : "—"],
        ["Params", Object.entries(a.params || {}).filter(([k]) => ["rank", "reg_param", "alpha", "max_iter"].includes(k)).map(([k, v]) => `${k}=${v}`).join(" ") || "—"],
        ["Blend weights", Object.entries(a.blend || {}).map(([k, v]) => `${k}=${v}`).join(" ") || "— (the settings')"],
        ["Test slice (ndcg@10)", isNum((a.metrics || {})["ndcg@10"]) ? `ALS ${fmt.num(a.metrics["ndcg@10"], 4)} · popularity ${fmt.num((a.baseline || {})["ndcg@10"], 4)} · served blend ${fmt.num((a.served || {})["ndcg@10"], 4)}` : "—"],
        ["Tuning", a.tuning && a.tuning.als_trials ? `${a.tuning.als_trials.length} ALS trials (budget ${a.tuning.budget}) on ${fmt.int(a.tuning.rows)} rows, ${fmt.int(a.tuning.test_users)} test users` : "—"],
      ];
      $("#model-facts").replaceChildren(...facts.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));

      const tm = chart("chart-timings", {
        type: "bar", data: { labels: [], datasets: [{ label: "seconds", data: [], backgroundColor: "#b07aa1cc" }] },
        options: { indexAxis: "y", plugins: { legend: { display: false } }, scales: { x: { beginAtZero: true, title: { display: true, text: "s" } } } },
      });
      if (tm) {
        const t = Object.entries(a.timings || {}).filter(([, v]) => isNum(v));
        tm.data.labels = t.map(([k]) => k);
        tm.data.datasets[0].data = t.map(([, v]) => v);
        tm.update("none");
      }

      const metricNames = [...new Set(d.versions.flatMap((v) => Object.keys(v.metrics).filter((k) => k.includes("@"))))].sort();
      const head = el("tr", {}, el("th", {}, "Version"), el("th", {}, "Status"), el("th", {}, "Trained"),
        metricNames.map((k) => el("th", { class: "num" }, k)), el("th", { class: "num" }, "Users"), el("th", { class: "num" }, "Training"));
      $("#versions-table thead").replaceChildren(head);
      const rows = d.versions.map((v) => el("tr", { class: v.version === d.active_version ? "active-row" : null, dataset: { version: v.version } },
        el("td", {}, el("code", {}, v.version)), el("td", {}, v.status || "—"), el("td", {}, fmt.ago(v.created_at)),
        metricNames.map((k) => el("td", { class: "num" }, fmt.num(v.metrics[k], 4))),
        el("td", { class: "num" }, fmt.int(v.data.users)), el("td", { class: "num" }, isNum(v.training_s) ? v.training_s.toFixed(1) + " s" : "—")));
      if (a.baseline && Object.keys(a.baseline).length) {
        rows.push(el("tr", { class: "muted" }, el("td", {}, "popularity baseline"), el("td", {}, "(its test slice)"), el("td", {}),
          metricNames.map((k) => el("td", { class: "num" }, fmt.num(a.baseline[k], 4))), el("td", {}), el("td", {})));
      }
      $("#versions-table tbody").replaceChildren(...rows);

      const main = metricNames.find((k) => k.startsWith("ndcg@")) || metricNames[0];
      const vc = chart("chart-versions", {
        type: "line", data: { labels: [], datasets: [] },
        options: { scales: { y: { beginAtZero: true } } },
      });
      if (vc && main) {
        const vs = d.versions.slice().reverse();
        vc.data.labels = vs.map((v) => v.version);
        vc.data.datasets = [line(main, "#5aa9ff", vs.map((v) => v.metrics[main] ?? null), { pointRadius: 4, tension: 0 }),
          line(main + " popularity", "#8b95a3", vs.map((v) => v.baseline[main] ?? null), { pointRadius: 3, borderDash: [4, 4], tension: 0 })];
        vc.update("none");
      }
    },
    renderClosedLoop(loop) {
      const box = $("#closed-loop");
      if (!loop || !loop.strategies || !loop.strategies.length) {
        box.replaceChildren(el("p", { class: "empty" }, "No closed-loop results yet (recstream simulate --closed-loop)."));
        return;
      }
      const cols = [["watch_time_ms", "watch / impression", (v) => fmt.secs(v)], ["completion_rate", "completion", fmt.pct],
        ["like_rate", "like rate", fmt.pct], ["click_through", "click-through", fmt.pct],
        ["repeat_exposure", "repeat exposure", fmt.pct], ["taste", "hidden taste", (v) => fmt.num(v, 3)]];
      const best = Object.fromEntries(cols.map(([k]) => [k, Math.max(...loop.strategies.map((r) => (r[k] && isNum(r[k].mean) ? r[k].mean : -Infinity)))]));
      const cell = (r, k, f) => {
        const m = r[k] || {};
        return el("td", { class: "num" + (isNum(m.mean) && m.mean === best[k] ? " pos" : "") },
          f(m.mean), isNum(m.ci95) ? el("span", { class: "muted small" }, " ± " + f(m.ci95)) : null);
      };
      box.replaceChildren(
        el("p", { class: "note" }, `run ${loop.run_id} · ${fmt.stamp(loop.created_at)} · per-user means with 95% intervals`),
        el("div", { class: "scroll" }, el("table", { class: "table", id: "closed-loop-table" },
          el("thead", {}, el("tr", {}, el("th", {}, "Strategy"), el("th", { class: "num" }, "Users"), cols.map(([, label]) => el("th", { class: "num" }, label)))),
          el("tbody", {}, loop.strategies.map((r) => el("tr", { dataset: { strategy: r.strategy } }, el("td", {}, r.strategy),
            el("td", { class: "num" }, fmt.int(r.users)), cols.map(([k, , f]) => cell(r, k, f))))))));
    },
  };

  // --- Pipeline health ------------------------------------------------------------------------
  const pipeline = {
    async refresh() {
      const { body } = await api("/api/pipeline");
      this.render(body);
    },
    render(d) {
      const root = $("#pipeline-kpis");
      for (const [dep, state] of Object.entries(d.dependencies)) {
        const node = $(`[data-dep="${dep}"]`, root);
        if (!node) continue;
        node.dataset.state = state === "ok" ? "ok" : "bad";
        $(".value", node).textContent = state === "ok" ? "ok" : state;
        node.title = state;
      }
      setKpi(root, "lag_total", d.lag_total, fmt.int(d.lag_total));
      const f = d.freshness;
      const both = f && isNum(f.p50_ms) && isNum(f.p99_ms);
      setKpi(root, "freshness", both ? `${f.p50_ms}/${f.p99_ms}` : "",
        !both ? "—" : f.p99_ms < 1000 ? `${Math.round(f.p50_ms)} / ${Math.round(f.p99_ms)} ms` : `${fmt.ms(f.p50_ms)} / ${fmt.ms(f.p99_ms)}`);
      setSub(root, "freshness", !f ? "not measured by this worker" : f.count
        ? `event → visible · ${fmt.int(f.count)} event${f.count === 1 ? "" : "s"}${f.window_s ? ` in the last ${f.window_s} s` : " since start"}`
        : "event → visible · no events lately");
      const dl = d.dead_letters;
      setKpi(root, "dead_letters", dl.total, isNum(dl.total) ? fmt.int(dl.total) : "?");
      $("#pipeline-worker").textContent = `worker :${d.worker.port}${d.worker.rebalancing ? " · rebalancing" : ""}`;

      const assigned = Object.entries(d.worker.assigned_partitions).filter(([t]) => !t.includes("-changelog") && !t.includes("__assignor"));
      const processed = Object.entries(d.events_processed || {});
      $("#worker-facts").replaceChildren(...[
        ["Port", d.worker.port], ["Rebalancing", d.worker.rebalancing ? "yes" : "no"],
        ...assigned.map(([t, n]) => [t.split(".").pop(), `${n} partitions`]),
        ["Processed", processed.length ? processed.map(([k, v]) => `${k} ${fmt.int(v)}`).join(" · ") : "nothing yet"],
      ].flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));

      // One group of bars per partition number, one colour per source topic.
      const topics = [...new Set(d.consumer_lag.map((l) => l.topic))];
      const parts = [...new Set(d.consumer_lag.map((l) => l.partition))].sort((a, b) => a - b);
      const lag = chart("chart-lag", {
        type: "bar", data: { labels: [], datasets: [] },
        options: { scales: { y: { beginAtZero: true, suggestedMax: 10, ticks: { precision: 0 }, title: { display: true, text: "messages behind" } },
          x: { grid: { display: false }, title: { display: true, text: "partition" } } } },
      });
      if (lag) {
        const palette = ["#5aa9ff", "#e5a83b", "#3fb67a", "#b07aa1", "#ef5a7a"];
        lag.data.labels = parts.map(String);
        lag.data.datasets = topics.map((t, i) => ({ label: t.split(".").pop(), backgroundColor: palette[i % palette.length] + "cc", minBarLength: 2,
          data: parts.map((p) => (d.consumer_lag.find((l) => l.topic === t && l.partition === p) || {}).lag ?? null) }));
        lag.update("none");
      }
      $("#dead-table tbody").replaceChildren(...dl.recent.map((r) => el("tr", {},
        el("td", {}, fmt.ago(r.ts)), el("td", {}, `${(r.source_topic || "").split(".").pop()}[${r.partition}]@${r.offset}`),
        el("td", {}, r.reason), el("td", {}, el("code", {}, r.value)))));
      $("#dead-table").hidden = dl.recent.length === 0;
      $("#dead-empty").hidden = dl.recent.length > 0 || !isNum(dl.total);
    },
  };

  // --- routing and polling ----------------------------------------------------------------
  const views = { live, video, users, model, pipeline };
  let tab = "live";
  function route() {
    const [name, ...rest] = location.hash.replace(/^#\/?/, "").split("/");
    tab = views[name] ? name : "live";
    const id = rest.length ? decodeURIComponent(rest.join("/")) : null;
    if (tab === "video") { video.id = id; $("#video-input").value = id || ""; }
    if (tab === "users") { users.id = id; $("#user-input").value = id || ""; }
    for (const s of $$(".tab")) s.hidden = s.dataset.tab !== tab;
    for (const a of $$(".tabs a")) a.classList.toggle("active", a.dataset.tab === tab);
    poll.now();
  }

  const poll = {
    timer: null, running: false, again: false,
    async run() {
      if (this.running) { this.again = true; return; }
      this.running = true;
      clearTimeout(this.timer);
      const current = tab;
      try {
        await views[current].refresh();
        document.body.dataset.loaded = current;
      } catch (err) {
        if (!(err instanceof Unreachable) && !String(err).startsWith("Error: HTTP")) console.warn("dashboard:", err);
      } finally {
        this.running = false;
        if (this.again) { this.again = false; this.run(); return; }
        this.timer = setTimeout(() => this.run(), POLL_MS);
      }
    },
    now() { this.run(); },
  };

  window.addEventListener("hashchange", route);
  route();
})();
