// Tidemark console: the pages work without this script; it adds live notifications.
"use strict";
(function () {
  // Notifications: new ones arrive as server-sent events carrying the row's HTML, rendered
  // (and escaped) by the server; a row already on the page is not added twice.
  var table = document.getElementById("notifications");
  if (table && table.dataset.live && window.EventSource) {
    var body = table.tBodies[0];
    var source = new EventSource(table.dataset.live);
    source.addEventListener("notification", function (event) {
      var holder = document.createElement("tbody");
      holder.innerHTML = event.data;
      var row = holder.firstElementChild;
      if (!row || document.getElementById(row.id)) return;
      row.classList.add("fresh");
      body.insertBefore(row, body.firstChild);
      var empty = document.getElementById("no-notifications");
      if (empty) empty.remove();
    });
  }
})();
