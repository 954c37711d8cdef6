/* The identity graph picture on the customer profile: an SVG drawn from the JSON the page embeds
   (#identity-graph-data, from stitching.selectors.identity_graph). No libraries, deterministic layout:
   events on a time axis in the middle, identifiers in one row per stitching category above and below it, each
   placed over the events that brought it. Click two identifiers to ask the API why they are one customer. */
(function () {
  "use strict";

  const SVG = "http://www.w3.org/2000/svg";
  const CATEGORY_COLORS = { user_id: "#7c3aed", email: "#2563eb", phone: "#16a34a", cookie: "#d97706" };
  const PALETTE = ["#0891b2", "#db2777", "#65a30d", "#9333ea", "#ea580c", "#0d9488", "#4f46e5", "#be123c"];
  const EVENT_COLORS = ["#64748b", "#0ea5e9", "#f59e0b", "#10b981", "#8b5cf6", "#ef4444", "#14b8a6", "#f97316"];
  const ROW_GAP = 58;
  const PILL_H = 24;
  const LANE_GAP = PILL_H + 8;
  const LANES_MAX = 4;
  const LANE_SLACK = 40; // px right of where an identifier belongs before it takes another lane

  function hash(text) {
    let h = 0;
    for (let i = 0; i < text.length; i++) h = (h * 31 + text.charCodeAt(i)) | 0;
    return Math.abs(h);
  }

  function el(name, attrs, parent) {
    const node = document.createElementNS(SVG, name);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
    if (parent) parent.appendChild(node);
    return node;
  }

  function categoryColor(category, order) {
    if (CATEGORY_COLORS[category]) return CATEGORY_COLORS[category];
    return PALETTE[Math.max(0, order.indexOf(category)) % PALETTE.length];
  }

  // Times in the admin's display time zone (data.timezone), as the rest of the page shows them; the data and the
  // "why" API give them in UTC.
  let zoneFormat = null;

  function zoneFormatSet(zone) {
    try {
      zoneFormat = new Intl.DateTimeFormat("en-GB", {
        timeZone: zone || "UTC", year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit",
        hourCycle: "h23",
      });
    } catch (error) {
      zoneFormat = null; // an unknown zone: as given
    }
  }

  function shortTime(iso) {
    if (!iso) return "";
    const date = new Date(iso);
    if (!zoneFormat || isNaN(date)) return iso.replace("T", " ").slice(0, 16);
    const p = Object.fromEntries(zoneFormat.formatToParts(date).map((part) => [part.type, part.value]));
    return `${p.year}-${p.month}-${p.day} ${p.hour}:${p.minute}`;
  }

  function layout(data, width) {
    const events = data.nodes.filter((n) => n.kind === "event");
    events.sort((a, b) => (a.event_time < b.event_time ? -1 : a.event_time > b.event_time ? 1 : a.event_id - b.event_id));
    const identifiers = data.nodes.filter((n) => n.kind === "identifier");
    const known = (data.categories || []).map((c) => c.id);
    const present = [...new Set(identifiers.map((n) => n.category))];
    const rows = known.filter((c) => present.includes(c)).concat(present.filter((c) => !known.includes(c)).sort());
    const above = rows.slice(0, Math.ceil(rows.length / 2));
    const below = rows.slice(above.length);

    const left = 60;
    const step = events.length > 1 ? Math.max(36, (width - 2 * left) / (events.length - 1)) : 0;
    const eventX = events.map((event, i) => (events.length > 1 ? left + i * step : width / 2));

    const neighbours = {};
    for (const edge of data.edges) {
      (neighbours[edge.source] = neighbours[edge.source] || []).push(edge.target);
      (neighbours[edge.target] = neighbours[edge.target] || []).push(edge.source);
    }
    const xOf = Object.fromEntries(events.map((event, i) => [event.id, eventX[i]]));
    // Each category's identifiers over the events that brought them, in lanes: one that would land far right of
    // its events (many cookies over a few events) opens another lane, up to LANES_MAX.
    let right = left + Math.max(0, events.length - 1) * step + left;
    const lanes = {};
    for (const category of rows) {
      const row = identifiers.filter((n) => n.category === category);
      for (const node of row) {
        const xs = (neighbours[node.id] || []).map((id) => xOf[id]).filter((x) => x !== undefined);
        node._want = xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : left;
        node._w = Math.min(230, 30 + node.value.length * 7);
      }
      row.sort((a, b) => a._want - b._want || a.identifier_id - b.identifier_id);
      const edges = [];
      for (const node of row) {
        const wanted = Math.max(node._want - node._w / 2, 8);
        let lane = -1;
        let x = Infinity;
        edges.forEach((edge, i) => {
          const at = Math.max(wanted, edge);
          if (at < x) { lane = i; x = at; }
        });
        if ((lane < 0 || x - wanted > LANE_SLACK) && edges.length < LANES_MAX) {
          edges.push(8);
          lane = edges.length - 1;
          x = wanted;
        }
        node._lane = lane;
        node._x = x;
        edges[lane] = x + node._w + 10;
      }
      lanes[category] = edges.length;
      right = Math.max(right, ...edges.map((edge) => edge + 20));
    }

    // Rows top to bottom: the categories above the time axis, the axis, the others.
    const rowY = {};
    let y = 34;
    for (const category of above) {
      rowY[category] = y;
      y += ROW_GAP + (lanes[category] - 1) * LANE_GAP;
    }
    const eventY = y + 26;
    y = eventY + 72;
    for (const category of below) {
      rowY[category] = y;
      y += ROW_GAP + (lanes[category] - 1) * LANE_GAP;
    }
    const pos = {};
    events.forEach((event, i) => (pos[event.id] = { x: eventX[i], y: eventY }));
    for (const node of identifiers) {
      pos[node.id] = { x: node._x + node._w / 2, y: rowY[node.category] + node._lane * LANE_GAP, w: node._w };
    }
    const height = y + (below.length ? 0 : 10);
    return { events, identifiers, rows, rowY, pos, eventY, width: Math.max(width, right), height, neighbours };
  }

  function draw(container, data, detail) {
    container.innerHTML = "";
    const available = Math.max(480, container.parentElement.clientWidth - 2);
    const order = (data.categories || []).map((c) => c.id);
    const names = Object.fromEntries((data.categories || []).map((c) => [c.id, c.name]));
    const g = layout(data, available);
    const svg = el("svg", { width: g.width, height: g.height, role: "img", "aria-label": "Identity graph" }, container);

    // The time axis; the category row labels are drawn last (over everything) and follow the scroll (see init).
    el("line", { x1: 20, x2: g.width - 20, y1: g.eventY, y2: g.eventY, stroke: "#cbd5e1", "stroke-dasharray": "2 4" }, svg);
    const spacing = g.events.length > 1 ? g.pos[g.events[1].id].x - g.pos[g.events[0].id].x : 999;
    if (spacing >= 70) {
      // Room for a label under every event: its type and time.
      const chars = Math.max(14, Math.floor(Math.min(spacing, 160) / 6.5));
      for (const event of g.events) {
        const p = g.pos[event.id];
        const type = el("text", { x: p.x, y: p.y + 22, fill: "#475569", "text-anchor": "middle", "font-size": 11 }, svg);
        type.textContent = event.type.length > chars ? event.type.slice(0, chars - 1) + "…" : event.type;
        const time = el("text", { x: p.x, y: p.y + 35, fill: "#94a3b8", "text-anchor": "middle", "font-size": 10 }, svg);
        time.textContent = shortTime(event.event_time).slice(5);
      }
    } else if (g.events.length) {
      const first = g.events[0], last = g.events[g.events.length - 1];
      const t1 = el("text", { x: g.pos[first.id].x, y: g.eventY + 26, fill: "#64748b", "text-anchor": "start" }, svg);
      t1.textContent = shortTime(first.event_time);
      if (last !== first) {
        const t2 = el("text", { x: g.pos[last.id].x, y: g.eventY + 26, fill: "#64748b", "text-anchor": "end" }, svg);
        t2.textContent = shortTime(last.event_time);
      }
    }

    const edgeEls = [];
    const edgeLayer = el("g", {}, null);
    svg.insertBefore(edgeLayer, svg.firstChild); // under the labels and nodes
    for (const edge of data.edges) {
      const a = g.pos[edge.source], b = g.pos[edge.target];
      if (!a || !b) continue;
      const target = data.nodes.find((n) => n.id === edge.target);
      const refused = edge.status !== "linked";
      const midY = (a.y + b.y) / 2;
      const path = el("path", {
        d: `M${a.x},${a.y} C${a.x},${midY} ${b.x},${midY} ${b.x},${b.y + (b.y < a.y ? PILL_H / 2 : -PILL_H / 2)}`,
        fill: "none",
        stroke: refused ? "#dc2626" : categoryColor(target.category, order),
        "stroke-width": refused ? 1.5 : 1.4,
        "stroke-opacity": refused ? 0.9 : 0.55,
        "stroke-dasharray": refused ? "5 4" : "",
        class: "cp-edge",
        "data-status": edge.status,
      }, edgeLayer);
      const title = el("title", {}, path);
      title.textContent = refused ? `refused (${edge.status}): ${edge.reason}` : `linked by ${edge.path || "a rule"}`;
      edgeEls.push({ edge, path });
    }

    const nodeEls = {};
    for (const event of g.events) {
      const p = g.pos[event.id];
      const group = el("g", { class: "cp-node", "data-node": event.id, "data-kind": "event" }, svg);
      el("circle", { cx: p.x, cy: p.y, r: 8, fill: EVENT_COLORS[hash(event.type) % EVENT_COLORS.length], stroke: "#fff", "stroke-width": 2 }, group);
      el("title", {}, group).textContent = `${event.type} · ${event.source_name} · ${shortTime(event.event_time)}`;
      nodeEls[event.id] = group;
    }
    for (const node of g.identifiers) {
      const p = g.pos[node.id];
      const color = categoryColor(node.category, order);
      const group = el("g", { class: "cp-node", "data-node": node.id, "data-kind": "identifier" }, svg);
      el("rect", { x: p.x - p.w / 2, y: p.y - PILL_H / 2, width: p.w, height: PILL_H, rx: 12, fill: "#fff", stroke: color, "stroke-width": 1.5 }, group);
      const text = el("text", { x: p.x, y: p.y + 4, fill: color, "text-anchor": "middle" }, group);
      text.textContent = node.value.length > 30 ? node.value.slice(0, 29) + "…" : node.value;
      el("title", {}, group).textContent = `${names[node.category] || node.category}: ${node.value}`;
      nodeEls[node.id] = group;
    }

    const labels = el("g", { class: "cp-graph-labels" }, svg);
    for (const category of g.rows) {
      const y = g.rowY[category] - PILL_H / 2 - 6;
      const text = el("text", { x: 8, y, fill: categoryColor(category, order), "font-weight": 600 }, labels);
      text.textContent = names[category] || category;
      // A backing as wide as the text, so a label over a pill or an edge stays legible.
      const box = text.getBBox();
      const back = el("rect", { x: box.x - 4, y: box.y - 1, width: box.width + 8, height: box.height + 2, rx: 3, class: "cp-label-back" }, null);
      labels.insertBefore(back, text);
    }
    labelsFollow(container.parentElement, labels);

    function describe(node) {
      if (node.kind === "event") {
        return `Event ${node.type} from ${node.source_name} at ${shortTime(node.event_time)} (#${node.event_id})`;
      }
      const other = node.customer_entity_id && node.customer_entity_id !== data.customer_entity_id
        ? " — belongs to another customer" : "";
      return `${names[node.category] || node.category} ${node.value}, first seen ${shortTime(node.first_seen)}${other}`;
    }

    function highlight(id) {
      const keep = new Set([id, ...(g.neighbours[id] || [])]);
      for (const [nodeId, group] of Object.entries(nodeEls)) group.classList.toggle("cp-dim", id !== null && !keep.has(nodeId));
      for (const { edge, path } of edgeEls) path.classList.toggle("cp-dim", id !== null && edge.source !== id && edge.target !== id);
    }

    let selected = [];
    function clearPath() {
      for (const { path } of edgeEls) path.classList.remove("cp-path-edge");
      for (const group of Object.values(nodeEls)) group.classList.remove("cp-selected");
    }

    function explain(a, b) {
      const params = new URLSearchParams({ from_category: a.category, from_value: a.value, to_category: b.category, to_value: b.value });
      detail.textContent = "Looking for the chain of events that links them…";
      fetch(`/api/stitching/path?${params}`, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then((response) => response.json().then((body) => ({ ok: response.ok, body })))
        .then(({ ok, body }) => {
          if (!ok) { detail.textContent = body.message || "They are not linked."; return; }
          const ids = body.path.map((step) => step.id);
          for (let i = 0; i + 1 < ids.length; i++) {
            for (const { edge, path } of edgeEls) {
              const pair = [edge.source, edge.target];
              if (pair.includes(ids[i]) && pair.includes(ids[i + 1])) path.classList.add("cp-path-edge");
            }
          }
          detail.innerHTML = "";
          const head = document.createElement("div");
          head.textContent = `Why one customer: ${body.events} event(s) link them.`;
          const list = document.createElement("ol");
          for (const step of body.path) {
            const item = document.createElement("li");
            item.textContent = describe(step);
            list.appendChild(item);
          }
          detail.append(head, list);
        })
        .catch(() => { detail.textContent = "Could not ask why (network error)."; });
    }

    for (const node of data.nodes) {
      const group = nodeEls[node.id];
      if (!group) continue;
      group.addEventListener("mouseenter", () => { highlight(node.id); if (selected.length !== 1) detail.textContent = describe(node); });
      group.addEventListener("mouseleave", () => highlight(null));
      if (node.kind !== "identifier") continue;
      group.addEventListener("click", () => {
        if (selected.length === 2) { selected = []; clearPath(); }
        selected.push(node);
        group.classList.add("cp-selected");
        if (selected.length === 1) detail.textContent = `${describe(node)} — now click another identifier.`;
        else explain(selected[0], selected[1]);
      });
    }
  }

  function labelsFollow(scroller, labels) {
    labels.setAttribute("transform", `translate(${scroller.scrollLeft},0)`);
  }

  function init() {
    const container = document.getElementById("identity-graph");
    const source = document.getElementById("identity-graph-data");
    if (!container || !source) return;
    const data = JSON.parse(source.textContent);
    zoneFormatSet(data.timezone);
    const detail = document.getElementById("identity-graph-detail");
    if (!data.nodes.length) {
      container.innerHTML = '<p class="cp-muted" style="padding:16px">No identifiers yet.</p>';
      return;
    }
    draw(container, data, detail);
    // A graph wider than the page opens on its right end: the newest events, what a marketer looks at first (the
    // row labels stay at the left edge of what is shown).
    container.parentElement.scrollLeft = container.parentElement.scrollWidth;
    container.parentElement.addEventListener("scroll", () => {
      const labels = container.querySelector(".cp-graph-labels");
      if (labels) labelsFollow(container.parentElement, labels);
    }, { passive: true });
    // Redrawn when the width changes only: a height change (a full-page screenshot, a mobile toolbar) would
    // otherwise throw away the identifiers the user picked.
    let timer = null;
    let width = container.clientWidth;
    window.addEventListener("resize", () => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        if (container.clientWidth === width) return;
        width = container.clientWidth;
        draw(container, data, detail);
      }, 150);
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
