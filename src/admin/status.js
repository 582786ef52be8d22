// The status page's behaviour. The server filters, sorts and cuts the table (?filter=, ?sort=,
// ?limit=), so the page works without this script; with it, typing in the filter box, clicking
// a heading and every few seconds ask the server for the rows again, without reloading the
// page. `#filter=...&sort=-duration` in the address is taken as the same parameters.
(function () {
  "use strict";
  var REFRESH_MS = 5000;
  var TYPING_MS = 250;
  var refreshes = 0;
  var typing = null;
  var params = new URLSearchParams(location.search);

  var hash = new URLSearchParams(location.hash.slice(1));
  ["filter", "sort", "limit"].forEach(function (key) {
    if (hash.has(key)) params.set(key, hash.get(key));
  });

  function query() {
    var text = params.toString();
    return text ? "?" + text : "";
  }

  function replace(next, id) {
    var fresh = next.getElementById(id);
    var old = document.getElementById(id);
    if (fresh && old) old.parentNode.replaceChild(document.importNode(fresh, true), old);
  }

  function refresh() {
    fetch("/" + query(), { headers: { Accept: "text/html" } })
      .then(function (response) {
        if (!response.ok) throw new Error(response.status);
        return response.text();
      })
      .then(function (html) {
        var next = new DOMParser().parseFromString(html, "text/html");
        // The settings stay open or closed as the reader left them.
        var settings = document.getElementById("settings-block");
        var freshSettings = next.getElementById("settings-block");
        if (settings && freshSettings) freshSettings.open = settings.open;
        ["summary", "shown-line", "target-table", "tunnel"].forEach(function (id) {
          replace(next, id);
        });
        history.replaceState(null, "", "/" + query());
        document.body.classList.remove("stale");
        refreshes += 1;
        document.body.setAttribute("data-refreshes", refreshes);
      })
      .catch(function () { document.body.classList.add("stale"); });
  }

  var filter = document.getElementById("filter");
  filter.value = params.get("filter") || "";
  filter.addEventListener("input", function () {
    if (filter.value) params.set("filter", filter.value);
    else params.delete("filter");
    clearTimeout(typing);
    typing = setTimeout(refresh, TYPING_MS);
  });
  document.getElementById("filter-form").addEventListener("submit", function (e) {
    e.preventDefault();
    refresh();
  });
  // Headings and "show all" are links to the same page with other parameters: followed here.
  document.addEventListener("click", function (e) {
    var link = e.target.closest && e.target.closest("#target-table th a, #show-all");
    if (!link) return;
    e.preventDefault();
    params = new URLSearchParams(new URL(link.href).search);
    if (filter.value) params.set("filter", filter.value);
    refresh();
  });
  if (location.hash.length > 1) refresh();
  setInterval(refresh, REFRESH_MS);
})();
