/* The product flow dashboard: draws the charts from the page's JSON data island (#flow-data).
   The same numbers are in the data tables under each chart; this file adds no numbers of its own. */
(function () {
  "use strict";
  var island = document.getElementById("flow-data");
  if (!island || typeof Chart === "undefined") {
    return;
  }
  var data = JSON.parse(island.textContent);
  var palette = ["#2f6fde", "#e12d39", "#f0b429", "#3ebd93", "#8662c7", "#616e7c"];
  var colour = function (index) { return palette[index % palette.length]; };
  var canvas = function (name) { return document.getElementById("chart-" + name); };
  Chart.defaults.animation = false;
  Chart.defaults.maintainAspectRatio = false;
  var pointer = function (event, elements) {
    event.native.target.style.cursor = elements.length ? "pointer" : "default";
  };

  // Flow Velocity: stacked bars by type; a click on a bar opens the items behind it.
  var velocity = data.velocity;
  new Chart(canvas("velocity"), {
    type: "bar",
    data: {
      labels: velocity.labels,
      datasets: velocity.types.map(function (slug, index) {
        return { label: slug, data: velocity.series[slug], backgroundColor: colour(index) };
      })
    },
    options: {
      scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } } },
      onClick: function (event, elements, chart) {
        if (!elements.length) { return; }
        var element = elements[0];
        var slug = chart.data.datasets[element.datasetIndex].label;
        var urls = velocity.type_urls[element.index];
        window.location.assign((urls && urls[slug]) || velocity.urls[element.index]);
      },
      onHover: pointer
    }
  });

  // Flow Distribution: actual shares next to the target allocation.
  var distribution = data.distribution;
  var hasTarget = distribution.target.some(function (value) { return value !== null; });
  var distributionSets = [{ label: "Done %", data: distribution.share, backgroundColor: colour(0) }];
  if (hasTarget) {
    distributionSets.push({ label: "Target %", data: distribution.target, backgroundColor: colour(5) });
  }
  new Chart(canvas("distribution"), {
    type: "bar",
    data: { labels: distribution.labels, datasets: distributionSets },
    options: { scales: { y: { beginAtZero: true, suggestedMax: 100 } } }
  });

  // Flow Time: a histogram in days, with p50/p85/p95 marked as vertical lines.
  var flowTime = data.flow_time;
  var percentileLines = {
    id: "percentileLines",
    afterDatasetsDraw: function (chart) {
      var x = chart.scales.x, area = chart.chartArea, ctx = chart.ctx;
      ["p50", "p85", "p95"].forEach(function (name, index) {
        var value = flowTime.percentiles[name];
        if (value === null || value === undefined) { return; }
        var px = x.getPixelForValue(value);
        ctx.save();
        ctx.strokeStyle = ["#3ebd93", "#f0b429", "#e12d39"][index];
        ctx.setLineDash([5, 4]);
        ctx.beginPath();
        ctx.moveTo(px, area.top);
        ctx.lineTo(px, area.bottom);
        ctx.stroke();
        ctx.fillStyle = ctx.strokeStyle;
        ctx.fillText(name + " " + value + " d", px + 3, area.top + 10 + index * 12);
        ctx.restore();
      });
    }
  };
  // A click on a bar lists the items whose flow time falls in it.
  new Chart(canvas("flow_time"), {
    type: "bar",
    data: {
      datasets: [{
        label: "Items",
        data: flowTime.bars.map(function (bar) { return { x: (bar.lower + bar.upper) / 2, y: bar.count }; }),
        backgroundColor: colour(0),
        barPercentage: 1,
        categoryPercentage: 1
      }]
    },
    options: {
      scales: {
        x: { type: "linear", title: { display: true, text: "Flow time (days)" }, beginAtZero: true },
        y: { beginAtZero: true, ticks: { precision: 0 } }
      },
      onClick: function (event, elements) {
        if (elements.length) { window.location.assign(flowTime.urls[elements[0].index]); }
      },
      onHover: pointer
    },
    plugins: [percentileLines]
  });
  canvas("flow_time").dataset.percentiles = JSON.stringify(flowTime.percentiles);

  // Flow Time scatter: each done item by the day it was done, p50/p85/p95 as horizontal lines, the
  // outliers (above p95) as their own dataset; a click on a point opens the item's trace.
  var scatter = data.scatter;
  var day = function (ms) { return new Date(ms).toISOString().slice(0, 10); };
  var pointsWhere = function (outlier) {
    return scatter.points.filter(function (point) { return point.outlier === outlier; });
  };
  var horizontalLines = {
    id: "horizontalPercentiles",
    afterDatasetsDraw: function (chart) {
      var y = chart.scales.y, area = chart.chartArea, ctx = chart.ctx;
      ["p50", "p85", "p95"].forEach(function (name, index) {
        var value = scatter.percentiles[name];
        if (value === null || value === undefined) { return; }
        var py = y.getPixelForValue(value);
        ctx.save();
        ctx.strokeStyle = ["#3ebd93", "#f0b429", "#e12d39"][index];
        ctx.setLineDash([5, 4]);
        ctx.beginPath();
        ctx.moveTo(area.left, py);
        ctx.lineTo(area.right, py);
        ctx.stroke();
        ctx.fillStyle = ctx.strokeStyle;
        ctx.fillText(name + " " + value + " d", area.left + 4, py - 3);
        ctx.restore();
      });
    }
  };
  new Chart(canvas("scatter"), {
    type: "scatter",
    data: {
      datasets: [
        { label: "Items done", data: pointsWhere(false), backgroundColor: colour(0) },
        { label: "Outliers (above p95)", data: pointsWhere(true), backgroundColor: colour(1), pointStyle: "triangle", pointRadius: 5 }
      ]
    },
    options: {
      parsing: false,
      scales: {
        x: { type: "linear", title: { display: true, text: "Done" }, ticks: { callback: day } },
        y: { beginAtZero: true, title: { display: true, text: "Flow time (days)" } }
      },
      plugins: {
        tooltip: {
          callbacks: {
            label: function (context) {
              var point = context.raw;
              return point.key + ": " + point.y + " d, done " + day(point.x);
            }
          }
        }
      },
      onClick: function (event, elements, chart) {
        if (!elements.length) { return; }
        var element = elements[0];
        window.location.assign(chart.data.datasets[element.datasetIndex].data[element.index].url);
      },
      onHover: pointer
    },
    plugins: [horizontalLines]
  });

  // Flow Load and Flow Efficiency: lines over the window.
  new Chart(canvas("load"), {
    type: "line",
    data: {
      labels: data.load.labels,
      datasets: [{ label: "Items in progress", data: data.load.totals, borderColor: colour(0), pointRadius: 0 }]
    },
    options: { scales: { y: { beginAtZero: true, ticks: { precision: 0 } } } }
  });
  new Chart(canvas("efficiency"), {
    type: "line",
    data: {
      labels: data.efficiency.labels,
      datasets: [{ label: "Efficiency %", data: data.efficiency.values, borderColor: colour(3), spanGaps: true }]
    },
    options: { scales: { y: { beginAtZero: true, suggestedMax: 100 } } }
  });
})();
