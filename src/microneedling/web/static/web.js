/* The pages' own script (microneedling.web): field errors as one types, variant fields (device and
   concern types), rows of the sessions table, a job's progress from its server-sent events, a click
   on a Pareto point choosing that plan, and the print buttons. No library. */
(function () {
  "use strict";

  function csrfOf(form) {
    var f = form.querySelector("input[name=csrf_token]");
    return f ? f.value : "";
  }

  /* ---- variant fields: only the chosen type's fields are shown and submitted */
  function applyVariant(select) {
    var group = select.getAttribute("data-variant-switch");
    var blocks = document.querySelectorAll("[data-variant-of]");
    for (var i = 0; i < blocks.length; i++) {
      var b = blocks[i];
      if (b.getAttribute("data-variant-of") !== group) continue;
      var on = b.getAttribute("data-variant") === select.value;
      b.hidden = !on;
      var inputs = b.querySelectorAll("input, select, textarea");
      for (var j = 0; j < inputs.length; j++) inputs[j].disabled = !on;
    }
  }
  var switches = document.querySelectorAll("[data-variant-switch]");
  for (var s = 0; s < switches.length; s++) {
    applyVariant(switches[s]);
    switches[s].addEventListener("change", function (ev) { applyVariant(ev.target); });
  }

  /* ---- field errors as one types: the server validates with the package's models */
  function showErrors(form, errors) {
    var slots = form.querySelectorAll("[data-error-for]");
    for (var i = 0; i < slots.length; i++) {
      var key = slots[i].getAttribute("data-error-for");
      slots[i].textContent = (errors[key] || []).join(" ");
    }
    var inputs = form.querySelectorAll("[data-field]");
    for (var k = 0; k < inputs.length; k++) {
      var bad = !!errors[inputs[k].getAttribute("data-field")];
      if (bad) inputs[k].setAttribute("aria-invalid", "true");
      else inputs[k].removeAttribute("aria-invalid");
    }
  }
  function checker(form) {
    var url = form.getAttribute("data-check");
    if (!url) return;
    var timer = null, seq = 0;
    function run() {
      var mine = ++seq;
      fetch(url, {
        method: "POST", body: new FormData(form), credentials: "same-origin",
        headers: { "X-CSRF-Token": csrfOf(form) }
      }).then(function (r) { return r.ok ? r.json() : null; })
        .then(function (data) { if (data && mine === seq) showErrors(form, data.errors || {}); })
        .catch(function () { /* offline: the server checks again on submit */ });
    }
    function later() { clearTimeout(timer); timer = setTimeout(run, 350); }
    form.addEventListener("input", later);
    form.addEventListener("change", later);
    form.mnCheck = run;
  }
  var forms = document.querySelectorAll("form[data-check]");
  for (var f = 0; f < forms.length; f++) checker(forms[f]);

  /* ---- the sessions table: add and remove rows; inputs renumbered sessions[0..n-1] */
  function renumber(tbody) {
    var rows = tbody.querySelectorAll("tr[data-session-row]");
    for (var i = 0; i < rows.length; i++) {
      var num = rows[i].querySelector("[data-row-number]");
      if (num) num.textContent = String(i + 1);
      var els = rows[i].querySelectorAll("[name], [data-field], [data-error-for], [id], [aria-label], [aria-describedby]");
      for (var j = 0; j < els.length; j++) {
        var el = els[j];
        ["name", "data-field", "data-error-for"].forEach(function (a) {
          var v = el.getAttribute(a);
          if (v) el.setAttribute(a, v.replace(/^sessions\[\d+\]/, "sessions[" + i + "]"));
        });
        ["id", "aria-describedby"].forEach(function (a) {
          var v = el.getAttribute(a);
          if (v) el.setAttribute(a, v.replace(/f-sessions-\d+-/g, "f-sessions-" + i + "-"));
        });
        var label = el.getAttribute("aria-label");
        if (label) el.setAttribute("aria-label", label.replace(/^(Session|Remove session) \d+/, "$1 " + (i + 1)));
      }
    }
  }
  document.addEventListener("click", function (ev) {
    var t = ev.target;
    if (!(t instanceof Element)) return;
    if (t.hasAttribute("data-add-row")) {
      var tbody = document.querySelector("#" + t.getAttribute("data-add-row") + " tbody");
      var rows = tbody.querySelectorAll("tr[data-session-row]");
      var copy = rows[rows.length - 1].cloneNode(true);
      var last = rows[rows.length - 1];
      tbody.appendChild(copy);
      var selects = last.querySelectorAll("select");
      var copies = copy.querySelectorAll("select");
      for (var i = 0; i < selects.length; i++) copies[i].value = selects[i].value;
      renumber(tbody);
      var first = copy.querySelector("input, select");
      if (first) first.focus();
      var form = t.closest("form");
      if (form && form.mnCheck) form.mnCheck();
    } else if (t.hasAttribute("data-remove-row")) {
      var row = t.closest("tr");
      var body = row.parentNode;
      if (body.querySelectorAll("tr[data-session-row]").length > 1) {
        body.removeChild(row);
        renumber(body);
        var form2 = body.closest("form");
        if (form2 && form2.mnCheck) form2.mnCheck();
      }
    } else if (t.hasAttribute("data-print")) {
      if (window.mnDrawAllCharts) window.mnDrawAllCharts();
      window.print();
    }
  });

  /* ---- a click on a Pareto point chooses that plan */
  document.addEventListener("mn-chart-click", function (ev) {
    var index = ev.detail && ev.detail.point;
    if (index === undefined || index === null) return;
    var radio = document.getElementById("plan-" + index);
    if (radio) { radio.checked = true; radio.focus(); }
  });

  /* ---- a job's progress (server-sent events of the API), then the finished page */
  var holder = document.querySelector("[data-run-events]");
  if (holder && window.EventSource) {
    var id = holder.getAttribute("data-run-events");
    var bar = document.getElementById("run-progress");
    var status = document.getElementById("run-status");
    var source = new EventSource("/api/v1/runs/" + id + "/events");
    var show = function (ev) {
      var d = JSON.parse(ev.data);
      bar.value = d.progress || 0;
      bar.textContent = Math.round(100 * (d.progress || 0)) + "%";
      status.textContent = d.status + ": " + (d.text || "");
      return d;
    };
    source.addEventListener("progress", show);
    source.addEventListener("end", function (ev) {
      show(ev);
      source.close();
      window.location.reload();
    });
    source.onerror = function () {
      source.close();
      setTimeout(function () { window.location.reload(); }, 2000);
    };
  }
})();
