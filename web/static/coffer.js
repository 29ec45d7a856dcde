// Coffer's dashboard enhancements. Every form works without this file; it adds filtering as
// you type, copying and hiding revealed values, and live rows from the event stream. It never
// receives a value from the stream: events name secrets and versions only, and a changed row
// is fetched again as HTML without its value.

// Filter as you type: an input with data-filter="<rows selector>" hides the rows whose
// data-name does not contain its text.
function filters() {
  for (const input of document.querySelectorAll("input[data-filter]")) {
    const apply = () => {
      const q = input.value.trim().toLowerCase();
      for (const row of document.querySelectorAll(input.dataset.filter)) {
        row.hidden = q !== "" && !(row.dataset.name || "").toLowerCase().includes(q);
      }
    };
    input.addEventListener("input", apply);
    apply();
  }
}

// Revealed values: Copy uses the Clipboard API; Hide takes the value out of the page.
function revealed(root) {
  for (const button of root.querySelectorAll("button[data-copy]")) {
    if (!navigator.clipboard) continue;
    button.hidden = false;
    button.addEventListener("click", async () => {
      const value = button.closest("td").querySelector("[data-secret]");
      if (value) await navigator.clipboard.writeText(value.textContent);
      button.textContent = "Copied";
    });
  }
  // A credential shown once (a new token, a signing secret): the button copies the text of
  // the element its data-copy-text selector names (an <input>'s value), or of the element
  // before it.
  for (const button of root.querySelectorAll("button[data-copy-text]")) {
    if (!navigator.clipboard) continue;
    button.hidden = false;
    button.addEventListener("click", async () => {
      const sel = button.dataset.copyText;
      const source = sel ? document.querySelector(sel) : button.previousElementSibling;
      if (!source) return;
      await navigator.clipboard.writeText(source.value !== undefined ? source.value : source.textContent);
      button.textContent = "Copied";
    });
  }
  for (const link of root.querySelectorAll("a[data-hide]")) {
    link.addEventListener("click", (e) => {
      e.preventDefault();
      const cell = link.closest("td");
      const mask = document.createElement("span");
      mask.className = "masked";
      mask.setAttribute("aria-label", "hidden value");
      mask.textContent = "••••••••";
      cell.replaceChildren(mask);
    });
  }
}

// Live rows: subscribe to the environment's events; on a change to a secret fetch its row
// again (metadata only) and mark it; a banner says when the stream is down and when it is
// back; a resume that the server cannot serve (reset) reloads the page.
function live() {
  const b = document.body.dataset;
  if (!b.liveTenant) return;
  const banner = document.getElementById("live-banner");
  const say = (text, ok) => {
    banner.textContent = text;
    banner.classList.toggle("ok", ok);
    banner.hidden = false;
    if (ok) setTimeout(() => { banner.hidden = true; }, 3000);
  };
  let lastID = "";
  let delay = 500;
  let wasDown = false;
  const connect = () => {
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(proto + "//" + location.host + "/api/v1/events");
    ws.addEventListener("open", () => {
      const sub = { type: "subscribe", tenant: b.liveTenant, project: b.liveProject, environments: [b.liveEnv] };
      if (lastID) sub.last_event_id = lastID;
      ws.send(JSON.stringify(sub));
    });
    ws.addEventListener("message", (m) => {
      const msg = JSON.parse(m.data);
      if (msg.type === "subscribed") {
        delay = 500;
        if (wasDown) say("Live updates resumed.", true);
        wasDown = false;
        document.body.dataset.liveReady = "true";
      } else if (msg.type === "reset") {
        location.reload();
      } else if (msg.type === "event") {
        lastID = msg.id || lastID;
        if (msg.name) refreshRow(b.liveRows, msg.name);
      }
    });
    ws.addEventListener("close", (e) => {
      document.body.dataset.liveReady = "false";
      if (e.code === 4401 || e.code === 4403) {
        say("Live updates stopped: sign in again.", false);
        return;
      }
      wasDown = true;
      say("Live updates paused: reconnecting…", false);
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 10000);
    });
  };
  connect();
}

async function refreshRow(base, name) {
  const table = document.querySelector("#secrets");
  if (!table) return;
  const res = await fetch(base + encodeURIComponent(name), { headers: { Accept: "text/html" }, credentials: "same-origin" });
  if (res.status === 404) {
    const gone = document.getElementById("row-" + name);
    if (gone) gone.remove();
    return;
  }
  if (!res.ok) return;
  const tpl = document.createElement("template");
  tpl.innerHTML = (await res.text()).trim();
  const row = tpl.content.firstElementChild;
  if (!row) return;
  // Fetches can finish out of order: never replace a row with an older version of it.
  const shown = document.getElementById("row-" + name);
  if (shown && Number(row.dataset.version) < Number(shown.dataset.version)) return;
  // A value the user had revealed is not carried over: the new row shows the new version,
  // masked.
  if (shown) {
    shown.replaceWith(row);
  } else {
    table.hidden = false;
    const empty = document.getElementById("empty");
    if (empty) empty.remove();
    table.tBodies[0].append(row);
  }
  row.classList.add("changed");
  revealed(row);
  if (window.htmx) window.htmx.process(row);
}

filters();
revealed(document);
document.body.addEventListener("htmx:afterSwap", (e) => revealed(e.target.closest("tr") || e.target));
live();
