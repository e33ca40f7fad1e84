// p2pool dashboard: polls the node's admin API every second and renders
// the node (network, listening point, version, uptime), connections, known
// points and peers, greylists, bans and a chart of the traffic history the
// node keeps (/network/stat/history).
"use strict";
(function () {
  var REFRESH_MS = 1000;
  var ROWS = 50;             // points or peers listed in a table
  var MIN_WINDOW = 300;      // seconds the traffic chart spans at least
  var POINT_STATES = ["running", "accepted", "requested", "disconnected"];
  var PEER_STATES = ["running", "accepted", "disconnected"];
  var LIVE = "now (connected)";  // "last seen" of a peer connected now

  var params = new URLSearchParams(window.location.search);
  var token = params.get("access_token");
  if (token !== null && window.history && window.history.replaceState) {
    window.history.replaceState(null, "", window.location.pathname);
  }

  // The traffic history as the node sent it: its identity (since), the
  // number of the last interval received, its bound, and the intervals.
  var recorded = {since: null, last: 0, length: 0, intervals: []};
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

  // Every time on the page, as the p2pool CLI prints them: ISO 8601 in UTC
  // to the second, "2024-05-01 12:00:00Z". Takes the API's RFC 3339 text,
  // a Date or milliseconds since the epoch.
  function isoTime(value) {
    if (value === null || value === undefined || value === "") { return "–"; }
    var date = value instanceof Date ? value : new Date(value);
    if (isNaN(date.getTime())) { return String(value); }
    return date.toISOString().slice(0, 19).replace("T", " ") + "Z";
  }

  function duration(seconds) {
    var s = Math.max(0, Math.floor(seconds));
    var d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
    if (d > 0) { return d + " d " + h + " h"; }
    if (h > 0) { return h + " h " + m + " min"; }
    if (m > 0) { return m + " min " + (s % 60) + " s"; }
    return s + " s";
  }

  function cell(row, text, className) {
    var td = document.createElement("td");
    td.textContent = text;
    if (className) { td.className = className; }
    row.appendChild(td);
    return td;
  }

  // Fill a table's body with a row per item, or one row saying it is empty.
  function fillTable(tableId, items, makeRow, emptyText) {
    var table = $(tableId);
    var rows = document.createDocumentFragment();
    items.forEach(function (item) {
      var row = document.createElement("tr");
      makeRow(row, item);
      rows.appendChild(row);
    });
    if (items.length === 0) {
      var row = document.createElement("tr");
      cell(row, emptyText, "empty").colSpan = table.tHead.rows[0].cells.length;
      rows.appendChild(row);
    }
    table.tBodies[0].replaceChildren(rows);
  }

  // Fill a list with an entry per item, or one entry saying it is empty.
  function fillList(listId, items, emptyText) {
    var entries = document.createDocumentFragment();
    items.forEach(function (text) {
      var li = document.createElement("li");
      li.textContent = text;
      entries.appendChild(li);
    });
    if (items.length === 0) {
      var li = document.createElement("li");
      li.textContent = emptyText;
      li.className = "empty";
      entries.appendChild(li);
    }
    $(listId).replaceChildren(entries);
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

  // The first ROWS pairs, by state (in the order of states), trusted first.
  function firstRows(pairs, stateOf, states) {
    var order = {};
    states.forEach(function (s, i) { order[s] = i; });
    return pairs.slice().sort(function (a, b) {
      var d = order[stateOf(a[1])] - order[stateOf(b[1])];
      return d !== 0 ? d : (a[1].trusted === b[1].trusted ? 0 : (a[1].trusted ? -1 : 1));
    }).slice(0, ROWS);
  }

  function rowsNote(noteId, shown, total, what) {
    setText(noteId, total > shown ? "showing " + shown + " of " + total + " " + what : "");
  }

  // "last seen" of a point or peer: now while it is connected, else when
  // it was last connected, rejected or disconnected.
  function lastSeen(running, stamp) {
    return running ? LIVE : isoTime(stamp ? stamp[1] : null);
  }

  function renderNode(node) {
    setText("peer-id", node.peer_id || "…");
    setText("network", node.network);
    setText("listen", node.listen || "not listening yet");
    setText("version", "p2pool " + node.version);
    setText("uptime", node.uptime === null ? "not started" : duration(node.uptime));
    setText("started-at", isoTime(node.started_at));
  }

  function renderStat(stat) {
    setText("total-recv", bytes(stat.total_recv));
    setText("total-sent", bytes(stat.total_sent));
    setText("current-inflow", rate(stat.current_inflow));
    setText("current-outflow", rate(stat.current_outflow));
  }

  // Add the intervals of a reply to /network/stat/history?after=<after>.
  function addHistory(reply, after) {
    var intervals = reply.intervals;
    if (reply.since !== recorded.since) {  // another history (the node restarted): start again
      recorded = {since: reply.since, last: 0, length: reply.length, intervals: []};
      if (after > 0) { intervals = []; }  // only its later part: fetch it all next time
    }
    recorded.length = reply.length;
    intervals.forEach(function (entry) {
      recorded.intervals.push({
        end: new Date(entry.end).getTime() / 1000,
        seconds: entry.seconds,
        inflow: entry.seconds > 0 ? entry.recv / entry.seconds : 0,
        outflow: entry.seconds > 0 ? entry.sent / entry.seconds : 0
      });
      recorded.last = Math.max(recorded.last, entry.seq);
    });
    if (recorded.intervals.length > recorded.length) {
      recorded.intervals.splice(0, recorded.intervals.length - recorded.length);
    }
    var shown = recorded.intervals.length;
    $("traffic-empty").classList.toggle("hidden", shown > 0);
    setText("traffic-note", shown === 0
      ? "the node records the bytes sent and received every " + reply.interval + " s, and keeps the last " + reply.length
      : shown + " intervals of " + reply.interval + " s recorded by the node since " + isoTime(recorded.intervals[0].end * 1000 - recorded.intervals[0].seconds * 1000)
        + " (it keeps the last " + reply.length + ")");
    drawChart();
  }

  function renderConnections(connections) {
    var incoming = connections.filter(function (c) { return c.incoming; }).length;
    setText("connection-count", String(connections.length));
    setText("connections-incoming", String(incoming));
    setText("connections-outgoing", String(connections.length - incoming));
    fillTable("connections", connections, function (row, c) {
      cell(row, c.peer_id);
      cell(row, c.point || c.id_point.addr);
      cell(row, c.incoming ? "incoming" : "outgoing");
      cell(row, c.private ? "yes" : "no");
      cell(row, bytes(c.stat.total_sent), "num");
      cell(row, bytes(c.stat.total_recv), "num");
      cell(row, rate(c.stat.current_inflow), "num");
      cell(row, rate(c.stat.current_outflow), "num");
      cell(row, isoTime(c.established_at));
    }, "no connections");
  }

  function renderPoints(points) {
    var stateOf = function (info) { return info.state.event_kind; };
    var counts = countStates(points, stateOf, POINT_STATES);
    setText("point-count", String(points.length));
    setText("point-states", summary(counts, POINT_STATES));
    fillTable("point-table", POINT_STATES, function (row, state) {
      cell(row, state, "state-" + state);
      cell(row, String(counts[state].all), "num");
      cell(row, String(counts[state].trusted), "num");
    }, "no states");
    var listed = firstRows(points, stateOf, POINT_STATES);
    fillTable("points", listed, function (row, pair) {
      var info = pair[1];
      cell(row, pair[0]);
      cell(row, info.state.event_kind, "state-" + info.state.event_kind);
      cell(row, info.trusted ? "yes" : "no");
      cell(row, info.p2p_peer_id || "–");
      cell(row, lastSeen(info.state.event_kind === "running", info.last_seen));
      cell(row, isoTime(info.greylisted_until));
    }, "no known points");
    rowsNote("points-note", listed.length, points.length, "points");
  }

  function renderPeers(peers) {
    var stateOf = function (info) { return info.state; };
    var counts = countStates(peers, stateOf, PEER_STATES);
    setText("peer-count", String(peers.length));
    setText("peer-states", summary(counts, PEER_STATES));
    var listed = firstRows(peers, stateOf, PEER_STATES);
    fillTable("peers", listed, function (row, pair) {
      var info = pair[1];
      var at = info.reachable_at;
      cell(row, pair[0]);
      cell(row, info.state, "state-" + info.state);
      cell(row, info.trusted ? "yes" : "no");
      cell(row, info.score === null ? "–" : String(Math.round(info.score * 100) / 100), "num");
      cell(row, at ? (at.addr.indexOf(":") >= 0 ? "[" + at.addr + "]" : at.addr) + (at.port ? ":" + at.port : "") : "–");
      cell(row, lastSeen(info.state === "running", info.last_seen));
    }, "no known peers");
    rowsNote("peers-note", listed.length, peers.length, "peers");
  }

  function renderGreylists(ips, peers) {
    setText("greylist-ip-count", String(ips.ips.length));
    fillList("greylist-ips", ips.ips, "no greylisted addresses");
    setText("greylist-reliability", ips.not_reliable_since ? "listing incomplete since " + isoTime(ips.not_reliable_since) : "");
    setText("greylist-peer-count", String(peers.length));
    fillList("greylist-peers", peers, "no greylisted peers");
  }

  function renderBans(bans) {
    setText("bans-ip-count", String(bans.ips.length));
    fillList("bans-ips", bans.ips, "no banned addresses or ranges");
    setText("bans-peer-count", String(bans.peers.length));
    fillList("bans-peers", bans.peers, "no banned peers");
  }

  function niceMax(value) {
    if (value <= 0) { return 1024; }
    var step = Math.pow(2, Math.ceil(Math.log2(value)));
    return step * 0.75 >= value ? step * 0.75 : step;
  }

  // The history's intervals as steps, over the last MIN_WINDOW seconds or
  // more (up to all the node keeps), their times in ISO 8601 below.
  function drawChart() {
    var canvas = $("traffic-chart");
    var intervals = recorded.intervals;
    canvas.dataset.intervals = String(intervals.length);
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
    intervals.forEach(function (s) { peak = Math.max(peak, s.inflow, s.outflow); });
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
    if (intervals.length === 0) {
      ctx.fillText("no traffic recorded yet", left + 8, top + plotH / 2);
      return;
    }
    var end = intervals[intervals.length - 1].end;
    var first = intervals[0].end - intervals[0].seconds;
    var span = Math.max(MIN_WINDOW, end - first);
    var begin = end - span;
    var leftLabel = isoTime(begin * 1000), rightLabel = isoTime(end * 1000);
    ctx.fillText(leftLabel, left, height - 6);
    ctx.fillText(rightLabel, left + plotW - ctx.measureText(rightLabel).width, height - 6);
    function xOf(t) { return left + ((t - begin) / span) * plotW; }
    function line(key, color) {
      ctx.strokeStyle = color;
      ctx.lineWidth = 2;
      ctx.beginPath();
      intervals.forEach(function (s, index) {
        var y = top + plotH - (s[key] / max) * plotH;
        var x0 = xOf(s.end - s.seconds);
        if (index === 0) { ctx.moveTo(x0, y); } else { ctx.lineTo(x0, y); }
        ctx.lineTo(xOf(s.end), y);
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

  function refresh() {
    var after = recorded.last;
    var steps = [
      api("/node"),
      api("/network/stat"),
      api("/network/stat/history?after=" + after),
      api("/network/connections"),
      api("/network/points"),
      api("/network/peers"),
      api("/network/greylist/ips"),
      api("/network/greylist/peers"),
      api("/network/bans")
    ];
    return Promise.all(steps).then(function (r) {
      renderNode(r[0]);
      renderStat(r[1]);
      addHistory(r[2], after);
      renderConnections(r[3]);
      renderPoints(r[4]);
      renderPeers(r[5]);
      renderGreylists(r[6], r[7]);
      renderBans(r[8]);
      updates += 1;
      document.body.dataset.updates = String(updates);
      showStatus("updated " + isoTime(new Date()), false);
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
