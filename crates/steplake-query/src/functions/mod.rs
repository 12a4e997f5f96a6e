//! steplake's SQL function library for training dynamics, registered on every
//! session ([`register`]) so the server, `steplake sql --data-dir` and
//! embedded use see the same functions.
//!
//! - [`series`]: window functions over one series: `ema`, `smooth`,
//!   `rolling_zscore`, `is_spike`, `spike_ratio`;
//! - [`emergence`]: `first_sustained`, "at which step did this emerge?";
//! - [`lookups`]: `value_at` (as of a step) and `crossing` (the interpolated
//!   step at which a threshold is reached);
//! - [`lag_corr`]: `lag_corr`, which of two series leads and by how much;
//! - [`changepoints`]: `changepoints`, shifts of the mean;
//! - [`phases`]: `phases`, changes of slope (warmup, decay, a grokking rise);
//! - [`segmentation`]: their search (PELT, binary segmentation) and default penalty;
//! - [`spikes`]: the spike rule of `is_spike` and `spike_ratio`, and
//!   `spike_rate`, the fraction of points `is_spike` flags;
//! - [`downsample`]: `downsample`, min/max/last per step bucket for plots;
//! - [`power_law`]: `fit_power_law` and `predict_power_law`, early prediction of the final loss;
//! - [`loss_curve`]: `fit_loss_curve` and `predict_loss_curve`, the same with the
//!   learning-rate schedule and an interval;
//! - [`loss_prior`]: `loss_curve_prior`, the fits of several finished runs as
//!   one prior for `fit_loss_curve`;
//! - [`tensor`]: norms, distances, `rel_change`, histograms, quantiles, slices
//!   and the spectrum of 2-D tensors, over the `tensors` table.
//!
//! Every function documents its formula and what it does with NaN and ±Inf.

pub(crate) mod arguments;
pub mod changepoints;
pub mod condition_series;
pub mod downsample;
pub mod emergence;
pub mod lag_corr;
pub mod lookups;
pub mod loss_curve;
pub mod loss_prior;
pub mod phases;
pub mod points;
pub mod power_law;
pub(crate) mod recent;
pub mod segmentation;
pub mod series;
pub(crate) mod sorted_window;
pub mod spikes;
pub mod tensor;

pub use arguments::literal_argument;

use datafusion::prelude::SessionContext;

/// Registers every steplake function on `ctx`.
pub fn register(ctx: &SessionContext) {
    for function in series::SeriesFunction::ALL {
        ctx.register_udwf(series::SeriesWindow::udwf(function));
    }
    ctx.register_udaf(emergence::FirstSustained::udaf());
    ctx.register_udaf(lookups::ValueAt::udaf());
    ctx.register_udaf(lookups::Crossing::udaf());
    ctx.register_udaf(lag_corr::LagCorr::udaf());
    ctx.register_udaf(changepoints::Segments::udaf(
        changepoints::SegmentModel::Mean,
    ));
    ctx.register_udaf(changepoints::Segments::udaf(
        changepoints::SegmentModel::Line,
    ));
    ctx.register_udaf(spikes::SpikeRate::udaf());
    ctx.register_udaf(downsample::Downsample::udaf());
    ctx.register_udaf(power_law::FitPowerLaw::udaf());
    ctx.register_udf(power_law::PredictPowerLaw::udf());
    ctx.register_udaf(loss_curve::FitLossCurve::udaf());
    ctx.register_udf(loss_curve::PredictLossCurve::udf());
    ctx.register_udaf(loss_prior::LossCurvePrior::udaf());
    for function in tensor::TensorFunction::ALL {
        ctx.register_udf(function.udf());
    }
}
