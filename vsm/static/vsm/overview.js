/* The products overview: fills each product's row from its summary URL (one request per product). */
(function () {
  "use strict";
  var rows = document.querySelectorAll("#overview tr[data-summary]");
  Array.prototype.forEach.call(rows, function (row) {
    fetch(row.getAttribute("data-summary"), { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (response) {
        if (!response.ok) { throw new Error(response.status + " " + response.statusText); }
        return response.text();
      })
      .then(function (html) {
        var body = document.createElement("tbody");
        body.innerHTML = html.trim();
        if (body.firstElementChild) { row.replaceWith(body.firstElementChild); }
      })
      .catch(function (error) {
        var pending = row.querySelector(".pending");
        if (pending) { pending.textContent = "The flow metrics could not be loaded (" + error.message + ")."; }
      });
  });
})();
