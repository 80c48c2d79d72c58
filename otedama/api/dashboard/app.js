/* Otedama dashboard: plain JS, no build step. Reads /api/v1 and listens on /api/v1/ws. */
"use strict";
(function () {
  const API = "/api/v1";
  const $ = (id) => document.getElementById(id);
  const charts = {};
  let socket = null;
  let minerTopic = null;

  function hashrate(h) {
    if (h == null) return "–";
    const units = ["H/s", "kH/s", "MH/s", "GH/s", "TH/s", "PH/s", "EH/s"];
    let i = 0;
    while (h >= 1000 && i < units.length - 1) { h /= 1000; i++; }
    return h.toFixed(h < 10 ? 2 : 1) + " " + units[i];
  }
  function coins(sats) { return (sats / 1e8).toFixed(8); }
  function shortCoins(sats) { return (sats / 1e8).toFixed(8).replace(/0+$/, "").replace(/\.$/, ""); }
  function when(t) { return t == null ? "–" : new Date(t * 1000).toLocaleString(); }
  function text(value) {
    const span = document.createElement("span");
    span.textContent = String(value);
    return span.innerHTML.replace(/"/g, "&quot;");
  }
  function cell(value, cls) { return "<td" + (cls ? ' class="' + cls + '"' : "") + ">" + text(value) + "</td>"; }
  function effort(e) { return e == null ? "–" : (e * 100).toFixed(1) + " %"; }

  async function get(path) {
    const response = await fetch(API + path, { headers: { Accept: "application/json" } });
    const body = await response.json();
    if (!response.ok) { const error = new Error(body.error ? body.error.message : response.statusText); error.status = response.status; throw error; }
    return body;
  }

  function drawChart(id, points) {
    const el = $(id);
    const xs = points.map((p) => p.time);
    const ys = points.map((p) => p.hashrate);
    const width = Math.max(280, el.clientWidth - 10);
    el.dataset.points = String(points.length);
    el.dataset.max = String(Math.max(0, ...ys));
    if (charts[id]) { charts[id].setData([xs, ys]); charts[id].setSize({ width: width, height: 220 }); return; }
    charts[id] = new uPlot({
      width: width, height: 220,
      series: [{}, { label: "hashrate", stroke: "#f0a30a", fill: "rgba(240,163,10,0.15)", value: (u, v) => hashrate(v) }],
      axes: [{ stroke: "#8b949e" }, { stroke: "#8b949e", size: 90, values: (u, vals) => vals.map(hashrate) }],
    }, [xs, ys], el);
  }

  function showPool(summary) {
    $("hr10m").textContent = hashrate(summary.hashrate["10m"]);
    $("hr24h").textContent = hashrate(summary.hashrate["24h"]);
    $("miners").textContent = summary.miners + " / " + summary.workers;
    $("effort").textContent = effort(summary.round_effort);
    $("height").textContent = summary.height == null ? "–" : summary.height;
  }

  function blockRow(b) {
    return "<tr data-hash=\"" + text(b.hash) + "\">" + cell(b.height) + cell(b.status, "status-" + b.status) + cell(effort(b.effort)) +
      cell(b.reward == null ? "–" : coins(b.reward)) + cell(when(b.found_at)) + cell(b.hash.slice(0, 16) + "…", "hash") + "</tr>";
  }

  function showBlocks(blocks) { $("blocks").tBodies[0].innerHTML = blocks.map(blockRow).join(""); }

  function payoutRows(payouts, withTx) {
    return payouts.map((p) => "<tr>" + cell(p.batch) + cell(p.state) + cell(coins(p.amount)) +
      (withTx ? cell(when(p.created_at)) + cell(p.txid || "–", "hash") : cell(p.recipients) + cell(when(p.created_at))) + "</tr>").join("");
  }

  function percent(x) { return (x * 100).toFixed(1) + " %"; }

  async function loadFederation() {
    const fed = await get("/federation");
    $("federation").hidden = !fed.enabled;
    if (!fed.enabled) return;
    const w = fed.window;
    $("fed-summary").textContent = "This node " + fed.label + " (" + fed.node_id.slice(0, 12) + "…): " +
      w.nodes + " nodes, " + w.shares + " shares in the window, our part " + percent(w.own_part) + ".";
    $("fed-peers").tBodies[0].innerHTML = fed.peers.map((p) => "<tr>" + cell(p.node_id.slice(0, 12) + "…", "hash") +
      cell(p.label) + cell(p.address) + cell(p.reputation.toFixed(2)) + cell(percent(p.window_share)) +
      cell(p.connected ? "yes" : "no") + cell(when(p.last_seen)) + "</tr>").join("");
  }

  async function loadPool() {
    const [pool, history] = await Promise.all([get("/pool"), get("/hashrate?range=24h")]);
    showPool(pool);
    $("fee").textContent = pool.fee_percent + " % / " + shortCoins(pool.minimum_payout);
    showBlocks(pool.blocks.last);
    $("payouts").tBodies[0].innerHTML = payoutRows(pool.payouts, false);
    $("connect").innerHTML = pool.stratum.map((s) => "<p><code>" + text(s.url) + "</code> (" + text(s.algorithm) +
      ") — user: <code>&lt;your address&gt;.&lt;worker&gt;</code>, any password</p>").join("") || "<p>Stratum is off on this node.</p>";
    drawChart("pool-chart", history.points);
    await loadFederation();
  }

  async function loadMiner(address) {
    $("miner-title").textContent = "Miner " + address;
    const history = await get("/miners/" + encodeURIComponent(address) + "/hashrate?range=24h");
    drawChart("miner-chart", history.points);
    try {
      showMiner(await get("/miners/" + encodeURIComponent(address)));
      $("miner-missing").hidden = true;
    } catch (error) {
      if (error.status !== 404) throw error;
      $("miner-missing").hidden = false;
    }
  }

  function showMiner(m) {
    $("m-hr").textContent = hashrate(m.hashrate);
    $("m-immature").textContent = shortCoins(m.balance.immature);
    $("m-confirmed").textContent = shortCoins(m.balance.confirmed);
    $("m-paid").textContent = shortCoins(m.balance.paid);
    $("workers").tBodies[0].innerHTML = m.workers.map((w) => "<tr>" + cell(w.name || "(default)") + cell(hashrate(w.hashrate_10m)) +
      cell(hashrate(w.hashrate_1h)) + cell(w.shares_1h) + cell(Number(w.difficulty.toPrecision(4))) + cell(when(w.last_share_at)) + "</tr>").join("");
    $("m-payouts").tBodies[0].innerHTML = payoutRows(m.payouts, true);
  }

  function onBlockEvent(event) {
    const b = event.block;
    const body = $("blocks").tBodies[0];
    const existing = body.querySelector('tr[data-hash="' + b.hash + '"]');
    const html = blockRow(b);
    if (existing) { existing.outerHTML = html; } else { body.insertAdjacentHTML("afterbegin", html); }
  }

  function send(message) { if (socket && socket.readyState === 1) socket.send(JSON.stringify(message)); }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    socket = new WebSocket(scheme + location.host + API + "/ws");
    socket.onopen = () => {
      $("live").textContent = "live"; $("live").classList.add("on");
      send({ op: "subscribe", topic: "pool" });
      send({ op: "subscribe", topic: "blocks" });
      if (minerTopic) send({ op: "subscribe", topic: minerTopic });
    };
    socket.onmessage = (message) => {
      const event = JSON.parse(message.data);
      if (!event.data) return;
      if (event.topic === "pool") showPool(event.data);
      else if (event.topic === "blocks") onBlockEvent(event.data);
      else if (event.topic === minerTopic) showMiner(event.data);
    };
    socket.onclose = () => { $("live").textContent = "offline"; $("live").classList.remove("on"); setTimeout(connect, 5000); };
  }

  function route() {
    const match = location.hash.match(/^#\/miner\/(.+)$/);
    const address = match ? decodeURIComponent(match[1]) : null;
    $("pool-page").hidden = !!address;
    $("miner-page").hidden = !address;
    if (minerTopic) send({ op: "unsubscribe", topic: minerTopic });
    minerTopic = address ? "miner:" + address : null;
    if (minerTopic) send({ op: "subscribe", topic: minerTopic });
    const loading = address ? loadMiner(address) : loadPool();
    loading.catch((error) => { console.warn("could not load: " + error.message); });
  }

  $("lookup").addEventListener("submit", (event) => {
    event.preventDefault();
    const address = $("address").value.trim();
    if (address) location.hash = "#/miner/" + encodeURIComponent(address);
  });
  window.addEventListener("hashchange", route);
  connect();
  route();
})();
