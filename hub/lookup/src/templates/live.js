// Live updates of the case page: replaces the case section with the
// server-rendered one whenever the hub announces a change. Without
// JavaScript (or EventSource) the page still works; reload to refresh.
(function () {
  "use strict";
  var box = document.getElementById("case");
  if (!box || !window.EventSource) { return; }
  var url = box.getAttribute("data-events");
  if (!url) { return; }
  var source = new EventSource(url);
  source.addEventListener("case", function (e) { box.innerHTML = e.data; });
  source.addEventListener("end", function () { source.close(); });
})();
