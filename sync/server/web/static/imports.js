// The import progress bar: polls the job's progress until the commit ends, then reloads.
(function () {
  var bar = document.getElementById("progress");
  if (!bar) return;
  var text = document.getElementById("progress-text");
  function poll() {
    fetch(bar.getAttribute("data-url"), {credentials: "same-origin"})
      .then(function (r) { return r.json(); })
      .then(function (p) {
        if (p.total) { bar.max = p.total; bar.value = p.done; text.textContent = p.done + " / " + p.total; }
        if (p.status === "committing") { setTimeout(poll, 300); } else { location.reload(); }
      })
      .catch(function () { setTimeout(poll, 1000); });
  }
  poll();
})();
