// Opinion explorer: plain browser JavaScript, no framework, no network beyond this server's own API.
"use strict";
(() => {
  const root = document.body.dataset.root || "";
  const $ = (id) => document.getElementById(id);
  const FIELDS = ["token", "question", "options", "groups", "adapters", "human", "ask", "qn"];
  const ITEM_FIELDS = { question: "question", options: "options", ordinal: "options", subpopulation: "groups",
    steering_text: "groups", human: "human", adapter: "adapters" };
  const BY_ERROR = { "too many options": "options", "unknown subpopulation": "groups", "unknown adapter": "adapters",
    "prompt too long": "question", unauthorized: "token" };
  let token = sessionStorage.getItem("demoscope-token") || "";
  let info = null; // GET /v1/models: the model, adapters and limits
  let groups = []; // the listed subpopulations, {attribute, group}
  let shipped = []; // the questions in the shipped-question list
  let chosenShipped = null; // the shipped question the form holds, for its ordinal positions
  let table = []; // questionnaire results, for the downloads
  const blobUrls = [];

  class ApiFailure extends Error {
    constructor(status, body) {
      super(body && body.error ? body.error : `HTTP ${status}`);
      this.status = status;
      this.detail = body ? body.detail : null;
    }
  }

  /** Call the API; a failure becomes an ApiFailure holding the server's error and detail. */
  async function call(path, body) {
    const headers = {};
    if (token) headers.Authorization = `Bearer ${token}`;
    const init = { headers };
    if (body !== undefined) {
      init.method = "POST";
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(root + path, init);
    } catch (err) {
      throw new ApiFailure(0, { error: "no answer", detail: `the server did not answer (${err.message})` });
    }
    let data = null;
    try { data = await response.json(); } catch (err) { data = null; }
    if (!response.ok) {
      if (response.status === 401) askForToken();
      if (response.status === 503) {
        const retry = response.headers.get("Retry-After");
        if (retry && data) data.detail = `${data.detail || ""} (retry in ${retry} s)`;
      }
      throw new ApiFailure(response.status, data);
    }
    return data;
  }

  // ---- errors next to the field at fault ----
  function clearErrors() {
    for (const name of FIELDS) {
      const box = $(`${name}-error`);
      if (box) box.textContent = "";
    }
    for (const el of document.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
  }

  function showError(field, message, focus = true) {
    const box = $(`${field}-error`);
    box.textContent = message;
    const control = $(field === "ask" ? "run" : field === "qn" ? "qn-file" : field);
    if (!control) return;
    if (!["groups", "adapters", "ask"].includes(field)) control.setAttribute("aria-invalid", "true");
    if (focus) (control.querySelector("input") || control).focus();
  }

  /** Each problem of an API failure as {field, item, message}: 422 lists field paths, others name the error. */
  function problems(failure) {
    if (Array.isArray(failure.detail)) {
      return failure.detail.map((d) => {
        const parts = String(d.field || "").split(".");
        const item = parts[0] === "items" && /^\d+$/.test(parts[1] || "") ? Number(parts[1]) : null;
        let name = item === null ? "" : parts[2] || "";
        if (!name) name = ["human", "ordinal", "steering_text"].find((k) => String(d.problem).includes(k)) || "";
        const shown = parts.slice(item === null ? 0 : 2).join(".");
        return { field: ITEM_FIELDS[name] || "ask", item, message: `${shown ? shown + ": " : ""}${d.problem}` };
      });
    }
    const match = /items\[(\d+)\]/.exec(String(failure.detail || ""));
    const detail = failure.detail ? `: ${failure.detail}` : "";
    return [{ field: BY_ERROR[failure.message] || "ask", item: match ? Number(match[1]) : null,
      message: `${failure.message}${detail}` }];
  }

  function askForToken() {
    $("token-section").hidden = false;
    showError("token", token ? "The server refused this token; enter the right one." :
      "Enter the server's API token to use the explorer.");
  }

  // ---- loading what the server offers ----
  async function loadServer() {
    clearErrors();
    try {
      info = await call("/v1/models");
      $("token-section").hidden = true; // the token (if any) is accepted
      $("model-name").textContent = `${info.model} (${info.backend})`;
      renderAdapters();
      await loadGroups();
      await loadQuestions();
    } catch (failure) {
      if (failure.status !== 401) showError("ask", problems(failure)[0].message, false);
    }
  }

  /** Adapter choices; the base model is offered only when the server has no default adapter (null means that). */
  function adapterChoices() {
    const names = info ? info.adapters : [];
    return info && info.default_adapter ? names : [null, ...names];
  }
  const adapterLabel = (name) => (name === null ? "base" : name);

  function renderAdapters() {
    const box = $("adapters");
    box.replaceChildren();
    adapterChoices().forEach((name, i) => {
      const label = document.createElement("label");
      const input = document.createElement("input");
      input.type = "checkbox";
      input.value = name === null ? "" : name;
      input.checked = i < 2; // base against the first adapter, when there is one
      label.append(input, ` ${adapterLabel(name)}${name === null ? " model" : ""}`);
      box.append(label);
    });
  }

  async function loadGroups() {
    const set = document.querySelector('input[name="set"]:checked').value;
    const before = new Set(chosenGroups().map(key));
    const data = await call(`/v1/subpopulations?set=${set}`);
    groups = data.subpopulations;
    const box = $("groups");
    box.replaceChildren();
    const byAttribute = new Map();
    for (const g of [{ attribute: "", group: "" }, ...groups]) {
      if (!byAttribute.has(g.attribute)) byAttribute.set(g.attribute, []);
      byAttribute.get(g.attribute).push(g);
    }
    let n = 0;
    for (const [attribute, members] of byAttribute) {
      const fieldset = document.createElement("fieldset");
      const legend = document.createElement("legend");
      legend.textContent = attribute || "No group";
      fieldset.append(legend);
      for (const g of members) {
        const label = document.createElement("label");
        const input = document.createElement("input");
        input.type = "checkbox";
        input.id = `group-${n++}`;
        input.dataset.attribute = g.attribute;
        input.dataset.group = g.group;
        input.checked = before.has(key(g));
        label.htmlFor = input.id;
        label.append(input, g.attribute ? g.group : "Everyone (no steering)");
        fieldset.append(label);
      }
      box.append(fieldset);
    }
  }

  const key = (g) => `${g.attribute}/${g.group}`;
  const groupLabel = (g) => (g.attribute ? `${g.group} (${g.attribute})` : "Everyone");

  function chosenGroups() {
    return [...$("groups").querySelectorAll("input:checked")]
      .map((i) => ({ attribute: i.dataset.attribute, group: i.dataset.group }));
  }

  function chosenAdapters() {
    return [...$("adapters").querySelectorAll("input:checked")].map((i) => (i.value === "" ? null : i.value));
  }

  async function loadQuestions() {
    const q = $("search").value.trim();
    const data = await call(`/v1/questions?limit=100&q=${encodeURIComponent(q)}`);
    shipped = data.questions;
    const select = $("shipped");
    select.length = 1;
    shipped.forEach((x, i) => select.add(new Option(`${x.key}: ${x.question}`, String(i))));
    $("shipped-count").textContent = `${shipped.length} of ${data.total} matching questions listed`;
  }

  function pickShipped() {
    const x = shipped[Number($("shipped").value)];
    if (!$("shipped").value || !x) return;
    chosenShipped = x;
    $("question").value = x.question;
    $("options").value = x.options.join("\n");
  }

  // ---- building and sending items ----
  const lines = (text) => text.split(/\r?\n/).map((s) => s.trim()).filter((s) => s);

  function steer(g) {
    return g.attribute ? { attribute: g.attribute, group: g.group, steering: $("steering").value } : null;
  }

  /** Human shares typed as "group = 50 30 20" lines, by group key; a line must name a chosen group. */
  function parseHuman(text, chosen) {
    const found = new Map();
    for (const line of lines(text)) {
      const at = line.lastIndexOf("=");
      if (at < 0) throw new Error(`"${line}": write the group, "=", then the shares`);
      const name = line.slice(0, at).trim().toLowerCase();
      const shares = line.slice(at + 1).trim().split(/[\s,;|]+/).filter((s) => s).map(Number);
      if (!shares.length || shares.some((s) => !Number.isFinite(s))) {
        throw new Error(`"${line}": the shares must be numbers separated by spaces`);
      }
      const hits = chosen.filter((g) => g.attribute &&
        (g.group.toLowerCase() === name || key(g).toLowerCase() === name));
      if (hits.length !== 1) {
        throw new Error(hits.length ? `"${name}" names more than one chosen group: write ATTRIBUTE/group` :
          `"${line.slice(0, at).trim()}" is not one of the chosen groups`);
      }
      found.set(key(hits[0]), shares);
    }
    return found;
  }

  /** Send the items in requests of at most max_items, one after the other, showing "n of N requests". */
  async function send(items, progress, status) {
    const size = info ? info.max_items : 64;
    const total = Math.ceil(items.length / size);
    const results = [];
    progress.hidden = false;
    progress.max = total;
    progress.value = 0;
    try {
      for (let i = 0; i < total; i++) {
        status.textContent = `Request ${i + 1} of ${total} (${items.length} items)…`;
        let answer;
        try {
          answer = await call("/v1/opinions", { items: items.slice(i * size, (i + 1) * size) });
        } catch (failure) {
          failure.offset = i * size; // item indices in the error are relative to this request
          throw failure;
        }
        results.push(...answer.results);
        progress.value = i + 1;
      }
      status.textContent = `Done: ${total} of ${total} requests, ${items.length} items.`;
      return results;
    } catch (failure) {
      status.textContent = "Stopped: see the message.";
      throw failure;
    } finally {
      progress.hidden = true;
    }
  }

  async function ask(event) {
    event.preventDefault();
    clearErrors();
    const question = $("question").value.trim();
    const options = lines($("options").value);
    const chosen = chosenGroups();
    const adapters = chosenAdapters();
    if (!question) return showError("question", "Write a question, or pick a shipped one.");
    if (!chosen.length) return showError("groups", "Choose at least one group.");
    if (!adapters.length) return showError("adapters", "Choose at least one adapter.");
    let human;
    try { human = parseHuman($("human").value, chosen); } catch (err) { return showError("human", err.message); }
    const ordinal = chosenShipped && chosenShipped.question === question &&
      chosenShipped.options.join("\n") === options.join("\n") ? chosenShipped.ordinal : null;
    const items = [];
    for (const adapter of adapters) {
      for (const g of chosen) {
        const item = { question, options, subpopulation: steer(g), adapter };
        if (ordinal) item.ordinal = ordinal;
        if (human.has(key(g))) item.human = human.get(key(g));
        items.push(item);
      }
    }
    $("run").disabled = true;
    try {
      const results = await send(items, $("ask-progress"), $("ask-status"));
      renderCards(options, chosen, adapters, human, results);
      $("results").focus();
    } catch (failure) {
      const first = problems(failure)[0];
      showError(first.field, first.message);
    } finally {
      $("run").disabled = false;
    }
  }

  // ---- bars ----
  const pct = (x) => `${(100 * x).toFixed(1)}%`;

  function barRow(who, share, cls, adapter) {
    const row = document.createElement("div");
    row.className = "bar-row";
    const name = document.createElement("span");
    name.className = "who";
    name.textContent = who;
    const track = document.createElement("span");
    track.className = "track";
    const bar = document.createElement("span");
    bar.className = `bar ${cls}`;
    bar.style.width = `${(100 * share).toFixed(2)}%`;
    bar.dataset.share = String(share);
    bar.dataset.adapter = adapter;
    track.append(bar);
    const value = document.createElement("span");
    value.className = "pct";
    value.textContent = pct(share);
    row.append(name, track, value);
    return row;
  }

  function renderCards(options, chosen, adapters, human, results) {
    const legend = $("legend");
    legend.replaceChildren();
    const keys = adapters.map((a, i) => [adapterLabel(a), `s${i % 4}`]);
    if (human.size) keys.push(["humans", "human"]);
    for (const [name, cls] of keys) {
      const k = document.createElement("span");
      k.className = "key";
      const swatch = document.createElement("span");
      swatch.className = `bar ${cls}`;
      k.append(swatch, name);
      legend.append(k);
    }
    const cards = $("cards");
    cards.replaceChildren();
    chosen.forEach((g, gi) => {
      const card = document.createElement("article");
      card.className = "card";
      card.dataset.group = key(g);
      const title = document.createElement("h3");
      title.textContent = g.attribute ? g.group : "Everyone";
      if (g.attribute) {
        const small = document.createElement("small");
        small.textContent = ` ${g.attribute}`;
        title.append(small);
      }
      card.append(title);
      const own = adapters.map((_, ai) => results[ai * chosen.length + gi]);
      const shares = human.get(key(g));
      const sum = shares ? shares.reduce((a, b) => a + b, 0) : 0;
      options.forEach((option, oi) => {
        const block = document.createElement("div");
        block.className = "option";
        block.setAttribute("role", "group");
        block.setAttribute("aria-label", option);
        const name = document.createElement("div");
        name.className = "option-name";
        name.textContent = option;
        block.append(name);
        own.forEach((r, ai) => block.append(barRow(adapterLabel(adapters[ai]), r.distribution[oi], `s${ai % 4}`,
          adapterLabel(adapters[ai]))));
        if (shares && sum > 0) block.append(barRow("humans", shares[oi] / sum, "human", "humans"));
        card.append(block);
      });
      if (shares) {
        const wd = document.createElement("p");
        wd.className = "wd";
        wd.append("Wasserstein distance to the humans: ");
        own.forEach((r, ai) => {
          const v = document.createElement("span");
          v.className = "wasserstein";
          v.dataset.adapter = adapterLabel(adapters[ai]);
          v.dataset.wasserstein = r.wasserstein === null ? "" : String(r.wasserstein);
          v.textContent = `${ai ? ", " : ""}${adapterLabel(adapters[ai])} ${r.wasserstein === null ? "n/a (not ordinal)"
            : r.wasserstein.toFixed(3)}`;
          wd.append(v);
        });
        card.append(wd);
      }
      cards.append(card);
    });
  }

  // ---- questionnaire ----
  /** RFC 4180 CSV: quoted fields may hold commas, quotes ("") and line breaks. */
  function parseCsv(text) {
    const rows = [];
    let row = [], field = "", quoted = false;
    text = text.replace(/^\uFEFF/, "");
    for (let i = 0; i < text.length; i++) {
      const c = text[i];
      if (quoted) {
        if (c === '"' && text[i + 1] === '"') { field += '"'; i++; } else if (c === '"') quoted = false;
        else field += c;
      } else if (c === '"') quoted = true;
      else if (c === ",") { row.push(field); field = ""; } else if (c === "\n" || c === "\r") {
        if (c === "\r" && text[i + 1] === "\n") i++;
        row.push(field); rows.push(row); row = []; field = "";
      } else field += c;
    }
    if (field || row.length) { row.push(field); rows.push(row); }
    return rows.filter((r) => r.some((f) => f.trim()));
  }

  const list = (text) => (text || "").split("|").map((s) => s.trim()).filter((s) => s);

  /** Questionnaire rows as {row, question, options, ordinal, groups, human}; throws a message naming the row. */
  function readQuestionnaire(text, chosen) {
    const rows = parseCsv(text);
    if (!rows.length) throw new Error("the file is empty");
    const header = rows[0].map((h) => h.trim().toLowerCase());
    for (const need of ["question", "options"]) {
      if (!header.includes(need)) throw new Error(`the header has no "${need}" column (found: ${header.join(", ")})`);
    }
    const col = (r, name) => (header.includes(name) ? (r[header.indexOf(name)] || "").trim() : "");
    return rows.slice(1).map((r, i) => {
      const where = `row ${i + 2}`;
      const attribute = col(r, "attribute"), group = col(r, "group");
      const human = list(col(r, "human")).map(Number);
      const ordinal = list(col(r, "ordinal")).map(Number);
      if (Boolean(attribute) !== Boolean(group)) throw new Error(`${where}: give both attribute and group, or neither`);
      if (human.length && !group) throw new Error(`${where}: human shares need the row's attribute and group`);
      if ([...human, ...ordinal].some((x) => !Number.isFinite(x))) throw new Error(`${where}: a share is not a number`);
      if (!group && !chosen.length) throw new Error(`${where} names no group: choose groups above`);
      return { row: i + 2, question: col(r, "question"), options: list(col(r, "options")),
        ordinal: ordinal.length ? ordinal : null, groups: group ? [{ attribute, group }] : chosen,
        human: human.length ? human : null };
    });
  }

  async function runQuestionnaire(event) {
    event.preventDefault();
    clearErrors();
    const file = $("qn-file").files[0];
    if (!file) return showError("qn", "Choose a CSV file first.");
    const adapters = chosenAdapters();
    if (!adapters.length) return showError("adapters", "Choose at least one adapter.");
    let rows;
    try { rows = readQuestionnaire(await file.text(), chosenGroups()); } catch (err) {
      return showError("qn", `${file.name}: ${err.message}`);
    }
    const items = [], meta = [];
    for (const r of rows) {
      for (const g of r.groups) {
        for (const adapter of adapters) {
          const item = { question: r.question, options: r.options, subpopulation: steer(g), adapter };
          if (r.ordinal) item.ordinal = r.ordinal;
          if (r.human) item.human = r.human;
          items.push(item);
          meta.push({ r, g, adapter });
        }
      }
    }
    $("qn-run").disabled = true;
    try {
      const results = await send(items, $("qn-progress"), $("qn-status"));
      table = results.map((res, i) => ({ row: meta[i].r.row, question: meta[i].r.question, options: meta[i].r.options,
        attribute: meta[i].g.attribute || null, group: meta[i].g.group || null,
        steering: meta[i].g.attribute ? $("steering").value : null, adapter: meta[i].adapter,
        distribution: res.distribution, option_mass: res.option_mass, human: meta[i].r.human,
        wasserstein: res.wasserstein, model: res.model }));
      renderTable();
    } catch (failure) {
      const first = problems(failure)[0];
      const index = first.item === null ? null : first.item + (failure.offset || 0);
      const where = index === null ? "" : `row ${meta[index].r.row}, ${groupLabel(meta[index].g)}: `;
      showError("qn", `${where}${first.message}`);
    } finally {
      $("qn-run").disabled = false;
    }
  }

  const sharesText = (options, shares) => {
    if (!shares) return "";
    const sum = shares.reduce((a, b) => a + b, 0);
    return options.map((o, i) => `${o} ${pct(shares[i] / sum)}`).join("; ");
  };

  function renderTable() {
    const body = $("qn-table").tBodies[0];
    body.replaceChildren();
    for (const t of table) {
      const tr = body.insertRow();
      const cells = [String(t.row), t.question, groupLabel(t), adapterLabel(t.adapter),
        sharesText(t.options, t.distribution), sharesText(t.options, t.human),
        t.wasserstein === null ? "" : t.wasserstein.toFixed(3)];
      cells.forEach((text, i) => {
        const td = tr.insertCell();
        td.textContent = text;
        if (i === 6) td.className = "num";
      });
    }
    const cell = (v) => {
      const s = v === null || v === undefined ? "" : Array.isArray(v) ? v.join("|") : String(v);
      return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
    };
    const columns = ["row", "question", "options", "attribute", "group", "steering", "adapter", "model",
      "distribution", "option_mass", "human", "wasserstein"];
    const csv = [columns.join(","), ...table.map((t) => columns.map((c) => cell(t[c])).join(","))].join("\r\n");
    while (blobUrls.length) URL.revokeObjectURL(blobUrls.pop());
    for (const [id, text, type] of [["download-csv", csv + "\r\n", "text/csv"],
      ["download-json", JSON.stringify(table, null, 2), "application/json"]]) {
      const url = URL.createObjectURL(new Blob([text], { type }));
      blobUrls.push(url);
      $(id).href = url;
    }
    $("qn-results").hidden = false;
  }

  // ---- wiring ----
  let searchTimer = 0;
  $("search").addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => loadQuestions().catch((f) => showError("ask", problems(f)[0].message, false)), 250);
  });
  $("shipped").addEventListener("change", pickShipped);
  for (const radio of document.querySelectorAll('input[name="set"]')) {
    radio.addEventListener("change", () => loadGroups().catch((f) => showError("groups", problems(f)[0].message)));
  }
  $("all-groups").addEventListener("click", () => {
    for (const i of $("groups").querySelectorAll("input")) i.checked = true;
  });
  $("no-groups").addEventListener("click", () => {
    for (const i of $("groups").querySelectorAll("input")) i.checked = false;
  });
  $("ask").addEventListener("submit", ask);
  $("qn-form").addEventListener("submit", runQuestionnaire);
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    token = $("token").value.trim();
    sessionStorage.setItem("demoscope-token", token);
    loadServer();
  });
  loadServer();
})();
