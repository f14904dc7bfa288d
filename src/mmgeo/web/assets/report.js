/* mmgeo report: one renderer for the offline `--html` file and the `mmgeo serve` page.
 * mmgeoReport(el, report, opts): report = {result: <mmgeo-search --json>, evidence: [per candidate]};
 * opts.thumb(ref) -> Promise<url|null> for a stored item {collection, key};
 * opts.photos: query photo URLs; opts.osm: start with the OpenStreetMap layer on (needs the network). */
(function () {
  "use strict";
  var esc = function (s) {
    return String(s == null ? "" : s).replace(/[&<>"']/g, function (c) {
      return {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c];
    });
  };
  var num = function (x, d) { return (x == null || isNaN(x)) ? "–" : Number(x).toFixed(d); };
  var valid = function (lat, lon) { return lat != null && lon != null && !isNaN(lat) && !isNaN(lon); };

  function basemap(map) {
    var pane = map.createPane("basemap");
    pane.style.zIndex = 150;  /* under the tile pane: an online tile layer covers it */
    var b = window.MMGEO_BASEMAP, w = b.world, s = b.states, plain = {pane: "basemap", interactive: false};
    var style = function (o) { var r = Object.assign({}, plain); r.style = o; return r; };
    L.geoJSON(topojson.feature(w, w.objects.land), style({color: "#9c9482", weight: 0.8, fillColor: "#f4f1e8", fillOpacity: 1})).addTo(map);
    L.geoJSON(topojson.feature(s, s.objects.nation), style({color: "#9c9482", weight: 0.8, fillColor: "#f4f1e8", fillOpacity: 1})).addTo(map);
    L.geoJSON(topojson.mesh(w, w.objects.countries, function (a, c) { return a !== c; }), style({color: "#7a7264", weight: 1.2, fill: false})).addTo(map);
    L.geoJSON(topojson.mesh(s, s.objects.states, function (a, c) { return a !== c; }), style({color: "#a39b8b", weight: 0.9, dashArray: "4 3", fill: false})).addTo(map);
  }

  function drawMap(el, r, opts) {
    var map = L.map(el, {worldCopyJump: true, zoomSnap: 0.25}).setView([20, 0], 2);  /* a view before any layer */
    map.attributionControl.setPrefix("Leaflet | Natural Earth, US Census");
    basemap(map);
    var osm = L.tileLayer("https://tile.openstreetmap.org/{z}/{x}/{y}.png",
      {maxZoom: 19, attribution: "&copy; OpenStreetMap contributors"});
    L.control.layers(null, {"OpenStreetMap (online)": osm}, {collapsed: false}).addTo(map);
    if (opts.osm) osm.addTo(map);
    L.control.scale({imperial: false}).addTo(map);
    var bounds = [], est = r.estimate, reg = r.region;
    var hyps = (est.hypotheses || []), pmax = Math.max.apply(null, hyps.map(function (h) { return h.prob; }).concat([1e-12]));
    hyps.forEach(function (h) {
      L.circleMarker([h.lat, h.lon], {radius: 3 + 14 * Math.sqrt(h.prob / pmax), color: "#7b3fa0", weight: 1, fillOpacity: 0.25})
        .bindTooltip("stage-1 hypothesis p=" + num(h.prob, 3)).addTo(map);
    });
    if (reg.geometry) {
      var cells = L.geoJSON(reg.geometry, {style: {color: "#2f75c0", weight: 1.5, fillOpacity: 0.1}}).bindTooltip(esc(reg.description)).addTo(map);
      bounds.push(cells.getBounds());
    } else if (reg.radius_km && valid(est.lat, est.lon)) {
      var circle = L.circle([est.lat, est.lon], {radius: reg.radius_km * 1000, color: "#2f75c0", weight: 1.5, fillOpacity: 0.1})
        .bindTooltip(esc(reg.description)).addTo(map);
      bounds.push(circle.getBounds());
    }
    if (valid(est.lat, est.lon)) {
      L.marker([est.lat, est.lon], {icon: L.divIcon({className: "mmgeo-est", html: "&#10010;", iconSize: [22, 22]}), zIndexOffset: -100})
        .bindTooltip("stage-1 estimate" + (est.place ? ": " + esc(est.place.label) : "")).addTo(map);
      bounds.push(L.latLng(est.lat, est.lon));
    }
    r.candidates.slice().reverse().forEach(function (c) {
      L.marker([c.lat, c.lon], {icon: L.divIcon({className: "mmgeo-pin" + (c.rank === 1 ? " mmgeo-first" : ""),
        html: String(c.rank), iconSize: [22, 22]})})
        .bindTooltip(c.rank + ". " + esc(c.name || (c.place && c.place.label) || c.key) + " · score " + num(c.score, 3)).addTo(map);
      bounds.push(L.latLng(c.lat, c.lon));
    });
    if (bounds.length) {
      var all = L.latLngBounds(bounds[0], bounds[0]);
      bounds.forEach(function (b) { all.extend(b); });
      map.fitBounds(all.pad(0.15), {maxZoom: 14});
    }
    return map;
  }

  function thumbImg(opts, ref, label) {
    var box = document.createElement("figure");
    box.className = "mmgeo-fig";
    box.innerHTML = "<figcaption>" + esc(label) + "</figcaption>";
    if (!ref || !ref.key) return null;
    Promise.resolve(opts.thumb(ref)).then(function (url) {
      if (!url) { box.insertAdjacentHTML("afterbegin", "<div class='mmgeo-missing'>no file</div>"); return; }
      var img = new Image();
      img.className = "mmgeo-thumb";
      img.alt = label;
      img.src = url;
      box.insertBefore(img, box.firstChild);
    });
    return box;
  }

  /* a stage-2 hit's caption: a satellite tile, or one of the user's own photos with the day it was taken */
  function hitLabel(ref) {
    if (!/_ground$/.test(ref.collection || "")) return "satellite " + num(ref.score, 3);
    return "photo" + (ref.taken ? " of " + ref.taken.slice(0, 10) : "") + " " + num(ref.score, 3);
  }

  function candidateRow(c, ev, opts) {
    var tr = document.createElement("tr");
    tr.className = "mmgeo-cand";
    var pics = document.createElement("td");
    pics.className = "mmgeo-pics";
    var tile = ev && ev.tiles && ev.tiles[0];
    [tile && thumbImg(opts, tile, hitLabel(tile)),
     ev && ev.ground && thumbImg(opts, ev.ground, "ground photo")].forEach(function (f) { if (f) pics.appendChild(f); });
    var photo = tile && /_ground$/.test(tile.collection || "") && tile.source;
    var what = "<b>" + esc(c.name || photo || c.key) + "</b>" + (c.place ? "<div class='mmgeo-place'>" + esc(c.place.label) + "</div>" : "")
      + "<div class='mmgeo-coord'>" + num(c.lat, 5) + ", " + num(c.lon, 5) + " · " + num(c.distance_km, 1) + " km from the estimate</div>"
      + (ev && ev.text ? "<blockquote>" + esc(ev.text.title) + ": " + esc(ev.text.excerpt) + "…</blockquote>" : "");
    tr.innerHTML = "<td class='mmgeo-rank'>" + c.rank + "</td>";
    tr.appendChild(pics);
    tr.insertAdjacentHTML("beforeend", "<td>" + what + "</td><td class='mmgeo-num'>" + num(c.score, 3) + "</td><td class='mmgeo-num'>"
      + num(c.image_score, 3) + "</td><td class='mmgeo-num'>" + num(c.text_score, 3) + "</td><td class='mmgeo-num'>" + num(c.prior, 3) + "</td>");
    return tr;
  }

  window.mmgeoReport = function (el, report, opts) {
    var r = report.result, est = r.estimate, ans = r.answer;
    opts = opts || {};
    el.innerHTML = "";
    el.classList.add("mmgeo");
    var head = document.createElement("div");
    head.className = "mmgeo-head";
    head.innerHTML = (ans ? "<h2 id='mmgeo-answer'>" + esc(ans.name || (ans.place && ans.place.label) || ans.key) + "</h2>"
        + "<p>" + (ans.place ? esc(ans.place.label) + " · " : "") + num(ans.lat, 5) + ", " + num(ans.lon, 5) + "</p>"
        : "<h2 id='mmgeo-answer'>unsure</h2>")
      + "<p class='mmgeo-meta'>confidence " + num(r.confidence, 2) + " · stage 1 (" + esc(est.source) + "): " + num(est.lat, 4) + ", "
      + num(est.lon, 4) + (est.place ? " (" + esc(est.place.label) + ")" : "") + " · region: " + esc(r.region.description) + " ("
      + r.region.candidates_in_region + (/_ground$/.test(r.region.collection || "") ? " photos" : " tiles") + (r.region.fallback_used ? ", fallback used" : "") + ")</p>";
    el.appendChild(head);
    var main = document.createElement("div");
    main.className = "mmgeo-main";
    var mapEl = document.createElement("div");
    mapEl.className = "mmgeo-map";
    mapEl.id = "mmgeo-map";
    var side = document.createElement("aside");
    side.className = "mmgeo-side";
    side.innerHTML = "<h3>Query</h3>";
    (opts.photos || []).forEach(function (url, i) {
      var f = document.createElement("figure");
      f.className = "mmgeo-fig";
      f.innerHTML = "<img class='mmgeo-thumb mmgeo-query' alt='query photo'><figcaption>" + esc((r.photos[i] || "").split("/").pop()) + "</figcaption>";
      f.firstChild.src = url;
      side.appendChild(f);
    });
    (r.problems || []).forEach(function (p) { side.insertAdjacentHTML("beforeend", "<p class='mmgeo-problem'>skipped: " + esc(p) + "</p>"); });
    main.appendChild(mapEl);
    main.appendChild(side);
    el.appendChild(main);
    var table = document.createElement("table");
    table.className = "mmgeo-cands";
    table.id = "candidates";
    table.innerHTML = "<thead><tr><th>#</th><th>evidence</th><th>candidate</th><th>score</th><th>image</th><th>text</th><th>prior</th></tr></thead>";
    var body = document.createElement("tbody");
    r.candidates.forEach(function (c, i) { body.appendChild(candidateRow(c, (report.evidence || [])[i], opts)); });
    table.appendChild(body);
    el.appendChild(table);
    el.insertAdjacentHTML("beforeend", "<p class='mmgeo-foot'>score = w_image·image + w_text·text + w_prior·prior"
      + (r.text_space ? " (text space: " + esc(r.text_space) + ")" : " (text rerank off)") + " · timings (ms): "
      + esc(JSON.stringify(r.timings_ms)) + " · " + esc(report.attribution || "") + "</p>");
    return drawMap(mapEl, r, opts);
  };
})();
