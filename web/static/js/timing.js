// Display timing: RTs are measured from the frame the trial's images were painted in,
// not from when they were requested (browser RTs otherwise lag by tens of ms).

export function nextFrame() {
  return new Promise((resolve) => requestAnimationFrame(resolve));
}

/**
 * Resolves with the timestamp of the first frame after the current DOM changes were
 * painted: the first callback runs before that paint, the second one at the next vsync.
 */
export async function paintedAt() {
  await nextFrame();
  return nextFrame();
}

/** The display's refresh rate in Hz, from the median interval of `frames` frames. */
export async function estimateRefreshRate(frames = 30) {
  const stamps = [];
  for (let i = 0; i <= frames; i++) stamps.push(await nextFrame());
  const intervals = stamps.slice(1).map((t, i) => t - stamps[i]).sort((a, b) => a - b);
  const median = intervals[Math.floor(intervals.length / 2)];
  return median > 0 ? Math.round((1000 / median) * 10) / 10 : null;
}

/** Milliseconds since the epoch with sub-ms precision, comparable across page loads. */
export function epochMs() {
  return performance.timeOrigin + performance.now();
}

/** Load and decode an image before it is shown, so it appears in one frame, complete. */
export async function decodedImage(url) {
  const img = new Image();
  img.decoding = "sync";
  img.src = url;
  await img.decode();
  return img;
}
