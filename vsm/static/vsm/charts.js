/* Simple bar and line charts from the page's JSON data island (#chart-data): {name: {labels, datasets:
   [{label, data}], type, horizontal, title, max, integer}}, each drawn into <canvas id="chart-<name>">.
   The same numbers are in the data table under each chart; this file adds no numbers of its own. */
(function () {
  "use strict";
  var island = document.getElementById("chart-data");
  if (!island || typeof Chart === "undefined") {
    return;
  }
  var charts = JSON.parse(island.textContent);
  var palette = ["#2f6fde", "#f0b429", "#e12d39", "#3ebd93", "#8662c7", "#616e7c"];
  Chart.defaults.animation = false;
  Chart.defaults.maintainAspectRatio = false;

  Object.keys(charts).forEach(function (name) {
    var canvas = document.getElementById("chart-" + name);
    if (!canvas) { return; }
    var spec = charts[name];
    var type = spec.type || "bar";
    var valueAxis = { beginAtZero: true, title: { display: !!spec.title, text: spec.title || "" } };
    if (spec.max !== undefined) { valueAxis.suggestedMax = spec.max; }
    if (spec.integer) { valueAxis.ticks = { precision: 0 }; }
    var scales = spec.horizontal ? { x: valueAxis } : { y: valueAxis };
    new Chart(canvas, {
      type: type,
      data: {
        labels: spec.labels,
        datasets: spec.datasets.map(function (dataset, index) {
          var colour = palette[index % palette.length];
          return {
            label: dataset.label,
            data: dataset.data,
            backgroundColor: colour,
            borderColor: colour,
            spanGaps: true
          };
        })
      },
      options: { indexAxis: spec.horizontal ? "y" : "x", scales: scales }
    });
  });
})();
