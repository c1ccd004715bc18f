// The prediction page: each image (chosen, dropped, photographed or drawn) is posted on its own
// to /api/predict, a few at a time, and gets a card: the image, the 28x28 image the model saw,
// the verdict, any warning about the crop, and the top classes as bars.
"use strict";

const IN_FLIGHT = 4; // requests at once: the server batches them; more would only queue there
const queue = [];
let running = 0, done = 0, failed = 0, total = 0;

const $ = (id) => document.getElementById(id);
const statusLine = $("status");

const images = (n) => `${n} image${n === 1 ? "" : "s"}`;

function setStatus() {
  if (total === 0) { statusLine.textContent = "No photos yet."; return; }
  if (done < total) { statusLine.textContent = `Classifying\u2026 ${total - done} of ${total} left.`; return; }
  statusLine.textContent = failed === 0 ? `Classified ${images(total)}.`
    : failed < total ? `Classified ${total - failed} of ${images(total)}; ${failed} failed.`
    : total === 1 ? "Could not use the file." : `Could not use any of the ${total} files.`;
}

function newCard(name, blob) {
  const card = $("card").content.firstElementChild.cloneNode(true);
  card.querySelector(".name").textContent = name; // text, never HTML: names come from the user
  const photo = card.querySelector(".photo");
  photo.src = URL.createObjectURL(blob);
  photo.alt = `your image ${name}`;
  $("results").prepend(card);
  return card;
}

// A failed card: its reason, and no image boxes (a file the browser cannot show would be a broken icon).
function showFailure(card, text) {
  const verdict = card.querySelector(".verdict");
  verdict.textContent = text;
  verdict.classList.add("error");
  card.querySelector(".images").remove();
  failed += 1;
}

function showResult(card, name, body) {
  const verdict = card.querySelector(".verdict");
  const p = body.predictions && body.predictions[0];
  if (!p) {
    const err = (body.errors && body.errors[0] && body.errors[0].error) || body.error || "no answer";
    showFailure(card, `Could not use this file: ${err}`);
    return;
  }
  verdict.textContent = "";
  const strong = document.createElement("strong");
  strong.className = "class-name";
  strong.textContent = p.class_name;
  verdict.append(strong, ` \u2014 probability ${p.probability.toFixed(3)}`);
  const seen = card.querySelector(".seen");
  if (p.image) { seen.src = p.image; seen.alt = `what the model saw for ${name}: a 28 by 28 pixel image`; }
  if (p.warning) {
    const w = card.querySelector(".warning");
    w.textContent = `Doubtful crop: ${p.warning}`;
    w.hidden = false;
  }
  const bars = card.querySelector(".bars");
  for (const t of p.top_k) {
    const li = document.createElement("li");
    const label = document.createElement("span");
    label.textContent = t.class_name;
    const bar = document.createElement("span");
    bar.className = "bar";
    bar.setAttribute("role", "meter");
    bar.setAttribute("aria-label", t.class_name);
    bar.setAttribute("aria-valuemin", "0");
    bar.setAttribute("aria-valuemax", "1");
    bar.setAttribute("aria-valuenow", t.probability.toFixed(3));
    const fill = document.createElement("span");
    fill.style.width = `${(100 * t.probability).toFixed(1)}%`;
    bar.append(fill);
    const value = document.createElement("span");
    value.textContent = t.probability.toFixed(3);
    li.append(label, bar, value);
    bars.append(li);
  }
}

async function classify(name, blob) {
  const card = newCard(name, blob);
  const form = new FormData();
  form.append("file", blob, name);
  try {
    const response = await fetch("/api/predict?image=true", { method: "POST", body: form });
    let body;
    try { body = await response.json(); } catch { body = { error: `server answered ${response.status}` }; }
    showResult(card, name, body);
  } catch (e) {
    // The connection failed, not the file: it may well be fine once the server is back.
    showFailure(card, `Could not reach the server (${e.message}); check the connection and try this file again.`);
  }
}

function pump() {
  while (running < IN_FLIGHT && queue.length) {
    const [name, blob] = queue.shift();
    running += 1;
    classify(name, blob).finally(() => { running -= 1; done += 1; setStatus(); pump(); });
  }
}

function add(files) {
  for (const f of files) { queue.push([f.name || "photo", f]); total += 1; }
  setStatus();
  pump();
}

for (const id of ["files", "camera"]) {
  $(id).addEventListener("change", (e) => { add(e.target.files); e.target.value = ""; });
}

const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  // Every dropped file goes to the server, as a chosen one does: a non-image gets its card and
  // the server's reason, not silence.
  add([...e.dataTransfer.files]);
});

// Drawing: dark strokes on white, like a garment on a catalogue's white background.
const canvas = $("canvas");
const ctx = canvas.getContext("2d");
let drawn = 0;
function clearCanvas() {
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
}
clearCanvas();
ctx.lineCap = ctx.lineJoin = "round";
ctx.lineWidth = 14;
ctx.strokeStyle = "#111";
let last = null;
function at(e) {
  const r = canvas.getBoundingClientRect();
  return [(e.clientX - r.left) * canvas.width / r.width, (e.clientY - r.top) * canvas.height / r.height];
}
canvas.addEventListener("pointerdown", (e) => { canvas.setPointerCapture(e.pointerId); last = at(e); });
canvas.addEventListener("pointermove", (e) => {
  if (!last) return;
  const p = at(e);
  ctx.beginPath(); ctx.moveTo(...last); ctx.lineTo(...p); ctx.stroke();
  last = p;
});
for (const ev of ["pointerup", "pointercancel"]) canvas.addEventListener(ev, () => { last = null; });
$("clear").addEventListener("click", clearCanvas);
$("classify-drawing").addEventListener("click", () => {
  canvas.toBlob((blob) => { drawn += 1; add([new File([blob], `drawing-${drawn}.png`, { type: "image/png" })]); },
                "image/png");
});

fetch("/api/health").then((r) => r.json()).then((h) => {
  $("model").textContent = `Model: ${h.model} \u2014 knows ${h.classes.join(", ")}.`;
}).catch(() => { $("model").textContent = "The server is not answering."; });
