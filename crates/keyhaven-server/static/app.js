// Keyhaven console: the little a browser needs beyond HTML forms.
// Loaded with `defer`; no inline script anywhere (Content-Security-Policy: script-src 'self').
(function () {
  "use strict";

  // Timestamps: the server writes UTC; show them in the browser's time zone, UTC in the tooltip.
  function localTimes() {
    document.querySelectorAll("time[data-local]").forEach(function (el) {
      var d = new Date(el.getAttribute("datetime"));
      if (isNaN(d.getTime())) return;
      var opts = el.dataset.local === "date"
        ? { year: "numeric", month: "short", day: "numeric" }
        : { year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", timeZoneName: "short" };
      try {
        el.textContent = d.toLocaleString(undefined, opts);
      } catch (e) { /* keep the UTC text */ }
    });
  }

  // Copy buttons: data-copy names the input whose value is copied.
  function copyFrom(button) {
    var target = document.getElementById(button.dataset.copy);
    if (!target) return;
    var text = target.value !== undefined ? target.value : target.textContent;
    var done = function () {
      var old = button.dataset.label || button.textContent;
      button.dataset.label = old;
      button.textContent = "Copied";
      setTimeout(function () { button.textContent = old; }, 2000);
    };
    var fallback = function () {
      var wasPassword = target.type === "password";
      if (wasPassword) target.type = "text";
      target.select();
      try { document.execCommand("copy"); } catch (e) { /* nothing more to try */ }
      if (wasPassword) target.type = "password";
      window.getSelection && window.getSelection().removeAllRanges();
      done();
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, fallback);
    } else {
      fallback();
    }
  }

  // Show / Hide a secret field.
  function toggleSecret(button) {
    var target = document.getElementById(button.dataset.toggleSecret);
    if (!target) return;
    var show = target.type === "password";
    target.type = show ? "text" : "password";
    button.textContent = show ? "Hide" : "Show";
    button.setAttribute("aria-pressed", show ? "true" : "false");
  }

  // Confirmation dialog for forms carrying data-confirm (and the bulk delete form).
  var pending = null;
  function confirmDialog(message, label, onConfirm) {
    var dlg = document.getElementById("confirm-dialog");
    if (!dlg || typeof dlg.showModal !== "function") {
      if (window.confirm(message)) onConfirm();
      return;
    }
    document.getElementById("confirm-message").textContent = message;
    var ok = dlg.querySelector("button.confirm");
    ok.textContent = label || "Confirm";
    pending = onConfirm;
    dlg.showModal();
    // Focus the safe choice: Enter or Space must not confirm by accident.
    var cancel = dlg.querySelector("[data-close]");
    (cancel || ok).focus();
  }

  function selectedCount(name) {
    return document.querySelectorAll('input[type=checkbox][name="' + name + '"]:checked').length;
  }

  function updateCount(form) {
    var out = form.querySelector("[data-selected-count]");
    if (!out) return;
    var n = selectedCount(form.dataset.bulk);
    out.textContent = n === 0 ? "" : (n === 1 ? "1 selected" : n + " selected");
    // The bar appears once a row is selected.
    form.classList.toggle("bulk-idle", n === 0);
  }

  document.addEventListener("click", function (ev) {
    var el = ev.target.closest("button, input");
    if (!el) return;
    if (el.dataset.copy) { ev.preventDefault(); copyFrom(el); }
    else if (el.dataset.toggleSecret) { ev.preventDefault(); toggleSecret(el); }
    else if (el.dataset.selectAll !== undefined && el.type === "checkbox") {
      document.querySelectorAll('input[type=checkbox][name="' + el.dataset.selectAll + '"]').forEach(function (c) { c.checked = el.checked; });
      document.querySelectorAll("form[data-bulk]").forEach(updateCount);
    } else if (el.matches("#confirm-dialog button.confirm")) {
      var dlg = document.getElementById("confirm-dialog");
      dlg.close();
      var go = pending; pending = null;
      if (go) go();
    } else if (el.matches("#confirm-dialog [data-close]")) {
      pending = null;
      document.getElementById("confirm-dialog").close();
    }
  });

  document.addEventListener("change", function (ev) {
    if (ev.target.matches("input.row-select")) {
      document.querySelectorAll("form[data-bulk]").forEach(updateCount);
    }
  });

  document.addEventListener("submit", function (ev) {
    var form = ev.target;
    if (form.dataset.confirmed === "1") return;
    var message = form.dataset.confirm;
    var label = form.dataset.confirmLabel;
    var submitter = ev.submitter || null;
    if (form.dataset.bulk) {
      var n = selectedCount(form.dataset.bulk);
      if (n === 0) {
        ev.preventDefault();
        confirmDialog("Select at least one API key first.", "OK", function () {});
        return;
      }
      var keys = n + (n === 1 ? " API key" : " API keys");
      var them = n === 1 ? "it" : "them";
      if (submitter && submitter.dataset.bulkVerb === "revoke") {
        message = "Revoke " + keys + "? Programs using " + them + " will be refused immediately. This cannot be undone.";
        label = "Revoke " + n + (n === 1 ? " key" : " keys");
      } else {
        message = "Delete " + keys + " permanently? Programs using " + them + " will be refused immediately. This cannot be undone.";
        label = "Delete " + n + (n === 1 ? " key" : " keys");
      }
    }
    if (form.dataset.confirmSet !== undefined) {
      // "Adjust credits": only setting the balance asks first.
      var op = form.elements.namedItem("op");
      var value = form.elements.namedItem("value");
      if (!op || op.value !== "set") return;
      message = form.dataset.confirmSet.replace("{value}", value ? value.value.trim() : "");
      ev.preventDefault();
      confirmDialog(message, label, function () {
        var yes = document.createElement("input");
        yes.type = "hidden"; yes.name = "confirmed"; yes.value = "1";
        form.appendChild(yes);
        form.dataset.confirmed = "1";
        form.submit();
      });
      return;
    }
    if (!message) return;
    ev.preventDefault();
    confirmDialog(message, label, function () {
      form.dataset.confirmed = "1";
      // Keep the button's formaction (bulk revoke) where the browser can.
      if (submitter && typeof form.requestSubmit === "function") form.requestSubmit(submitter);
      else form.submit();
    });
  });

  // Close open row menus when another opens or on Escape.
  document.addEventListener("toggle", function (ev) {
    var d = ev.target;
    if (d.matches && d.matches("details.menu") && d.open) {
      document.querySelectorAll("details.menu[open]").forEach(function (o) { if (o !== d) o.open = false; });
    }
  }, true);
  document.addEventListener("keydown", function (ev) {
    if (ev.key === "Escape") {
      document.querySelectorAll("details.menu[open]").forEach(function (o) { o.open = false; });
    }
  });

  // The custom date field only matters for "Custom date".
  function syncExpiry() {
    var custom = document.querySelector('input[name=expiration][value=custom]');
    var date = document.getElementById("f-expires_at");
    if (!custom || !date || date.closest(".row-form")) return;
    date.disabled = !custom.checked;
  }
  document.addEventListener("change", function (ev) {
    if (ev.target.name === "expiration") syncExpiry();
  });

  // Credits: the balance fields only matter for "A balance of credits", the refill
  // fields only with a refill, the day of the month only for monthly refills.
  function syncCredits() {
    var limited = document.querySelector("input[name=credits][value=limited]");
    var box = document.querySelector("[data-credits-fields]");
    if (!limited || !box) return;
    var interval = document.getElementById("f-credits.refill.interval");
    var every = interval ? interval.value : "";
    box.querySelectorAll("input, select").forEach(function (el) {
      if (el.type === "hidden") return;
      var off = !limited.checked;
      if (el.name === "credits.refill.amount") off = off || every === "";
      if (el.name === "credits.refill.day_of_month") off = off || every !== "monthly";
      el.disabled = off;
    });
  }
  document.addEventListener("change", function (ev) {
    if (ev.target.name === "credits" || ev.target.name === "credits.refill.interval") syncCredits();
  });

  // Filter dropdowns apply as soon as they change (the Apply button stays for text
  // fields and for browsers without JavaScript).
  document.addEventListener("change", function (ev) {
    var el = ev.target;
    if (el.tagName === "SELECT" && el.form && el.form.classList.contains("filters")) {
      el.form.requestSubmit ? el.form.requestSubmit() : el.form.submit();
    }
  });

  // A file input with data-fill puts the chosen file's text into that box (the import
  // screen: the lines are checked on the server before anything is written).
  document.addEventListener("change", function (ev) {
    var input = ev.target;
    if (!input.dataset || !input.dataset.fill || !input.files || !input.files[0]) return;
    var box = document.getElementById(input.dataset.fill);
    if (!box) return;
    var reader = new FileReader();
    reader.onload = function () { box.value = String(reader.result || ""); box.focus(); };
    reader.readAsText(input.files[0]);
  });

  // Dates typed into forms are days in the browser's time zone: tell the server the offset.
  function tzOffsets() {
    var offset = String(new Date().getTimezoneOffset());
    document.querySelectorAll("input[data-tz-offset]").forEach(function (el) { el.value = offset; });
  }

  // A notice (?notice=…) is shown once: drop it from the address, so a reload or a
  // bookmark doesn't show it again.
  function dropNotice() {
    if (!window.history || !history.replaceState || !window.URL) return;
    var url = new URL(window.location.href);
    if (!url.searchParams.has("notice")) return;
    url.searchParams.delete("notice");
    url.searchParams.delete("n");
    history.replaceState(null, "", url.pathname + (url.search ? url.search : "") + url.hash);
  }

  function init() {
    localTimes(); syncExpiry(); syncCredits(); tzOffsets(); dropNotice();
    document.querySelectorAll("form[data-bulk]").forEach(updateCount);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
