// Warden console: the one script, served from the console itself (no CDN, no inline script).
// Pages whose state changes elsewhere (a task's runs, the airlock) mark <main data-refresh="N">;
// this reloads their <main> every N seconds, doubling the pause while nothing changes or the
// console does not answer (at most 60 s), and never while a form on the page is being filled in.
// Without JavaScript every page still reads; reload it to see new states.
"use strict";
(function () {
  var main = document.querySelector("main[data-refresh]");
  if (!main) { return; }
  var base = Math.max(1, parseInt(main.getAttribute("data-refresh"), 10) || 5);
  var pause = base;
  function busy() {
    var inputs = document.querySelectorAll("main input[type=text]");
    for (var i = 0; i < inputs.length; i++) {
      if (inputs[i].value !== "" || inputs[i] === document.activeElement) { return true; }
    }
    return false;
  }
  function again() { window.setTimeout(tick, pause * 1000); }
  function tick() {
    if (busy()) { again(); return; }
    fetch(window.location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (resp) {
        if (!resp.ok) { throw new Error("status " + resp.status); }
        return resp.text();
      })
      .then(function (text) {
        var doc = new DOMParser().parseFromString(text, "text/html");
        var fresh = doc.querySelector("main");
        var current = document.querySelector("main");
        if (fresh && current && fresh.innerHTML !== current.innerHTML) {
          current.replaceWith(fresh);
          pause = base;
        } else {
          pause = Math.min(pause * 2, 60);
        }
        if (fresh && fresh.hasAttribute("data-refresh")) { again(); }
      })
      .catch(function () { pause = Math.min(pause * 2, 60); again(); });
  }
  again();
})();
