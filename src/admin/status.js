// The status page's behaviour: filter as one types, sort by a column, refresh every few
// seconds. The page works without it; `#filter=...&sort=-duration` in the address sets both.
(function () {
  "use strict";
  var REFRESH_MS = 5000;
  var filter = document.getElementById("filter");
  var sortKey = null;
  var descending = false;
  var refreshes = 0;

  function rows() {
    return Array.prototype.slice.call(document.getElementById("target-rows").rows);
  }

  function headers() {
    return Array.prototype.slice.call(document.querySelectorAll("#target-table th"));
  }

  function applyFilter() {
    var needle = filter.value.trim().toLowerCase();
    var shown = 0;
    rows().forEach(function (row) {
      var hit = needle === "" || row.textContent.toLowerCase().indexOf(needle) >= 0;
      row.hidden = !hit;
      if (hit) shown += 1;
    });
    document.getElementById("shown").textContent = shown;
  }

  function value(row, column) {
    var cell = row.cells[column];
    var v = cell.getAttribute("data-v");
    if (v === null) return cell.textContent.trim().toLowerCase();
    var n = Number(v);
    return v !== "" && !isNaN(n) ? n : v.toLowerCase();
  }

  function applySort() {
    var ths = headers();
    var column = -1;
    ths.forEach(function (th, i) {
      var on = th.getAttribute("data-key") === sortKey;
      if (on) column = i;
      if (on) th.setAttribute("aria-sort", descending ? "descending" : "ascending");
      else th.removeAttribute("aria-sort");
    });
    if (column < 0) return;
    var body = document.getElementById("target-rows");
    var sorted = rows().map(function (row, i) { return [value(row, column), i, row]; });
    sorted.sort(function (a, b) {
      var c = a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0;
      if (typeof a[0] !== typeof b[0]) c = typeof a[0] === "number" ? -1 : 1;
      return (descending ? -c : c) || a[1] - b[1];
    });
    var fragment = document.createDocumentFragment();
    sorted.forEach(function (entry) { fragment.appendChild(entry[2]); });
    body.appendChild(fragment);
  }

  function readHash() {
    var params = new URLSearchParams(location.hash.slice(1));
    if (params.has("filter")) filter.value = params.get("filter");
    var sort = params.get("sort");
    if (sort) {
      descending = sort.charAt(0) === "-";
      sortKey = sort.replace(/^-/, "");
    }
  }

  function writeHash() {
    var params = new URLSearchParams();
    if (filter.value) params.set("filter", filter.value);
    if (sortKey) params.set("sort", (descending ? "-" : "") + sortKey);
    var hash = params.toString();
    history.replaceState(null, "", location.pathname + location.search + (hash ? "#" + hash : ""));
  }

  function refresh() {
    // Every row, filtered here: the box may have changed since the server filtered the page.
    fetch(location.pathname, { headers: { Accept: "text/html" } })
      .then(function (response) {
        if (!response.ok) throw new Error(response.status);
        return response.text();
      })
      .then(function (html) {
        var next = new DOMParser().parseFromString(html, "text/html");
        // The settings stay open or closed as the reader left them.
        var settings = document.getElementById("settings-block");
        var fresh = next.getElementById("settings-block");
        if (settings && fresh) fresh.open = settings.open;
        ["summary", "target-rows", "tunnel"].forEach(function (id) {
          var fresh = next.getElementById(id);
          var old = document.getElementById(id);
          if (fresh && old) old.parentNode.replaceChild(document.importNode(fresh, true), old);
        });
        document.body.classList.remove("stale");
        refreshes += 1;
        document.body.setAttribute("data-refreshes", refreshes);
        applySort();
        applyFilter();
      })
      .catch(function () { document.body.classList.add("stale"); });
  }

  headers().forEach(function (th) {
    th.addEventListener("click", function () {
      var key = th.getAttribute("data-key");
      descending = key === sortKey ? !descending : false;
      sortKey = key;
      applySort();
      writeHash();
    });
  });
  filter.addEventListener("input", function () { applyFilter(); writeHash(); });
  document.getElementById("filter-form").addEventListener("submit", function (e) { e.preventDefault(); });
  readHash();
  applySort();
  applyFilter();
  setInterval(refresh, REFRESH_MS);
})();
