// MAMS analytics pages: live dashboard refresh and run replay. Plain JS, no libraries, no network beyond this site.
(function () {
  "use strict";

  // The batch dashboard polls a small JSON endpoint; when the data version changes it re-renders its body.
  function liveDashboard(root) {
    var url = root.getAttribute("data-live-url");
    var version = root.getAttribute("data-version");
    var delay = 2000;
    function tick() {
      fetch(url, {credentials: "same-origin", headers: {"Accept": "application/json"}})
        .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
        .then(function (data) {
          var fill = document.getElementById("progress-fill");
          if (fill) { fill.style.width = data.percent + "%"; }
          var status = document.getElementById("batch-status");
          if (status) { status.textContent = data.status; status.className = "badge " + data.status; }
          // Say at once when runs wait and no worker runs (or when one has started again).
          var alertBox = document.getElementById("workers-alert");
          if (alertBox) {
            alertBox.hidden = !data.workers_alert;
            document.getElementById("workers-alert-text").textContent = data.workers_alert || "";
          }
          var eta = document.getElementById("batch-eta");
          if (eta) { eta.textContent = data.eta_text || ""; }
          var workers = document.getElementById("workers-live");
          if (workers) {
            workers.textContent = data.workers_live === null ? "worker status unknown (Redis does not answer)"
              : data.workers_live + " worker" + (data.workers_live === 1 ? "" : "s") + " consuming the run queues";
            workers.className = data.workers_live ? "ok" : (data.workers_live === 0 ? "bad" : "");
          }
          if (data.version !== version) {
            version = data.version;
            var sep = window.location.search ? "&" : "?";
            return fetch(window.location.pathname + window.location.search + sep + "fragment=1",
                         {credentials: "same-origin"})
              .then(function (r) { return r.text(); })
              .then(function (html) { root.innerHTML = html; return data; });
          }
          return data;
        })
        .then(function (data) { if (data.live) { setTimeout(tick, delay); } })
        .catch(function () { delay = Math.min(delay * 2, 30000); setTimeout(tick, delay); });
    }
    setTimeout(tick, delay);
  }

  // The run page's replay: show the transcript, events and chart as of a chosen round.
  function replay(slider) {
    var label = document.getElementById("replay-label");
    var play = document.getElementById("replay-play");
    var last = parseInt(slider.max, 10);
    function show(round) {
      document.querySelectorAll("[data-round]").forEach(function (el) {
        var r = parseInt(el.getAttribute("data-round"), 10);
        var hide = r > round || (el.id === "outcome" && round < last);
        el.classList.toggle("future", hide);
      });
      if (label) {
        // The buyer's closing accept or walk-away is its decision after the last round, not a round.
        var offers = parseInt(label.getAttribute("data-offer-rounds") || last, 10);
        label.textContent = round > offers ? "the buyer's decision after round " + offers
                                           : "round " + round + " of " + offers;
      }
    }
    slider.addEventListener("input", function () { show(parseInt(slider.value, 10)); });
    var timer = null;
    if (play) {
      play.addEventListener("click", function () {
        if (timer) { clearInterval(timer); timer = null; play.textContent = "▶ Replay"; return; }
        var r = 1;
        slider.value = r; show(r);
        play.textContent = "■ Stop";
        timer = setInterval(function () {
          r += 1;
          if (r > last) { clearInterval(timer); timer = null; play.textContent = "▶ Replay"; return; }
          slider.value = r; show(r);
        }, 1200);
      });
    }
  }

  document.addEventListener("DOMContentLoaded", function () {
    // A form that changes something for good (cancelling a batch) asks first.
    document.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (e) {
        if (!window.confirm(form.getAttribute("data-confirm"))) { e.preventDefault(); }
      });
    });
    var dash = document.getElementById("dashboard");
    if (dash && dash.getAttribute("data-live") === "1") { liveDashboard(dash); }
    var slider = document.getElementById("replay-round");
    if (slider) { replay(slider); }
  });
})();
