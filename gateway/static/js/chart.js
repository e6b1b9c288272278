// The histogram of an instance drawn on a <canvas>, crisp on high-density screens and redrawn on resize.

import { formatNumber } from "./dom.js";

function cssColor(element, name, fallback) {
  const value = getComputedStyle(element).getPropertyValue(name).trim();
  return value || fallback;
}

function draw(canvas, histogram, log) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || 600;
  const height = canvas.clientHeight || 240;
  canvas.width = Math.round(width * ratio);
  canvas.height = Math.round(height * ratio);
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, width, height);

  const counts = histogram.counts || [];
  const peak = Math.max(1, ...counts);
  // A logarithmic axis shows small bins next to a huge one (e.g. a black background).
  const scale = log ? (count) => Math.log10(1 + count) / Math.log10(1 + peak) : (count) => count / peak;
  const pad = { left: 56, right: 12, top: 12, bottom: 36 };
  const plotW = Math.max(10, width - pad.left - pad.right);
  const plotH = Math.max(10, height - pad.top - pad.bottom);
  const bar = cssColor(canvas, "--chart-bar", "#2563eb");
  const ink = cssColor(canvas, "--ink-muted", "#555");

  ctx.fillStyle = bar;
  const step = plotW / Math.max(1, counts.length);
  counts.forEach((count, index) => {
    const barH = scale(count) * plotH;
    ctx.fillRect(pad.left + index * step, pad.top + plotH - barH, Math.max(1, step - 1), barH);
  });

  ctx.strokeStyle = ink;
  ctx.lineWidth = 1;
  ctx.beginPath();
  ctx.moveTo(pad.left, pad.top);
  ctx.lineTo(pad.left, pad.top + plotH);
  ctx.lineTo(pad.left + plotW, pad.top + plotH);
  ctx.stroke();

  ctx.fillStyle = ink;
  ctx.font = "12px system-ui, sans-serif";
  ctx.textBaseline = "top";
  ctx.textAlign = "left";
  ctx.fillText(formatNumber(histogram.low), pad.left, pad.top + plotH + 6);
  ctx.textAlign = "right";
  ctx.fillText(formatNumber(histogram.high), pad.left + plotW, pad.top + plotH + 6);
  ctx.textAlign = "center";
  ctx.fillText("pixel value", pad.left + plotW / 2, pad.top + plotH + 20);
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  ctx.fillText(formatNumber(peak), pad.left - 6, pad.top);
  ctx.fillText("0", pad.left - 6, pad.top + plotH);
}

/**
 * Draw `histogram` ({low, high, counts}) on `canvas`, again on resize.
 * Returns {setLog(bool), dispose()}: switch to a logarithmic count axis, stop redrawing.
 */
export function drawHistogram(canvas, histogram) {
  let log = false;
  draw(canvas, histogram, log);
  const observer = new ResizeObserver(() => draw(canvas, histogram, log));
  observer.observe(canvas);
  return {
    setLog(value) {
      log = Boolean(value);
      draw(canvas, histogram, log);
    },
    dispose: () => observer.disconnect(),
  };
}
