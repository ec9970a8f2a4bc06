"use strict";
// One job, read-only (its actions are on the dashboard): who is signed in,
// then the job from /api/v1, every three seconds.
const [, , queue, id] = location.pathname.split("/").map(decodeURIComponent);
document.getElementById("job-id").textContent = id;

async function whoami() {
  const res = await fetch("/api/v1/me", { credentials: "same-origin" });
  if (res.status === 401) { location.href = "/login"; return; }
  if (!res.ok) return;
  const me = await res.json();
  const label = document.getElementById("whoami");
  label.textContent = `${me.name} · ${me.role}`;
  label.dataset.role = me.role;
  label.title = `signed in as ${me.name} (${me.role}, via ${me.via})`;
  document.body.dataset.role = me.role;
}

async function load() {
  const res = await fetch(`/api/v1/queues/${encodeURIComponent(queue)}/jobs/${encodeURIComponent(id)}`, { credentials: "same-origin" });
  if (res.status === 401) { location.href = "/login"; return; }
  const data = await res.json();
  if (!res.ok) { document.getElementById("error").textContent = data.error; return; }
  document.getElementById("state").textContent = "(" + data.state + ")";
  document.getElementById("payload").textContent = JSON.stringify(data.payload, null, 2);
  document.getElementById("meta").textContent = JSON.stringify(data.meta, null, 2);
  const body = document.querySelector("#history tbody");
  body.replaceChildren();
  for (const run of data.history) {
    const row = document.createElement("tr");
    for (const [text, cls] of [[run.attempt], [run.at ? new Date(run.at * 1000).toLocaleString() : ""], [run.status], [run.error ?? "", "error"]]) {
      const td = document.createElement("td");
      if (cls) td.className = cls;
      td.textContent = String(text ?? "");
      row.appendChild(td);
    }
    body.appendChild(row);
  }
}

function tick() {
  whoami().catch(() => {});
  load().catch(e => { document.getElementById("error").textContent = "update failed: " + e.message; });
}
tick();
setInterval(tick, 3000);
