// The landscape's toggles: show or hide a layer of the picture (integrations, trace links, link rules)
// and the artifact types and models along the edges. Without script every layer shows, labels hidden;
// the tables below the picture say everything in text.
(function () {
  "use strict";
  const picture = document.getElementById("landscape");
  const toggles = document.getElementById("landscape-toggles");
  if (!picture || !toggles) return;
  toggles.hidden = false;
  toggles.querySelectorAll("input[data-layer]").forEach(function (box) {
    const apply = function () {
      picture.classList.toggle("hide-" + box.dataset.layer, !box.checked);
    };
    box.addEventListener("change", apply);
    apply();
  });
  // A click on a tool or an edge jumps to its row below; focus it so the keyboard continues there.
  picture.addEventListener("click", function (event) {
    const link = event.target.closest("a");
    if (!link) return;
    const row = document.getElementById(link.getAttribute("href").slice(1));
    if (row) window.setTimeout(function () { row.focus(); }, 0);
  });
})();
