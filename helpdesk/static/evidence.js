/* The Evidence page's download. A pack is built while the browser waits (a quarter can take half
 * a minute), and nothing on the page shows it; a second click would build a second pack. So on
 * submit the button is marked busy (aria-disabled, still focusable) and further submits are
 * ignored, and #download-status says the pack is being built. The server answers the ZIP with a
 * cookie named after this download (evidence_downloaded_ID=1, ID the random id sent in
 * download_id: a name for each download, so two tabs downloading at once never read each
 * other's); once it appears the pack has come, and the button works again. A refused form comes
 * back as a new page. Without JavaScript the form works the same, without the status.
 */
(function () {
  "use strict";

  var form = document.getElementById("evidence-form");
  var status = document.getElementById("download-status");
  if (!form || !status || !window.crypto || !window.crypto.getRandomValues) {
    return;
  }
  var button = form.querySelector("button[type=submit]");
  var COOKIE = "evidence_downloaded_"; /* and the download's id */
  var POLL_MS = 500;
  var GIVE_UP_MS = 5 * 60 * 1000; /* longer than any pack the page builds */
  var timer = null;

  function newId() {
    var bytes = new Uint8Array(16);
    window.crypto.getRandomValues(bytes);
    return Array.prototype.map.call(bytes, function (value) {
      return ("0" + value.toString(16)).slice(-2);
    }).join("");
  }

  function arrived(id) {
    return document.cookie.split(/;\s*/).indexOf(COOKIE + id + "=1") !== -1;
  }

  function forget(id) {
    document.cookie = COOKIE + id + "=; Path=/evidence; Max-Age=0; SameSite=Strict";
  }

  function finish(message) {
    window.clearInterval(timer);
    timer = null;
    button.removeAttribute("aria-disabled");
    status.textContent = message;
  }

  form.addEventListener("submit", function (event) {
    if (timer !== null) {
      event.preventDefault(); /* a second click while the first pack is built */
      return;
    }
    var id = newId();
    form.querySelector("input[name=download_id]").value = id;
    button.setAttribute("aria-disabled", "true");
    status.textContent = form.getAttribute("data-building");
    var started = Date.now();
    timer = window.setInterval(function () {
      if (arrived(id)) {
        forget(id);
        finish(form.getAttribute("data-done"));
      } else if (Date.now() - started > GIVE_UP_MS) {
        finish(form.getAttribute("data-slow"));
      }
    }, POLL_MS);
  });
})();
