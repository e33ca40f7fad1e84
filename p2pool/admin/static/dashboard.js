// p2pool dashboard: polls the node's admin API every second and renders
// connections, known points by state, greylists, bans and a traffic chart.
"use strict";
(function () {
  var REFRESH_MS = 1000;
  var HISTORY = 120;         // samples kept for the chart
  var POINT_ROWS = 50;       // points listed in the table
  var POINT_STATES = ["running", "accepted", "requested", "disconnected"];
  var PEER_STATES = ["running", "accepted", "disconnected"];

  var params = new URLSearchParams(window.location.search);
  var token = params.get("access_token");
  if (token !== null && window.history && window.history.replaceState) {
    window.history.replaceState(null, "", window.location.pathname);
  }

  var samples = [];
  var updates = 0;

  function $(id) { return document.getElementById(id); }

  function setText(id, text) { $(id).textContent = text; }

  function api(path) {
    var headers = {Accept: "application/json"};
    if (token) { headers.Authorization = "Bearer " + token; }
    return fetch(path, {headers: headers, cache: "no-store"}).then(function (response) {
      return response.json().catch(function () { return null; }).then(function (body) {
        if (!response.ok) {
          var detail = body && body.detail ? body.detail : response.statusText;
          throw new Error(path + ": " + response.status + " " + detail);
        }
        return body;
      });
    });
  }

  function bytes(n) {
    var units = ["B", "KiB", "MiB", "GiB", "TiB"];
    var i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
    return (i === 0 ? String(Math.round(n)) : n.toFixed(n < 10 ? 2 : 1)) + " " + units[i];
  }

  function rate(n) { return bytes(n) + "/s"; }

  function since(text) {
    if (!text) { return "–"; }
    var date = new Date(text);
    return isNaN(date.getTime()) ? text : date.toLocaleString();
  }

  function cell(row, text, className) {
    var td = document.createElement("td");
    td.textContent = text;
    if (className) { td.className = className; }
    row.appendChild(td);
    return td;
  }

  function fillTable(tableId, items, makeRow) {
    var body = $(tableId).tBodies[0];
    var rows = document.createDocumentFragment();
    items.forEach(function (item) {
      var row = document.createElement("tr");
      makeRow(row, item);
      rows.appendChild(row);
    });
    body.replaceChildren(rows);
  }

  function fillList(listId, items) {
    var list = $(listId);
    var entries = document.createDocumentFragment();
    items.forEach(function (text) {
      var li = document.createElement("li");
      li.textContent = text;
      entries.appendChild(li);
    });
    list.replaceChildren(entries);
  }

  function countStates(pairs, stateOf, states) {
    var counts = {};
    states.forEach(function (s) { counts[s] = {all: 0, trusted: 0}; });
    pairs.forEach(function (pair) {
      var state = stateOf(pair[1]);
      if (!counts[state]) { counts[state] = {all: 0, trusted: 0}; }
      counts[state].all += 1;
      if (pair[1].trusted) { counts[state].trusted += 1; }
    });
    return counts;
  }

  function summary(counts, states) {
    return states.filter(function (s) { return counts[s].all > 0; })
      .map(function (s) { return counts[s].all + " " + s; }).join(" · ") || "none";
  }

  function renderStat(stat) {
    setText("total-recv", bytes(stat.total_recv));
    setText("total-sent", bytes(stat.total_sent));
    setText("current-inflow", rate(stat.current_inflow));
    setText("current-outflow", rate(stat.current_outflow));
    samples.push({inflow: stat.current_inflow, outflow: stat.current_outflow});
    if (samples.length > HISTORY) { samples.shift(); }
    drawChart();
  }

  function renderConnections(connections) {
    var incoming = connections.filter(function (c) { return c.incoming; }).length;
    setText("connection-count", String(connections.length));
    setText("connections-incoming", String(incoming));
    setText("connections-outgoing", String(connections.length - incoming));
    $("connections-empty").classList.toggle("hidden", connections.length > 0);
    fillTable("connections", connections, function (row, c) {
      cell(row, c.peer_id);
      cell(row, c.point || c.id_point.addr);
      cell(row, c.incoming ? "incoming" : "outgoing");
      cell(row, c.private ? "yes" : "no");
      cell(row, bytes(c.stat.total_sent), "num");
      cell(row, bytes(c.stat.total_recv), "num");
      cell(row, rate(c.stat.current_inflow), "num");
      cell(row, rate(c.stat.current_outflow), "num");
      cell(row, since(c.established_at));
    });
  }

  function renderPoints(points) {
    var counts = countStates(points, function (info) { return info.state.event_kind; }, POINT_STATES);
    setText("point-count", String(points.length));
    setText("point-states", summary(counts, POINT_STATES));
    fillTable("point-table", POINT_STATES, function (row, state) {
      cell(row, state, "state-" + state);
      cell(row, String(counts[state].all), "num");
      cell(row, String(counts[state].trusted), "num");
    });
    var order = {};
    POINT_STATES.forEach(function (s, i) { order[s] = i; });
    var listed = points.slice().sort(function (a, b) {
      var d = order[a[1].state.event_kind] - order[b[1].state.event_kind];
      return d !== 0 ? d : (a[1].trusted === b[1].trusted ? 0 : (a[1].trusted ? -1 : 1));
    }).slice(0, POINT_ROWS);
    fillTable("points", listed, function (row, pair) {
      var info = pair[1];
      cell(row, pair[0]);
      cell(row, info.state.event_kind, "state-" + info.state.event_kind);
      cell(row, info.trusted ? "yes" : "no");
      cell(row, info.p2p_peer_id || "–");
      cell(row, info.last_seen ? since(info.last_seen[1]) : "–");
      cell(row, since(info.greylisted_until));
    });
    setText("points-note", points.length > POINT_ROWS ? "showing " + POINT_ROWS + " of " + points.length + " points" : "");
  }

  function renderPeers(peers) {
    var counts = countStates(peers, function (info) { return info.state; }, PEER_STATES);
    setText("peer-count", String(peers.length));
    setText("peer-states", summary(counts, PEER_STATES));
  }

  function renderGreylists(ips, peers) {
    setText("greylist-ip-count", String(ips.ips.length));
    fillList("greylist-ips", ips.ips);
    setText("greylist-reliability", ips.not_reliable_since ? "listing incomplete since " + since(ips.not_reliable_since) : "");
    setText("greylist-peer-count", String(peers.length));
    fillList("greylist-peers", peers);
  }

  function renderBans(bans) {
    setText("bans-ip-count", String(bans.ips.length));
    fillList("bans-ips", bans.ips);
    setText("bans-peer-count", String(bans.peers.length));
    fillList("bans-peers", bans.peers);
  }

  function niceMax(value) {
    if (value <= 0) { return 1024; }
    var step = Math.pow(2, Math.ceil(Math.log2(value)));
    return step * 0.75 >= value ? step * 0.75 : step;
  }

  function drawChart() {
    var canvas = $("traffic-chart");
    var ratio = window.devicePixelRatio || 1;
    var width = canvas.clientWidth || canvas.width;
    var height = canvas.clientHeight || canvas.height;
    if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
      canvas.width = Math.round(width * ratio);
      canvas.height = Math.round(height * ratio);
    }
    var ctx = canvas.getContext("2d");
    if (!ctx) { return; }
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);
    var left = 80, right = 12, top = 12, bottom = 22;
    var plotW = width - left - right, plotH = height - top - bottom;
    var peak = 0;
    samples.forEach(function (s) { peak = Math.max(peak, s.inflow, s.outflow); });
    var max = niceMax(peak);
    var style = getComputedStyle(document.documentElement);
    ctx.font = "11px system-ui, sans-serif";
    ctx.fillStyle = style.getPropertyValue("--muted") || "#667085";
    ctx.strokeStyle = style.getPropertyValue("--line") || "#e3e6eb";
    ctx.lineWidth = 1;
    for (var i = 0; i <= 4; i += 1) {
      var y = top + plotH - (plotH * i) / 4;
      ctx.beginPath();
      ctx.moveTo(left, y);
      ctx.lineTo(left + plotW, y);
      ctx.stroke();
      ctx.fillText(rate((max * i) / 4), 4, y + 4);
    }
    ctx.fillText(HISTORY + " s ago", left, height - 6);
    ctx.fillText("now", left + plotW - 20, height - 6);
    function line(key, color) {
      if (samples.length < 2) { return; }
      ctx.strokeStyle = color;
      ctx.lineWidth = 2;
      ctx.beginPath();
      samples.forEach(function (s, index) {
        var x = left + plotW - ((samples.length - 1 - index) * plotW) / (HISTORY - 1);
        var y = top + plotH - (s[key] / max) * plotH;
        if (index === 0) { ctx.moveTo(x, y); } else { ctx.lineTo(x, y); }
      });
      ctx.stroke();
    }
    line("inflow", style.getPropertyValue("--in") || "#12a150");
    line("outflow", style.getPropertyValue("--out") || "#2f6fde");
  }

  function showStatus(text, failed) {
    var status = $("status");
    status.textContent = text;
    status.classList.toggle("error", failed);
  }

  function loadIdentity() {
    return api("/network/self").then(function (peerId) { setText("peer-id", peerId); });
  }

  var identityKnown = false;

  function refresh() {
    var steps = [
      identityKnown ? Promise.resolve() : loadIdentity().then(function () { identityKnown = true; }),
      api("/network/stat"),
      api("/network/connections"),
      api("/network/points"),
      api("/network/peers"),
      api("/network/greylist/ips"),
      api("/network/greylist/peers"),
      api("/network/bans")
    ];
    return Promise.all(steps).then(function (r) {
      renderStat(r[1]);
      renderConnections(r[2]);
      renderPoints(r[3]);
      renderPeers(r[4]);
      renderGreylists(r[5], r[6]);
      renderBans(r[7]);
      updates += 1;
      document.body.dataset.updates = String(updates);
      showStatus("updated " + new Date().toLocaleTimeString(), false);
    }).catch(function (error) {
      showStatus("cannot reach the node: " + error.message, true);
    });
  }

  function loop() {
    refresh().then(function () { window.setTimeout(loop, REFRESH_MS); });
  }

  drawChart();
  loop();
})();
