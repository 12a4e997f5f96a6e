// What the browser test reads: the last series response and when the chart
// was last drawn (performance.now() milliseconds).
export const testHooks = { lastSeries: null, fetchMs: null, drawnAt: null, draws: 0 };
window.steplake = testHooks;
