/* Draws the charts of a microneedling page (figures built by microneedling/reports/charts.py).
   Each <div data-chart="ID"> gets the figure ID of <script id="mn-charts"> when it comes near the
   viewport (many charts on one page stay fast); every chart is drawn before printing. A click on a
   point of a chart dispatches "mn-chart-click" (detail: chart id and the point's customdata). */
(function () {
  "use strict";
  var holder = document.getElementById("mn-charts");
  if (!holder) return;
  var figures = JSON.parse(holder.textContent);
  var config = {
    responsive: true, displaylogo: false,
    modeBarButtonsToRemove: ["select2d", "lasso2d", "autoScale2d", "toggleSpikelines"],
    toImageButtonOptions: { format: "png", scale: 2 }
  };
  var drawn = {};
  function draw(el) {
    var id = el.getAttribute("data-chart");
    if (drawn[id] || !figures[id]) return;
    drawn[id] = true;
    if (!window.Plotly) {
      el.textContent = "The chart library did not load: the table and the text beside the chart give the same numbers.";
      return;
    }
    var fig = figures[id];
    window.Plotly.newPlot(el, fig.data, fig.layout, config).then(function () {
      el.setAttribute("data-drawn", "1");
      el.on("plotly_click", function (ev) {
        if (!ev || !ev.points || !ev.points.length) return;
        el.dispatchEvent(new CustomEvent("mn-chart-click", {
          bubbles: true, detail: { chart: id, point: ev.points[0].customdata }
        }));
      });
    });
  }
  function drawAll() {
    var els = document.querySelectorAll("[data-chart]");
    for (var i = 0; i < els.length; i++) draw(els[i]);
  }
  window.mnDrawAllCharts = drawAll;
  window.addEventListener("beforeprint", drawAll);
  var els = document.querySelectorAll("[data-chart]");
  if (!("IntersectionObserver" in window)) { drawAll(); return; }
  var seen = new IntersectionObserver(function (entries) {
    entries.forEach(function (e) {
      if (e.isIntersecting) { seen.unobserve(e.target); draw(e.target); }
    });
  }, { rootMargin: "400px 0px" });
  for (var i = 0; i < els.length; i++) seen.observe(els[i]);
})();
