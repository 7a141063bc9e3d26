// Draws every chart a page embeds: <figure class="chart"> holding a <div class="plot"> and the chart's JSON
// spec in <script type="application/json">. Kinds: "line" (x, series[{label, values, low?, high?}]) and
// "bars" (labels, series[{label, values}]). Data comes from the server already downsampled.
(function () {
  "use strict";
  var PALETTE = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#db2777", "#65a30d",
    "#7c3aed", "#475569"];

  function colour(i) { return PALETTE[i % PALETTE.length]; }

  function fade(hex) { return hex + "33"; }

  // A value with no neighbours draws no line: mark it with a dot even on a dense chart.
  function isolated(u, seriesIdx, show) {
    if (show) { return null; }
    var values = u.data[seriesIdx], found = [];
    for (var i = 0; i < values.length; i++) {
      if (values[i] != null && (i === 0 || values[i - 1] == null) && (i === values.length - 1 || values[i + 1] == null)) {
        found.push(i);
      }
    }
    return found.length ? found : null;
  }

  function wholeTicks(_, ticks) {
    return ticks.map(function (t) { return Number.isInteger(t) ? String(t) : ""; });
  }

  function lineChart(spec, width, height) {
    var data = [spec.x];
    var series = [{ label: spec.x_label || "step" }];
    var bands = [];
    spec.series.forEach(function (s, i) {
      data.push(s.values);
      series.push({ label: s.label, stroke: colour(i), width: 1.5, spanGaps: true,
        points: { show: spec.x.length < 60, filter: isolated } });
      if (s.low && s.high) {
        var hi = data.push(s.high) - 1;
        series.push({ label: s.label + " max", stroke: fade(colour(i)), width: 0, spanGaps: true,
          points: { show: false } });
        var lo = data.push(s.low) - 1;
        series.push({ label: s.label + " min", stroke: fade(colour(i)), width: 0, spanGaps: true,
          points: { show: false } });
        bands.push({ series: [hi, lo], fill: fade(colour(i)) });
      }
    });
    return new uPlot({
      width: width, height: height, series: series, bands: bands,
      scales: { x: { time: false }, y: { distr: spec.log ? 3 : 1 } },
      axes: [{ label: spec.x_label || "", values: spec.x_integer ? wholeTicks : undefined },
        { label: spec.y_label || "" }],
      legend: { show: spec.series.length > 1 || !!spec.legend },
    }, data, null);
  }

  function barChart(spec, width, height) {
    var labels = spec.labels;
    var data = [labels.map(function (_, i) { return i; })];
    var series = [{ label: spec.x_label || "" }];
    var n = spec.series.length;
    spec.series.forEach(function (s, i) {
      data.push(s.values);
      // Several series (reference vs current) overlay as translucent bars at the same places.
      series.push({ label: s.label, fill: colour(i) + (n > 1 ? "66" : "aa"), stroke: colour(i), width: 1,
        paths: uPlot.paths.bars({ size: [0.8, 80] }),
        points: { show: false } });
    });
    return new uPlot({
      width: width, height: height, series: series,
      // Bars grow from zero, so nearly equal bars look nearly equal.
      scales: { x: { time: false, range: [-0.6, labels.length - 0.4] },
        y: { range: function (_, min, max) { return [Math.min(0, min), Math.max(0, max) * 1.05 || 1]; } } },
      axes: [{ label: spec.x_label || "", values: function (_, ticks) {
        var stride = Math.ceil(labels.length / 16);  // at most ~16 labels, so they never overlap
        return ticks.map(function (t) {
          return Number.isInteger(t) && labels[t] !== undefined && t % stride === 0 ? labels[t] : "";
        });
      }, splits: function () { return labels.map(function (_, i) { return i; }); } },
      { label: spec.y_label || "" }],
      legend: { show: n > 1 },
    }, data, null);
  }

  function draw(figure) {
    var spec = JSON.parse(figure.querySelector("script[type='application/json']").textContent);
    var plot = figure.querySelector(".plot");
    var height = parseInt(figure.dataset.height || "220", 10);
    var width = Math.max(plot.clientWidth || figure.clientWidth || 480, 240);
    var empty = spec.kind === "bars" ? !spec.labels.length : !spec.x.length;
    if (empty) { plot.textContent = "no data"; figure.dataset.rendered = "empty"; return; }
    var chart = spec.kind === "bars" ? barChart(spec, width, height) : lineChart(spec, width, height);
    plot.appendChild(chart.root);
    figure.dataset.rendered = "1";
    window.addEventListener("resize", function () {
      chart.setSize({ width: Math.max(plot.clientWidth, 240), height: height });
    });
  }

  function start() {
    document.querySelectorAll("figure.chart").forEach(function (figure) {
      try { draw(figure); } catch (e) { figure.dataset.rendered = "error"; throw e; }
    });
    // Checkboxes that pick runs to compare: the button says how many are picked.
    var form = document.querySelector("form.pick");
    if (form) {
      var button = form.querySelector("button.compare");
      var update = function () {
        var n = form.querySelectorAll("input[name='run']:checked").length;
        button.disabled = n < 2 || n > 10;
        button.textContent = "Compare " + n + " run" + (n === 1 ? "" : "s");
      };
      form.addEventListener("change", update);
      update();
    }
    // Pages that watch live numbers reload themselves (deployments, monitoring).
    var refresh = document.body.dataset.refresh;
    if (refresh) { setTimeout(function () { window.location.reload(); }, parseInt(refresh, 10) * 1000); }
  }

  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", start); }
  else { start(); }
})();
