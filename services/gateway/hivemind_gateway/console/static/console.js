/* Hive-Mind console: fills the server-rendered pages from the public /v1 API.
 *
 * Every call goes to this gateway with the session cookie (same origin); state-changing calls
 * carry the session's CSRF token in X-CSRF-Token. Data is put into the page as text nodes only
 * (never as HTML), so stored text cannot run as script.
 */
(function () {
  "use strict";

  var timers = [];

  // ---- small helpers ------------------------------------------------------------------------
  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }

  function problemText(status, data) {
    if (data && typeof data === "object") {
      if (data.detail) return data.detail;
      if (data.error && data.error.message) return data.error.message;
      if (data.title) return data.title;
    }
    return "HTTP " + status;
  }

  /** Call the API; resolves {ok, status, data}. */
  function api(method, path, body) {
    var headers = { Accept: "application/json" };
    if (method !== "GET" && method !== "HEAD") headers["X-CSRF-Token"] = csrfToken();
    var init = { method: method, headers: headers, credentials: "same-origin" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    return fetch(path, init).then(function (resp) {
      var type = resp.headers.get("content-type") || "";
      return resp.text().then(function (text) {
        var data = text;
        if (text && type.indexOf("json") >= 0) {
          try { data = JSON.parse(text); } catch (e) { data = text; }
        }
        if (resp.status === 401) {
          window.location.assign("/console/signin");
        }
        return { ok: resp.ok, status: resp.status, data: data };
      });
    }, function (err) {
      return { ok: false, status: 0, data: { detail: "the gateway did not answer (" + err + ")" } };
    });
  }

  function el(tag, attrs) {
    var node = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (k) {
        if (k === "text") node.textContent = attrs[k];
        else if (k === "onclick") node.addEventListener("click", attrs[k]);
        else if (attrs[k] !== null && attrs[k] !== undefined) node.setAttribute(k, attrs[k]);
      });
    }
    for (var i = 2; i < arguments.length; i++) {
      var child = arguments[i];
      if (child === null || child === undefined) continue;
      node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    }
    return node;
  }

  function fill(id) {
    var node = typeof id === "string" ? document.getElementById(id) : id;
    if (!node) return null;
    while (node.firstChild) node.removeChild(node.firstChild);
    for (var i = 1; i < arguments.length; i++) {
      if (arguments[i]) node.appendChild(arguments[i]);
    }
    return node;
  }

  function say(message, bad) {
    var status = document.getElementById("status");
    if (!status) return;
    status.textContent = message;
    status.className = bad ? "status bad" : "status";
  }

  function failed(what, result) {
    say(what + ": " + problemText(result.status, result.data) + " (" + result.status + ")", true);
  }

  function when(ts) {
    if (!ts) return "";
    var d = new Date(ts * 1000);
    return d.toISOString().replace("T", " ").slice(0, 19) + " UTC";
  }

  function fmt(value) {
    if (value === null || value === undefined) return "—";
    if (typeof value === "number") {
      return Number.isInteger(value) ? String(value) : value.toFixed(4).replace(/0+$/, "").replace(/\.$/, "");
    }
    if (typeof value === "object") return JSON.stringify(value);
    return String(value);
  }

  function bytes(n) {
    if (typeof n !== "number") return "—";
    var units = ["B", "KiB", "MiB", "GiB", "TiB"];
    var i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return n.toFixed(i ? 1 : 0) + " " + units[i];
  }

  /** A table: columns [{label, value(row) -> string|Node, num?}], rows. */
  function table(columns, rows, caption) {
    if (!rows || !rows.length) return el("p", { class: "hint", text: "Nothing here yet." });
    var head = el("tr");
    columns.forEach(function (c) {
      head.appendChild(el("th", { scope: "col", class: c.num ? "num" : null, text: c.label }));
    });
    var body = el("tbody");
    rows.forEach(function (row) {
      var tr = el("tr");
      columns.forEach(function (c) {
        var v = c.value(row);
        var td = el("td", { class: c.num ? "num" : null });
        td.appendChild(typeof v === "object" && v !== null && v.nodeType ? v : document.createTextNode(fmt(v)));
        tr.appendChild(td);
      });
      body.appendChild(tr);
    });
    return el("div", { class: "table-wrap" },
      el("table", null, caption ? el("caption", { text: caption }) : null, el("thead", null, head), body));
  }

  /** A definition list of an object's scalar fields (nested objects flattened one level). */
  function kv(obj) {
    var dl = el("dl", { class: "kv" });
    Object.keys(obj || {}).forEach(function (k) {
      var v = obj[k];
      if (v && typeof v === "object" && !Array.isArray(v)) {
        Object.keys(v).forEach(function (k2) {
          dl.appendChild(el("dt", { text: k + " · " + k2 }));
          dl.appendChild(el("dd", { text: fmt(v[k2]) }));
        });
      } else {
        dl.appendChild(el("dt", { text: k.replace(/_/g, " ") }));
        dl.appendChild(el("dd", { text: fmt(v) }));
      }
    });
    return dl;
  }

  function button(label, onclick, cls) {
    return el("button", { type: "button", class: cls || "secondary", onclick: onclick, text: label });
  }

  function mainFlag(name) {
    var main = document.getElementById("main");
    return main && main.getAttribute("data-" + name) === "true";
  }

  /** A uPlot line chart; series: [{label, values, stroke}], x: numbers. */
  function chart(id, x, series, opts) {
    var box = document.getElementById(id);
    if (!box) return;
    fill(box);
    if (!x.length || typeof window.uPlot !== "function") {
      box.appendChild(el("p", { class: "hint", text: "No data to chart yet." }));
      return;
    }
    var width = Math.max(260, Math.min(box.clientWidth || 600, 1000));
    var config = {
      width: width,
      height: 220,
      scales: { x: { time: !!(opts && opts.time) } },
      axes: [{}, {}],
      series: [{ label: (opts && opts.xLabel) || "x" }].concat(series.map(function (s) {
        return { label: s.label, stroke: s.stroke, width: 2, points: { show: true } };
      })),
    };
    if (opts && opts.xValues) config.axes[0].values = opts.xValues;
    new window.uPlot(config, [x].concat(series.map(function (s) { return s.values; })), box);
  }

  // ---- pager: lists paged by next_cursor --------------------------------------------------
  function pagedList(opts) {
    var state = { cursor: null, rows: [], query: null };
    var more = document.getElementById(opts.moreId);
    function render() {
      fill(opts.boxId, table(opts.columns, state.rows));
    }
    function load(reset) {
      if (reset) { state.cursor = null; state.rows = []; }
      var path = opts.path + (opts.path.indexOf("?") >= 0 ? "&" : "?") + "limit=" + (opts.limit || 20);
      if (state.cursor) path += "&cursor=" + encodeURIComponent(state.cursor);
      return api("GET", path).then(function (r) {
        if (!r.ok) {
          if (opts.missing && r.status === 404) {
            fill(opts.boxId, el("p", { class: "hint", text: opts.missing }));
            if (more) more.hidden = true;
            return;
          }
          return failed(opts.what, r);
        }
        state.rows = state.rows.concat(r.data.data || []);
        state.cursor = r.data.next_cursor || null;
        if (more) more.hidden = !state.cursor;
        render();
      });
    }
    function search(query) {
      return api("POST", opts.searchPath, opts.searchBody(query)).then(function (r) {
        if (!r.ok) return failed(opts.what + " search", r);
        state.rows = r.data.data || [];
        state.cursor = null;
        if (more) more.hidden = true;
        render();
      });
    }
    if (more) more.addEventListener("click", function () { load(false); });
    if (opts.searchForm) {
      var form = document.getElementById(opts.searchForm);
      form.addEventListener("submit", function (e) {
        e.preventDefault();
        var q = form.querySelector("input[type=search]").value.trim();
        if (q) search(q); else load(true);
      });
      var clear = document.getElementById(opts.clearId);
      if (clear) clear.addEventListener("click", function () {
        form.querySelector("input[type=search]").value = "";
        load(true);
      });
    }
    load(true);
    return { reload: function () { return load(true); } };
  }

  // ---- pages ----------------------------------------------------------------------------------
  var pages = {};

  pages.overview = function () {
    api("GET", "/").then(function (r) {
      if (!r.ok) return failed("services", r);
      var rows = Object.keys(r.data.services).map(function (name) {
        return { name: name, s: r.data.services[name] };
      });
      fill("services", table([
        { label: "Service", value: function (x) { return x.name; } },
        { label: "Status", value: function (x) {
          return el("span", { class: x.s.status === "ready" ? "ok" : "bad", text: x.s.status });
        } },
        { label: "Detail", value: function (x) { return x.s.detail || ""; } },
      ], rows, "Suite " + r.data.status + " · version " + r.data.version));
    });
    var previous = null;
    function stats() {
      api("GET", "/v1/stats").then(function (r) {
        if (!r.ok) return failed("stats", r);
        var redis = r.data.redis;
        if (!redis || redis.error) {
          fill("redis", el("p", { class: "hint", text: "Not reported." }));
        } else {
          var nodes = redis.nodes || {};
          fill("redis", kv({ topology: redis.topology, primaries: redis.primaries }),
            redis.nodes ? table([
              { label: "Node", value: function (n) { return n; } },
              { label: "Role", value: function (n) { return nodes[n].role; } },
              { label: "Replicas", num: true, value: function (n) { return nodes[n].connected_replicas; } },
              { label: "Memory", num: true, value: function (n) { return bytes(nodes[n].used_memory_bytes); } },
            ], Object.keys(nodes)) : null);
        }
        var req = r.data.requests;
        if (req && !req.error) {
          var now = Date.now() / 1000;
          var shown = Object.assign({}, req);
          if (previous) {
            var dt = Math.max(1, now - previous.at);
            shown.rate_per_s_now = (req.total - previous.total) / dt;
            shown.errors_per_s_now = (req.errors_5xx + req.errors_4xx - previous.errors) / dt;
          }
          previous = { at: now, total: req.total, errors: req.errors_5xx + req.errors_4xx };
          fill("requests", kv(shown));
        } else {
          fill("requests", el("p", { class: "hint", text: "Suite-wide request figures need an operator key." }));
        }
      });
    }
    stats();
    timers.push(setInterval(stats, 15000));
    api("GET", "/v1/models/versions").then(function (r) {
      if (!r.ok) return failed("model versions", r);
      var serving = (r.data.data || []).filter(function (v) { return v.status === "serving"; });
      fill("serving", serving.length ? kv(serving.reduce(function (acc, v) {
        acc[v.name] = v.version; return acc;
      }, {})) : el("p", { text: "The base model (no trained version promoted yet)." }));
    });
    api("GET", "/v1/learning/status").then(function (r) {
      if (!r.ok) return failed("learning status", r);
      fill("backlog", kv(r.data.samples));
    });
    api("GET", "/v1/rag/history?hours=48").then(function (r) {
      if (!r.ok) return failed("retrieval history", r);
      var buckets = r.data.buckets || [];
      var names = ["good", "weak", "miss", "fallback"];
      var colours = { good: "#0f5d2a", weak: "#b26b00", miss: "#9b1111", fallback: "#0b4f9c" };
      chart("quality-chart", buckets.map(function (b) { return b.start; }), names.map(function (n) {
        return { label: n, stroke: colours[n], values: buckets.map(function (b) { return b[n] || 0; }) };
      }), { time: true, xLabel: "hour" });
      fill("quality-table", table([
        { label: "Hour", value: function (b) { return when(b.start); } },
        { label: "good", num: true, value: function (b) { return b.good; } },
        { label: "weak", num: true, value: function (b) { return b.weak; } },
        { label: "miss", num: true, value: function (b) { return b.miss; } },
        { label: "fallback", num: true, value: function (b) { return b.fallback; } },
      ], buckets.filter(function (b) { return b.good + b.weak + b.miss + b.fallback > 0; }).slice(-12).reverse(),
      "Recent hours with retrievals"));
    });
  };

  pages.memory = function () {
    var canWrite = mainFlag("can-write");
    var facts;
    function editFact(f) {
      var form = el("form", { class: "stack" });
      var vid = "edit-" + Math.random().toString(36).slice(2);
      var value = el("textarea", { id: vid, rows: "3", required: "required" });
      value.value = f.value;
      var tags = el("input", { id: vid + "-tags", maxlength: "500" });
      tags.value = (f.tags || []).join(", ");
      form.appendChild(el("label", { for: vid, text: "New value of " + f.key }));
      form.appendChild(value);
      form.appendChild(el("label", { for: vid + "-tags", text: "Tags" }));
      form.appendChild(tags);
      form.appendChild(el("div", { class: "actions" },
        el("button", { type: "submit", text: "Save" }),
        button("Cancel", function () { facts.reload(); })));
      form.addEventListener("submit", function (e) {
        e.preventDefault();
        putFact(f.key, value.value, tags.value).then(function (ok) { if (ok) facts.reload(); });
      });
      return form;
    }
    function putFact(key, value, tags) {
      var body = { value: value, tags: tags.split(",").map(function (t) { return t.trim(); }).filter(Boolean) };
      return api("PUT", "/v1/facts/" + encodeURIComponent(key), body).then(function (r) {
        if (!r.ok) { failed("saving fact " + key, r); return false; }
        say("Saved fact " + key + ".");
        return true;
      });
    }
    var columns = [
      { label: "Key", value: function (f) { return f.key; } },
      { label: "Value", value: function (f) { return f.value; } },
      { label: "Tags", value: function (f) { return (f.tags || []).join(", "); } },
    ];
    if (canWrite) {
      columns.push({ label: "Actions", value: function (f) {
        var cell = el("div", { class: "actions" });
        cell.appendChild(button("Edit", function () { fill(cell, editFact(f)); cell.querySelector("textarea").focus(); }));
        cell.appendChild(button("Delete", function () {
          if (!window.confirm("Delete fact " + f.key + "?")) return;
          api("DELETE", "/v1/facts/" + encodeURIComponent(f.key)).then(function (r) {
            if (!r.ok) return failed("deleting fact " + f.key, r);
            say("Deleted fact " + f.key + ".");
            facts.reload();
          });
        }, "danger"));
        return cell;
      } });
    }
    facts = pagedList({
      what: "facts", path: "/v1/facts", boxId: "facts", moreId: "facts-more", columns: columns,
      searchForm: "fact-search", clearId: "fact-clear", searchPath: "/v1/facts/search",
      searchBody: function (q) { return { query: q, top_k: 20 }; },
    });
    var newForm = document.getElementById("fact-new");
    if (newForm) {
      var wanted = new URLSearchParams(window.location.search).get("fact_key");
      if (wanted) {
        document.getElementById("fact-new-key").value = wanted;
        document.getElementById("fact-new-box").open = true;
        document.getElementById("fact-new-value").focus();
      }
      newForm.addEventListener("submit", function (e) {
        e.preventDefault();
        putFact(newForm.key.value.trim(), newForm.value.value, newForm.tags.value).then(function (ok) {
          if (ok) { newForm.reset(); facts.reload(); }
        });
      });
    }
    pagedList({
      what: "memories", path: "/v1/memories", boxId: "memories", moreId: "memories-more",
      columns: [
        { label: "Text", value: function (m) { return m.text; } },
        { label: "Session", value: function (m) { return m.session_id || ""; } },
        { label: "Tags", value: function (m) { return (m.tags || []).join(", "); } },
        { label: "Stored", value: function (m) { return when(m.created_at); } },
      ],
      searchForm: "memory-search", clearId: "memory-clear", searchPath: "/v1/memories/search",
      searchBody: function (q) { return { query: q, top_k: 20 }; },
    });
    pagedList({
      // the table shows no context: none is sent (a page of whole contexts can be megabytes)
      what: "sessions", path: "/v1/sessions?preview_chars=0", boxId: "sessions", moreId: "sessions-more",
      columns: [
        { label: "Session", value: function (s) { return s.id; } },
        { label: "Task", value: function (s) { return s.task || ""; } },
        { label: "Memories", num: true, value: function (s) { return s.memories; } },
        { label: "Updated", value: function (s) { return when(s.updated_at); } },
      ],
    });
    pagedList({
      what: "documents", path: "/v1/docs", boxId: "docs", moreId: "docs-more",
      missing: "This gateway has no document library (/v1/docs).",
      // list rows are documents; search hits are chunks (cite, heading, text, score)
      columns: [
        { label: "Source", value: function (d) { return d.cite || d.source; } },
        { label: "Collection", value: function (d) { return d.collection; } },
        { label: "Content", value: function (d) {
          if (d.text !== undefined) return (d.heading ? d.heading + ": " : "") + d.text.slice(0, 400);
          return d.chunks + " chunks, " + d.tokens + " tokens (" + d.type + ")";
        } },
        { label: "Score or updated", value: function (d) {
          return d.score !== undefined ? fmt(d.score) : when(d.updated_at);
        } },
      ],
      searchForm: "doc-search", clearId: "doc-clear", searchPath: "/v1/docs/search",
      searchBody: function (q) { return { query: q, top_k: 20 }; },
    });
    var pg = document.getElementById("playground");
    pg.addEventListener("submit", function (e) {
      e.preventDefault();
      var body = { query: pg.query.value.trim(), budget_tokens: parseInt(pg.budget.value, 10) || 512, explain: true };
      api("POST", "/v1/rag/context", body).then(function (r) {
        if (!r.ok) return failed("retrieval", r);
        var d = r.data;
        var x = d.explain || {};
        document.getElementById("pg-result").hidden = false;
        document.getElementById("pg-quality").textContent = d.quality;
        document.getElementById("pg-method").textContent = d.method || "";
        document.getElementById("pg-tokens").textContent = x.used_tokens !== undefined
          ? x.used_tokens + " of " + x.budget_tokens + " tokens" : "";
        var injected = x.injected_text !== undefined ? x.injected_text : d.text;
        document.getElementById("pg-injected").textContent = injected || "(nothing would be injected)";
        var candidates = x.candidates || (d.items || []).map(function (i) {
          return { kind: i.kind, key: i.key, fused: i.score, injected: true, reason: "" };
        });
        fill("pg-candidates", table([
          { label: "Kind", value: function (c) { return c.kind; } },
          { label: "Key", value: function (c) { return c.key; } },
          { label: "Dense", num: true, value: function (c) { return c.dense; } },
          { label: "Lexical", num: true, value: function (c) { return c.lexical; } },
          { label: "Fused", num: true, value: function (c) { return c.fused; } },
          { label: "Injected", value: function (c) { return c.injected ? "yes" : (c.passed ? "passed, over budget" : "no"); } },
          { label: "Why", value: function (c) { return c.reason; } },
        ], candidates, "Candidates, best ranked first"));
        document.getElementById("pg-gate").textContent = x.gate ? JSON.stringify(x.gate, null, 2) : "";
        say("Retrieved: " + d.quality + ".");
      });
    });
  };

  pages.suggestions = function () {
    var canWrite = mainFlag("can-write");
    api("GET", "/v1/rag/suggestions?limit=50").then(function (r) {
      if (!r.ok) return failed("suggestions", r);
      var cols = [
        { label: "Topic", value: function (s) { return s.topic; } },
        { label: "Queries", num: true, value: function (s) { return s.queries; } },
        { label: "Examples", value: function (s) {
          var ul = el("ul");
          (s.examples || []).forEach(function (q) { ul.appendChild(el("li", { text: q })); });
          return ul;
        } },
      ];
      if (canWrite) {
        cols.push({ label: "Action", value: function (s) {
          return el("a", { href: "/console/memory?fact_key=" + encodeURIComponent(s.topic) + "#fact-new-box",
            text: "Add a fact", "aria-label": "Add a fact about " + s.topic });
        } });
      }
      fill("suggestions", table(cols, r.data.data, r.data.scanned + " weak or missed retrievals scanned"));
    });
  };

  function versionsChart(versions) {
    var lossKeys = {};
    versions.forEach(function (v) {
      Object.keys(v.metrics || {}).forEach(function (k) {
        if (/loss/.test(k) && typeof v.metrics[k] === "number") lossKeys[k] = true;
      });
    });
    var keys = Object.keys(lossKeys).sort();
    var palette = ["#0b4f9c", "#9b1111", "#0f5d2a", "#b26b00", "#5b2a86", "#333"];
    var labels = versions.map(function (v) { return v.name + "@" + v.version; });
    chart("loss-chart", versions.map(function (_, i) { return i; }), keys.map(function (k, i) {
      return { label: k, stroke: palette[i % palette.length], values: versions.map(function (v) {
        var m = (v.metrics || {})[k];
        return typeof m === "number" ? m : null;
      }) };
    }), { xLabel: "version", xValues: function (u, ticks) {
      return ticks.map(function (t) { return Number.isInteger(t) && labels[t] ? labels[t] : ""; });
    } });
  }

  /** Hints a person would draw from the loss of the latest versions (oldest first). */
  function lossHints(versions) {
    var hints = [];
    var scored = versions.filter(function (v) {
      var m = v.metrics || {};
      return typeof m.heldout_loss === "number" && typeof m.train_loss === "number";
    });
    if (scored.length >= 2) {
      var a = scored[scored.length - 2].metrics, b = scored[scored.length - 1].metrics;
      if (b.heldout_loss > a.heldout_loss && b.train_loss < a.train_loss) {
        hints.push("Over-fitting: held-out loss rising (" + fmt(a.heldout_loss) + " → " +
          fmt(b.heldout_loss) + ") while training loss falls.");
      }
    }
    // forgetting: the general answers' accuracy (or, for versions measured before it, the
    // general loss) against the first version measured on the same general set
    var latest = versions.length ? (versions[versions.length - 1].metrics || {}) : {};
    var same = versions.filter(function (v) {
      var m = v.metrics || {};
      return m.general_set === latest.general_set;
    });
    var withAcc = same.filter(function (v) { return typeof (v.metrics || {}).general_accuracy === "number"; });
    var withLoss = same.filter(function (v) { return typeof (v.metrics || {}).general_loss === "number"; });
    if (withAcc.length >= 2) {
      var a0 = withAcc[0].metrics.general_accuracy, a1 = withAcc[withAcc.length - 1].metrics.general_accuracy;
      if (a1 < a0 - 0.02) {
        hints.push("Forgetting: general answers' accuracy down " + (100 * (a0 - a1)).toFixed(1) +
          " points since " + withAcc[0].version + ".");
      }
    } else if (withLoss.length >= 2) {
      var first = withLoss[0].metrics.general_loss, last = withLoss[withLoss.length - 1].metrics.general_loss;
      if (last > first * 1.02) {
        hints.push("Forgetting: general loss up " + (100 * (last / first - 1)).toFixed(1) +
          "% since " + withLoss[0].version + ".");
      }
    }
    return hints;
  }

  /** "queued 0.4 s · train 61.2 s · …": how long a job spent in each stage it reached (the
   * last one until its latest update). */
  function stageTimes(job) {
    var started = job.stage_started || {};
    var names = Object.keys(started).sort(function (a, b) { return started[a] - started[b]; });
    return names.map(function (name, i) {
      var end = i + 1 < names.length ? started[names[i + 1]] : job.updated_at;
      return name + " " + Math.max(0, end - started[name]).toFixed(1) + " s";
    }).join(" · ");
  }

  pages.learning = function () {
    function load() {
      api("GET", "/v1/learning/status").then(function (r) {
        if (!r.ok) return failed("learning status", r);
        var samples = Object.assign({}, r.data.samples);
        var bySource = samples.by_source || {};
        delete samples.by_source;
        fill("samples", kv(samples));
        fill("by-source", table([
          { label: "Source", value: function (row) { return row.source; } },
          { label: "Accepted", num: true, value: function (row) { return row.counts.accepted || 0; } },
          { label: "Rejected", num: true, value: function (row) { return row.counts.rejected || 0; } },
          { label: "Not shared", num: true, value: function (row) { return row.counts.not_shared || 0; } },
        ], Object.keys(bySource).map(function (k) { return { source: k, counts: bySource[k] }; })));
        fill("orchestrator", kv(r.data.orchestrator));
        fill("jobs", table([
          { label: "Job", value: function (j) { return j.job_id; } },
          { label: "Status", value: function (j) { return j.status; } },
          { label: "Stage", value: function (j) { return j.stage; } },
          { label: "Version", value: function (j) { return j.version; } },
          { label: "Queued", value: function (j) { return when(j.created_at); } },
          { label: "Took", num: true, value: function (j) {
            return j.created_at && j.updated_at ? (j.updated_at - j.created_at).toFixed(1) + " s" : "";
          } },
          { label: "Stages", value: stageTimes },
          { label: "Error", value: function (j) { return j.error || ""; } },
        ], r.data.jobs));
        if (r.data.dead_letters !== undefined) {
          fill("dead-letters", table([
            { label: "Job", value: function (d) { return d.job_id; } },
            { label: "Reason", value: function (d) { return d.reason; } },
            { label: "When", value: function (d) { return when(d.at || d.ts); } },
          ], r.data.dead_letters));
        } else {
          fill("dead-letters", el("p", { class: "hint", text: "Dead letters are suite-wide: an operator key sees them." }));
        }
      });
    }
    load();
    api("GET", "/v1/models/versions").then(function (r) {
      if (!r.ok) return failed("model versions", r);
      var versions = (r.data.data || []).slice().sort(function (a, b) { return a.created_at - b.created_at; });
      versionsChart(versions);
      var hints = lossHints(versions);
      fill("hints", hints.length ? el("ul", null) : null);
      hints.forEach(function (h) { document.querySelector("#hints ul").appendChild(el("li", { text: h })); });
      fill("gate", table([
        { label: "Version", value: function (v) { return v.name + "@" + v.version; } },
        { label: "Status", value: function (v) { return v.status; } },
        { label: "Figures", value: function (v) { return kv(v.metrics || {}); } },
      ], versions, "The gate's figures per version"));
    });
    var form = document.getElementById("train-now");
    if (form) form.addEventListener("submit", function (e) {
      e.preventDefault();
      api("POST", "/v1/learning/train", { model: form.model.value.trim() || "default" }).then(function (r) {
        if (!r.ok) return failed("train now", r);
        say("Queued learning job " + r.data.job_id + ".");
        load();
      });
    });
  };

  pages.models = function () {
    var operator = mainFlag("is-operator");
    function load() {
      api("GET", "/v1/models/versions").then(function (r) {
        if (!r.ok) return failed("model versions", r);
        var versions = r.data.data || [];
        var cols = [
          { label: "Model", value: function (v) { return v.name; } },
          { label: "Version", value: function (v) { return v.version; } },
          { label: "Status", value: function (v) { return v.status; } },
          { label: "Created", value: function (v) { return when(v.created_at); } },
          { label: "Metrics", value: function (v) { return kv(v.metrics || {}); } },
        ];
        if (operator) {
          cols.push({ label: "Actions", value: function (v) {
            var cell = el("div", { class: "actions" });
            if (v.status !== "serving" && v.status !== "failed") {
              cell.appendChild(button("Promote " + v.version, function () {
                if (!window.confirm("Serve " + v.name + " version " + v.version + " now?")) return;
                say("Promoting " + v.version + "…");
                api("POST", "/v1/models/" + encodeURIComponent(v.name) + "/promote", { version: v.version }).then(function (p) {
                  if (!p.ok) return failed("promote", p);
                  say("Serving " + p.data.name + " " + p.data.version + " (was " + fmt(p.data.previous_version) + ").");
                  load();
                });
              }));
            }
            if (v.status === "serving") {
              cell.appendChild(button("Roll back " + v.name, function () {
                if (!window.confirm("Serve the previous version of " + v.name + " again?")) return;
                api("POST", "/v1/models/" + encodeURIComponent(v.name) + "/rollback").then(function (p) {
                  if (!p.ok) return failed("roll back", p);
                  say("Serving " + p.data.name + " " + p.data.version + " again.");
                  load();
                });
              }, "danger"));
            }
            return cell;
          } });
        }
        fill("versions", table(cols, versions));
      });
    }
    load();
    api("GET", "/v1/stats").then(function (r) {
      if (!r.ok) return failed("stats", r);
      var disk = r.data.disk;
      if (!disk || disk.error) {
        fill("disk", el("p", { class: "hint", text: "Disk use is suite-wide: an operator key sees it." }));
        return;
      }
      fill("disk", el("div", null, kv({ data_dir_free: bytes(disk.free_bytes), data_dir_size: bytes(disk.total_bytes),
        models: bytes(disk.models_bytes) }), table([
        { label: "Version", value: function (v) { return v.name + "@" + v.version; } },
        { label: "On disk", num: true, value: function (v) { return bytes(v.bytes); } },
      ], disk.versions || [], "Model versions on disk")));
    });
  };

  pages.keys = function () {
    var operator = mainFlag("is-operator");
    function load() {
      api("GET", "/v1/keys").then(function (r) {
        if (!r.ok) return failed("keys", r);
        fill("keys", table([
          { label: "Key id", value: function (k) { return k.key_id; } },
          { label: "Name", value: function (k) { return k.name; } },
          { label: "Tenant", value: function (k) { return k.tenant; } },
          { label: "Role", value: function (k) { return k.role; } },
          { label: "Created", value: function (k) { return when(k.created_at); } },
          { label: "State", value: function (k) {
            if (k.revoked) return el("span", { class: "bad", text: "revoked" });
            var own = k.key_id === document.getElementById("main").getAttribute("data-key-id");
            return el("div", { class: "actions" }, own ? el("span", { text: "this session's key" }) : null,
              button("Revoke " + k.key_id, function () {
              var warning = own ? " This session uses it: you will be signed out." : "";
              if (!window.confirm("Revoke key " + k.key_id + "? Anything using it stops working." + warning)) return;
              api("DELETE", "/v1/keys/" + encodeURIComponent(k.key_id)).then(function (d) {
                if (!d.ok) return failed("revoke", d);
                say("Revoked key " + k.key_id + ".");
                load();
              });
            }, "danger"));
          } },
        ], r.data.data));
      });
    }
    load();
    var form = document.getElementById("key-new");
    form.addEventListener("submit", function (e) {
      e.preventDefault();
      var body = { role: form.role.value, name: form.name.value.trim() };
      if (operator && form.tenant && form.tenant.value.trim()) body.tenant = form.tenant.value.trim();
      api("POST", "/v1/keys", body).then(function (r) {
        if (!r.ok) return failed("create key", r);
        document.getElementById("key-plaintext").textContent = r.data.key;
        var box = document.getElementById("key-created");
        box.hidden = false;
        document.getElementById("key-plaintext").focus();
        say("Created key " + r.data.key_id + " (" + r.data.role + ", tenant " + r.data.tenant + ").");
        form.reset();
        load();
      });
    });
    document.getElementById("key-dismiss").addEventListener("click", function () {
      document.getElementById("key-plaintext").textContent = "";
      document.getElementById("key-created").hidden = true;
    });
  };

  // ---- start ----------------------------------------------------------------------------------
  function init() {
    var main = document.getElementById("main");
    if (!main || main.getAttribute("data-ready") === "true") return;
    main.setAttribute("data-ready", "true");
    while (timers.length) clearInterval(timers.pop());
    var start = pages[main.getAttribute("data-page")];
    if (start) start();
  }

  document.addEventListener("DOMContentLoaded", init);
  document.addEventListener("htmx:afterSettle", init);
  if (document.readyState !== "loading") init();
})();
