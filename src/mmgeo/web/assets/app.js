/* mmgeo serve's page: pick or drop photo(s) -> POST /search?evidence=1 -> mmgeoReport (same renderer as --html). */
(function () {
  "use strict";
  var root = document.getElementById("mmgeo-app");
  root.innerHTML = "<form id='mmgeo-form' class='mmgeo-form'>"
    + "<div id='mmgeo-drop' class='mmgeo-drop'>Drop photos of one place here, or <input type='file' id='mmgeo-photos' name='photos' accept='image/*' multiple></div>"
    + "<label>region <select name='region'><option>radius</option><option>mass</option><option>none</option></select></label> "
    + "<label>radius km <input name='radius_km' type='number' value='25' min='0.1' step='any' size='5'></label> "
    + "<label>results <input name='top_n' type='number' value='5' min='1' max='50' size='3'></label> "
    + "<label id='mmgeo-key-label' hidden>API key <input id='mmgeo-key' type='password' autocomplete='off'></label> "
    + "<button id='mmgeo-go' type='submit'>Locate</button> <span id='mmgeo-status' role='status'></span></form>"
    + "<div id='report'></div>";
  var form = document.getElementById("mmgeo-form"), input = document.getElementById("mmgeo-photos");
  var status = document.getElementById("mmgeo-status"), drop = document.getElementById("mmgeo-drop");
  var files = [], attribution = "", shown = [];
  var headers = function () {
    var key = document.getElementById("mmgeo-key").value;
    return key ? {"X-API-Key": key} : {};
  };
  fetch("/health").then(function (r) { return r.json(); }).then(function (h) {
    attribution = h.attribution;
    document.getElementById("mmgeo-key-label").hidden = !h.api_key_required;
  });
  input.addEventListener("change", function () { files = Array.prototype.slice.call(input.files); status.textContent = files.length + " photo(s) chosen"; });
  drop.addEventListener("dragover", function (e) { e.preventDefault(); drop.classList.add("mmgeo-over"); });
  drop.addEventListener("dragleave", function () { drop.classList.remove("mmgeo-over"); });
  drop.addEventListener("drop", function (e) {
    e.preventDefault();
    drop.classList.remove("mmgeo-over");
    files = Array.prototype.slice.call(e.dataTransfer.files);
    status.textContent = files.length + " photo(s) dropped";
    form.requestSubmit();
  });
  var map = null;
  form.addEventListener("submit", function (e) {
    e.preventDefault();
    if (!files.length) { status.textContent = "choose a photo first"; return; }
    var body = new FormData();
    files.forEach(function (f) { body.append("photos", f, f.name); });
    ["region", "radius_km", "top_n"].forEach(function (n) { body.append(n, form.elements[n].value); });
    status.textContent = "searching…";
    var t0 = performance.now();
    fetch("/search?evidence=1", {method: "POST", body: body, headers: headers()}).then(function (r) {
      return r.json().then(function (doc) { return {ok: r.ok, status: r.status, doc: doc}; });
    }).then(function (res) {
      if (!res.ok) { status.textContent = "error " + res.status + ": " + res.doc.error; return; }
      shown.forEach(URL.revokeObjectURL);
      shown = files.map(function (f) { return URL.createObjectURL(f); });
      if (map) map.remove();
      map = mmgeoReport(document.getElementById("report"), {result: res.doc, evidence: res.doc.evidence, attribution: attribution}, {
        photos: shown,
        thumb: function (ref) {
          return fetch("/evidence/" + encodeURIComponent(ref.collection) + "/" + encodeURIComponent(ref.key), {headers: headers()})
            .then(function (r) { return r.ok ? r.blob() : null; })
            .then(function (b) { return b ? URL.createObjectURL(b) : null; });
        }
      });
      status.textContent = "done in " + Math.round(performance.now() - t0) + " ms";
      document.body.setAttribute("data-mmgeo-done", "1");
    }).catch(function (err) { status.textContent = "error: " + err; });
  });
})();
