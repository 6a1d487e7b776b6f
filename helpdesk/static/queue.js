/* The callback queue keeps itself up to date: every few seconds (data-poll-seconds on
 * #queue-live, 15 by default) it fetches the server-rendered lists from data-items-url (open
 * callbacks, answered calls awaiting an outcome, email enquiries awaiting a response) and
 * swaps each into the page. What the agent is doing survives the swap: keyboard focus, text
 * typed into a form (also what the server put back after a refusal), choices made, panels
 * opened. Changes are announced politely in #queue-status, and the page's title counts what is
 * overdue and due soon, for the browser's tab; a tab out of sight asks once a minute. Without
 * JavaScript the page works the same, refreshed by hand.
 */
(function () {
  "use strict";

  var live = document.getElementById("queue-live");
  var holder = document.getElementById("queue-items");
  var status = document.getElementById("queue-status");
  if (!live || !holder || !status || !window.fetch || !window.DOMParser) {
    return;
  }
  /* Each live part: its root's class, and the heading that takes focus if the agent's item leaves it. */
  var PARTS = [
    { selector: ".queue-items", heading: "open-title" },
    { selector: ".awaiting-items", heading: "awaiting-title" },
    { selector: ".emails-items", heading: "emails-title" }
  ];
  /* An unchanged list is swapped at most this often, for its times left; a changed one at once. */
  var TICK_MS = 60000;
  var swappedAt = {};
  var paused = false;
  var pause = document.getElementById("queue-pause");
  var timer = null;
  var busy = false;
  var failing = false;
  var signedOut = false;

  var polledAt = Date.now(); /* the page has just come with its lists */
  /* The page's title starts with the open callbacks' own (data-title: how many are overdue and
   * due soon), so the browser's tab says so while the agent works in another; the rest of it (the
   * desk's name) stays as it is. */
  var titled = document.querySelector(".queue-items");
  var titleStart = titled ? titled.getAttribute("data-title") : null;
  var titleRest = titleStart && document.title.indexOf(titleStart) === 0
    ? document.title.slice(titleStart.length) : null;

  function seconds(name, otherwise) {
    var value = parseFloat(live.getAttribute(name || "data-poll-seconds"));
    return value > 0 ? value : otherwise || 15;
  }

  function schedule() {
    window.clearTimeout(timer);
    timer = window.setTimeout(refresh, seconds() * 1000);
  }

  function byId(root, id) {
    return id ? root.querySelector("#" + window.CSS.escape(id)) : null;
  }

  /* What the agent has changed in the list, by element id, to carry over into the new list.
   * A panel the server opened with what was typed put back (data-typed, after a refusal) is
   * kept whole: the new list has it empty. */
  function remember(root) {
    var saved = { fields: [], open: [] };
    root.querySelectorAll("input, select, textarea").forEach(function (field) {
      if (!field.id || field.type === "hidden") {
        return;
      }
      var typed = Boolean(field.closest("[data-typed]"));
      if (field.type === "radio" || field.type === "checkbox") {
        if (typed || field.checked !== field.defaultChecked) {
          saved.fields.push({ id: field.id, checked: field.checked });
        }
      } else if (field.tagName === "SELECT") {
        var chosen = field.options[field.selectedIndex];
        if (typed || (chosen && !chosen.defaultSelected && field.selectedIndex !== 0)) {
          saved.fields.push({ id: field.id, value: field.value });
        }
      } else if (typed || field.value !== field.defaultValue) {
        saved.fields.push({ id: field.id, value: field.value });
      }
    });
    root.querySelectorAll("details[open]").forEach(function (panel) {
      if (panel.id) {
        saved.open.push(panel.id);
      }
    });
    return saved;
  }

  function restore(root, saved) {
    saved.fields.forEach(function (item) {
      var field = byId(root, item.id);
      if (!field) {
        return;
      }
      if ("checked" in item) {
        field.checked = item.checked;
      } else {
        field.value = item.value;
      }
    });
    saved.open.forEach(function (id) {
      var panel = byId(root, id);
      if (panel) {
        panel.open = true;
      }
    });
  }

  function plural(count, one, many) {
    return count + " " + (count === "1" ? one : many);
  }

  /* What changed, in a sentence: the parts that changed, each with its counts. */
  function announcement(changed) {
    var said = changed.map(function (part) {
      if (part.matches(".queue-items")) {
        var text = part.getAttribute("data-open") + " open, " + part.getAttribute("data-overdue") + " overdue";
        var soon = part.getAttribute("data-due-soon");
        return soon && soon !== "0" ? text + ", " + soon + " due soon" : text;
      }
      var count = part.getAttribute("data-count");
      if (part.matches(".awaiting-items")) {
        return plural(count, "answered call", "answered calls") + " awaiting an outcome";
      }
      return plural(count, "email enquiry", "email enquiries") + " awaiting a response";
    });
    return "Queue updated: " + said.join("; ") + ".";
  }

  function swap(html) {
    var page = new DOMParser().parseFromString(html, "text/html");
    var changed = [];
    var moved = null;
    PARTS.forEach(function (part) {
      var result = swapPart(page.querySelector(part.selector), document.querySelector(part.selector),
        document.getElementById(part.heading), part.selector);
      if (result.changed) {
        changed.push(result.changed);
      }
      moved = moved || result.moved;
    });
    var open = document.querySelector(".queue-items");
    if (titleRest !== null && open && open.getAttribute("data-title")) {
      document.title = open.getAttribute("data-title") + titleRest;
    }
    var text = [changed.length ? announcement(changed) : "", moved || ""].join(" ").trim();
    if (text) {
      status.textContent = text;
    }
  }

  /* The item (callback, answered call, email) holding `element`, by its id. */
  function itemOf(element, root) {
    while (element && element !== root) {
      if (element.id && /^(callback|call|email)-[^-]+$/.test(element.id)) {
        return element;
      }
      element = element.parentElement;
    }
    return null;
  }

  /* Focus that lost its control to the swap: the item's heading (or row) if it is still listed,
   * else the item that took its place, else the list's heading. Says which, for a screen reader. */
  function refocus(adopted, heading, itemId, index) {
    var item = itemId ? byId(adopted, itemId) : null;
    var said;
    if (item) {
      said = "The item you were on has changed; focus is on it.";
    } else {
      var items = Array.prototype.filter.call(adopted.querySelectorAll("[id]"), function (element) {
        return itemOf(element, adopted) === element;
      });
      item = items.length ? items[Math.min(index, items.length - 1)] : null;
      said = "The item you were on has left the list; focus is on " + (item ? "the next one." : "the list's heading.");
    }
    var target = item ? (item.querySelector(".item-title") || item.querySelector("th") || item) : heading;
    if (!target) {
      return null;
    }
    if (!target.hasAttribute("tabindex") && !/^(A|BUTTON|INPUT|SELECT|TEXTAREA|SUMMARY)$/.test(target.tagName)) {
      target.setAttribute("tabindex", "-1");
    }
    target.focus({ preventScroll: true });
    target.scrollIntoView({ block: "nearest" });
    return said;
  }

  /* Swap one part for its fresh copy when what it says changed, or once a minute (times left);
   * returns the part put in if it changed, and what to say if focus had to move. */
  function swapPart(fresh, old, heading, key) {
    var result = { changed: null, moved: null };
    if (!fresh || !old) {
      return result;
    }
    var changed = fresh.getAttribute("data-signature") !== old.getAttribute("data-signature");
    var now = Date.now();
    if (!changed && now - (swappedAt[key] || 0) < TICK_MS) {
      return result; /* nothing new: leave it be, so a screen reader's place in it stays */
    }
    swappedAt[key] = now;
    var active = document.activeElement;
    var activeItem = active && old.contains(active) ? itemOf(active, old) : null;
    var itemIndex = activeItem ? Array.prototype.filter.call(old.querySelectorAll("[id]"), function (element) {
      return itemOf(element, old) === element;
    }).indexOf(activeItem) : 0;
    var focusId = active && old.contains(active) ? active.id : null;
    var hadFocus = Boolean(active && old.contains(active));
    var selection = null;
    if (focusId && typeof active.selectionStart === "number") {
      try {
        selection = [active.selectionStart, active.selectionEnd];
      } catch (ignored) { /* not a text field */ }
    }
    var saved = remember(old);
    var adopted = document.importNode(fresh, true);
    var said = old.querySelector(".item-message");
    old.replaceWith(adopted);
    restore(adopted, saved);
    if (said) { /* what the agent's last action said stays at its callback or call */
      var item = byId(adopted, said.id.replace(/-said$/, ""));
      var place = item && (item.querySelector("article, .outcome-actions") || item);
      if (place) {
        place.insertBefore(said, place.firstChild);
      }
    }
    if (hadFocus) {
      var again = byId(adopted, focusId);
      if (again) {
        again.focus({ preventScroll: true });
        if (selection && typeof again.setSelectionRange === "function") {
          try {
            again.setSelectionRange(selection[0], selection[1]);
          } catch (ignored) { /* not a text field */ }
        }
      } else {
        result.moved = refocus(adopted, heading, activeItem && activeItem.id, itemIndex);
      }
    }
    result.changed = changed ? adopted : null;
    return result;
  }

  /* The lists' address, with `have`: the signature of each part that would be swapped only if
   * it changed (swapped under a minute ago, or any while the tab is out of sight), so the server
   * leaves those out when they did not. */
  function itemsUrl() {
    var url = live.getAttribute("data-items-url");
    var now = Date.now();
    var have = [];
    PARTS.forEach(function (part) {
      var shown = document.querySelector(part.selector);
      /* Out of sight, times left need no bringing up to date: only a change is worth sending. */
      if (shown && (document.hidden || now - (swappedAt[part.selector] || 0) < TICK_MS)) {
        have.push(part.selector.slice(1, -"-items".length) + ":" + shown.getAttribute("data-signature"));
      }
    });
    if (!have.length) {
      return url;
    }
    return url + (url.indexOf("?") < 0 ? "?" : "&") + "have=" + encodeURIComponent(have.join(","));
  }

  function refresh() {
    if (signedOut || paused) {
      return; /* nothing more to fetch until the agent signs in again, or resumes */
    }
    /* A tab out of sight asks only once a minute (data-hidden-poll-seconds), for its title. */
    var hiddenWait = seconds("data-hidden-poll-seconds", 60) * 1000;
    if (busy || (document.hidden && Date.now() - polledAt < hiddenWait)) {
      schedule();
      return;
    }
    busy = true;
    polledAt = Date.now();
    window.fetch(itemsUrl(), {
      credentials: "same-origin",
      cache: "no-store",
      redirect: "manual", /* signed out: the sign-in page is not a list */
      headers: { "Accept": "text/html" }
    }).then(function (response) {
      if (response.status === 401) {
        signedOut = true;
        status.textContent = "You have been signed out. Reload the page to sign in again.";
        throw new Error("signed out");
      }
      if (!response.ok || response.type === "opaqueredirect") {
        throw new Error("HTTP " + response.status);
      }
      return response.text();
    }).then(function (html) {
      failing = false;
      swap(html);
    }).catch(function () {
      if (!failing && !signedOut) {
        status.textContent = "The queue could not be updated. Use “Refresh the queue now” to reload it.";
        failing = true;
      }
    }).then(function () {
      busy = false;
      schedule();
    });
  }

  /* A new interval takes effect at once (tests shorten it; nothing else changes it). */
  new MutationObserver(schedule).observe(live, { attributes: true, attributeFilter: ["data-poll-seconds"] });
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) {
      refresh();
    }
  });
  /* WCAG 2.2.2: the agent can stop the list changing under them, and start it again. */
  if (pause) {
    pause.hidden = false;
    pause.addEventListener("click", function () {
      paused = !paused;
      pause.setAttribute("aria-pressed", paused ? "true" : "false");
      live.setAttribute("data-live", paused ? "paused" : "on");
      if (paused) {
        window.clearTimeout(timer);
        status.textContent = "Live updates paused. Press the button again to resume them.";
      } else {
        status.textContent = "Live updates resumed.";
        swappedAt = {};
        refresh();
      }
    });
  }
  live.setAttribute("data-live", "on");
  /* What the agent's last action said: take them (and a screen reader) to it. */
  var said = document.querySelector(".item-message");
  if (said) {
    said.focus({ preventScroll: true });
    said.scrollIntoView({ block: "center" });
  }
  schedule();
}());
