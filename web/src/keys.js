// The keys of the chart pages, the same on each: 0 or Escape zooms out;
// [ and ] smooth less and more (a step of 0.05 on the page's smoothing
// slider, which then acts as if moved). Keys typed into a field are its own.
export function bindChartKeys(zoomOut, slider) {
  const onKey = (event) => {
    if (event.target.matches?.('input, textarea, select')) return;
    if (event.key === '0' || event.key === 'Escape') zoomOut();
    else if (event.key === '[' || event.key === ']') {
      const weight = Math.min(0.99, Math.max(0, Number(slider.value) + (event.key === ']' ? 0.05 : -0.05)));
      slider.value = weight;
      slider.dispatchEvent(new Event('input'));
    }
  };
  document.addEventListener('keydown', onKey);
  return () => document.removeEventListener('keydown', onKey);
}
