"use strict";
const [, , queue, id] = location.pathname.split("/").map(decodeURIComponent);
document.getElementById("job-id").textContent = id;
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
load();
setInterval(load, 3000);
