// The console's only script: live parts polled in place, and keyboard shortcuts for one-click buttons.
// No framework, no CDN: the page works without it (a reload shows the same), it just stops being live.
"use strict";

function pollLive(el) {
  const url = el.dataset.liveUrl;
  const every = parseInt(el.dataset.pollMs || "2000", 10);
  let last = el.innerHTML;
  async function tick() {
    try {
      const response = await fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } });
      if (response.ok) {
        const html = await response.text();
        if (html !== last) {  // replace only on change, so a button under the pointer stays put
          el.innerHTML = html;
          last = html;
        }
        el.dataset.polled = String(parseInt(el.dataset.polled || "0", 10) + 1);
      } else if (response.status === 401 || response.redirected) {
        return;  // signed out: stop polling
      }
    } catch (e) {
      // the hub is restarting or the network dropped: try again next time
    }
    setTimeout(tick, every);
  }
  setTimeout(tick, every);
}

function shortcuts() {
  document.addEventListener("keydown", (event) => {
    const target = event.target;
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (target instanceof HTMLInputElement || target instanceof HTMLTextAreaElement ||
        target instanceof HTMLSelectElement) return;
    const button = document.querySelector(`button[data-key="${CSS.escape(event.key)}"]`);
    if (button) {
      event.preventDefault();
      button.click();
    }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-live-url]").forEach(pollLive);
  shortcuts();
});
