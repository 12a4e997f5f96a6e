//! steplake's SQL function library for training dynamics, registered on every
//! session ([`register`]) so the server, `steplake sql --data-dir` and
//! embedded use see the same functions.
//!
//! - [`series`]: window functions over one series: `ema`, `smooth`,
//!   `rolling_zscore`, `is_spike`;
//! - [`emergence`]: `first_sustained`, "at which step did this emerge?".
//!
//! Every function documents its formula and what it does with NaN and ±Inf.

pub mod emergence;
pub mod series;

use datafusion::prelude::SessionContext;

/// Registers every steplake function on `ctx`.
pub fn register(ctx: &SessionContext) {
    for function in series::SeriesFunction::ALL {
        ctx.register_udwf(series::SeriesWindow::udwf(function));
    }
    ctx.register_udaf(emergence::FirstSustained::udaf());
}
