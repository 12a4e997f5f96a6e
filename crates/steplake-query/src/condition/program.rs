//! Conditions compiled for evaluation: the checked expression trees of the
//! conditions that watch one series, laid out as one flat program.
//!
//! A series may be watched by ten conditions, and a run may have thousands
//! of series. Walking ten boxed trees per point scattered every node over
//! the heap, and a profile of 10,000 conditions showed evaluation waiting
//! on those loads. So the conditions that watch a series are compiled
//! together, once per set of conditions, into:
//!
//! - a shared program: each condition's tree in postfix order (operands
//!   before their operator, the same order the tree was evaluated in, so
//!   every function sees every point in the same sequence), then a
//!   `Verdict` that counts the condition's `hold`;
//! - per series, only state: the functions' trackers side by side, and how
//!   long each condition has held.
//!
//! The program runs over a column of points at a time (a series' points in
//! one batch): each op is dispatched once per column, not once per point.
//!
//! ```text
//!   is_spike(value)        value > 1e6 OR isnan(value)
//!   ───────────────        ───────────────────────────
//!   Value                  Value  Number(1e6)  Compare(>)
//!   IsSpike(tracker 0)     Value  Test(NaN)    Or
//!   Verdict(0)             Verdict(1)
//! ```

use std::sync::Arc;

use super::{Arithmetic, Comparison, Condition, Node, Test};
use crate::functions::series::{EmaTracker, ZscoreTracker};
use crate::functions::spikes::SpikeTracker;

/// One step of a program, reading and writing the value stack.
#[derive(Debug, Clone, Copy)]
enum Op {
    Value,
    Step,
    Number(f64),
    Bool(bool),
    Negate,
    Not,
    Arithmetic(Arithmetic),
    Compare(Comparison),
    And,
    Or,
    Test(Test),
    Abs,
    /// The series functions, with the index of their tracker.
    IsSpike(u32),
    SpikeRatio(u32),
    RollingZscore(u32),
    Ema(u32),
    /// The predicate of the set's condition `k` is on the stack.
    Verdict(u32),
}

/// A series function's state.
#[derive(Debug, Clone)]
enum Tracker {
    Spike(SpikeTracker),
    Zscore(ZscoreTracker),
    Ema(EmaTracker),
}

#[derive(Debug)]
struct Program {
    ops: Vec<Op>,
    /// Fresh trackers, copied into each series' watch.
    trackers: Vec<Tracker>,
    /// Each condition's `hold`.
    holds: Vec<usize>,
    /// The deepest the value stack gets.
    depth: usize,
}

/// Conditions over one series, compiled together: the template every
/// series they watch gets its [`SeriesWatch`] from.
#[derive(Debug, Clone)]
pub struct ConditionSet {
    program: Arc<Program>,
}

impl ConditionSet {
    /// The set of `conditions`, numbered in the order given.
    pub fn new<'a>(conditions: impl IntoIterator<Item = &'a Condition>) -> ConditionSet {
        let mut program = Program {
            ops: Vec::new(),
            trackers: Vec::new(),
            holds: Vec::new(),
            depth: 0,
        };
        for condition in conditions {
            let depth = program.emit(&condition.root);
            program.depth = program.depth.max(depth);
            program.ops.push(Op::Verdict(program.holds.len() as u32));
            program.holds.push(condition.hold);
        }
        ConditionSet {
            program: Arc::new(program),
        }
    }

    /// A fresh watch of one series, with no history.
    pub fn watch(&self) -> SeriesWatch {
        SeriesWatch {
            trackers: self.program.trackers.clone(),
            held: vec![0; self.program.holds.len()],
            program: self.program.clone(),
        }
    }
}

impl Program {
    /// Appends `node`'s postfix ops; returns the stack depth it needs.
    fn emit(&mut self, node: &Node) -> usize {
        let unary = |program: &mut Program, a: &Node, op: Op| {
            let depth = program.emit(a);
            program.ops.push(op);
            depth
        };
        let binary = |program: &mut Program, a: &Node, b: &Node, op: Op| {
            let left = program.emit(a);
            let right = program.emit(b);
            program.ops.push(op);
            left.max(right + 1)
        };
        let tracker = |program: &mut Program, tracker: Tracker| {
            program.trackers.push(tracker);
            (program.trackers.len() - 1) as u32
        };
        match node {
            Node::Value => {
                self.ops.push(Op::Value);
                1
            }
            Node::Step => {
                self.ops.push(Op::Step);
                1
            }
            Node::Number(n) => {
                self.ops.push(Op::Number(*n));
                1
            }
            Node::Bool(b) => {
                self.ops.push(Op::Bool(*b));
                1
            }
            Node::Negate(a) => unary(self, a, Op::Negate),
            Node::Not(a) => unary(self, a, Op::Not),
            Node::Test(test, a) => unary(self, a, Op::Test(*test)),
            Node::Abs(a) => unary(self, a, Op::Abs),
            Node::Arithmetic(op, a, b) => binary(self, a, b, Op::Arithmetic(*op)),
            Node::Compare(op, a, b) => binary(self, a, b, Op::Compare(*op)),
            Node::And(a, b) => binary(self, a, b, Op::And),
            Node::Or(a, b) => binary(self, a, b, Op::Or),
            Node::IsSpike(a, t) => {
                let k = tracker(self, Tracker::Spike(t.clone()));
                unary(self, a, Op::IsSpike(k))
            }
            Node::SpikeRatio(a, t) => {
                let k = tracker(self, Tracker::Spike(t.clone()));
                unary(self, a, Op::SpikeRatio(k))
            }
            Node::RollingZscore(a, t) => {
                let k = tracker(self, Tracker::Zscore(t.clone()));
                unary(self, a, Op::RollingZscore(k))
            }
            Node::Ema(a, t) => {
                let k = tracker(self, Tracker::Ema(t.clone()));
                unary(self, a, Op::Ema(k))
            }
        }
    }
}

/// The conditions of a [`ConditionSet`] over one series: their function
/// state and how long each predicate has held.
#[derive(Debug, Clone)]
pub struct SeriesWatch {
    program: Arc<Program>,
    trackers: Vec<Tracker>,
    /// Points in a row each condition's predicate has held on.
    held: Vec<usize>,
}

/// Working memory for [`SeriesWatch::observe`], reused from call to call
/// (one per thread that evaluates): a column per stack level.
#[derive(Debug, Default)]
pub struct Scratch {
    levels: Vec<Level>,
}

/// One level of the value stack: a column of numbers or of truths, one
/// entry per point being evaluated.
#[derive(Debug, Default)]
struct Level {
    numbers: Vec<Option<f64>>,
    truths: Vec<Option<bool>>,
}

impl SeriesWatch {
    /// Feeds the series' next points (`steps` ascending, with their
    /// `values`); `fired(k, i)` is called for each condition `k` (its
    /// number in the set) that fires at point `i`: whose predicate has
    /// just held on `hold` points in a row.
    ///
    /// The points are evaluated column by column: each step of the
    /// program runs over all of them before the next, so its dispatch is
    /// paid once per batch of a series, not once per point. Every function
    /// still sees its input in step order, so the answers are those of
    /// feeding the points one at a time.
    pub fn observe(
        &mut self,
        steps: &[i64],
        values: &[f64],
        scratch: &mut Scratch,
        mut fired: impl FnMut(usize, usize),
    ) {
        let SeriesWatch {
            program,
            trackers,
            held,
        } = self;
        let n = steps.len().min(values.len());
        let (steps, values) = (&steps[..n], &values[..n]);
        if scratch.levels.len() < program.depth {
            scratch.levels.resize_with(program.depth, Level::default);
        }
        let levels = &mut scratch.levels[..];
        // The level the next result goes to. The program was checked when
        // compiled: every operator finds its operands at the levels below.
        let mut top = 0usize;
        for op in &program.ops {
            match *op {
                Op::Value => {
                    fill(&mut levels[top].numbers, values.iter().map(|&v| Some(v)));
                    top += 1;
                }
                Op::Step => {
                    fill(
                        &mut levels[top].numbers,
                        steps.iter().map(|&s| Some(s as f64)),
                    );
                    top += 1;
                }
                Op::Number(x) => {
                    fill(&mut levels[top].numbers, (0..n).map(|_| Some(x)));
                    top += 1;
                }
                Op::Bool(b) => {
                    fill(&mut levels[top].truths, (0..n).map(|_| Some(b)));
                    top += 1;
                }
                Op::Negate => map(&mut levels[top - 1].numbers, |x| x.map(|x| -x)),
                Op::Abs => map(&mut levels[top - 1].numbers, |x| x.map(f64::abs)),
                Op::Not => map(&mut levels[top - 1].truths, |b| b.map(|b| !b)),
                Op::Test(test) => {
                    let Level { numbers, truths } = &mut levels[top - 1];
                    fill(
                        truths,
                        numbers.iter().map(|x| {
                            x.map(|x| match test {
                                Test::Nan => x.is_nan(),
                                Test::Infinite => x.is_infinite(),
                                Test::Finite => x.is_finite(),
                            })
                        }),
                    );
                }
                Op::Arithmetic(op) => {
                    let (a, b) = operands(levels, top);
                    for (a, b) in a.numbers.iter_mut().zip(&b.numbers) {
                        *a = a.zip(*b).map(|(a, b)| match op {
                            Arithmetic::Add => a + b,
                            Arithmetic::Subtract => a - b,
                            Arithmetic::Multiply => a * b,
                            Arithmetic::Divide => a / b,
                        });
                    }
                    top -= 1;
                }
                Op::Compare(op) => {
                    let (a, b) = operands(levels, top);
                    let Level { numbers, truths } = a;
                    fill(
                        truths,
                        numbers.iter().zip(&b.numbers).map(|(a, b)| {
                            a.zip(*b).map(|(a, b)| match op {
                                Comparison::Gt => a > b,
                                Comparison::GtEq => a >= b,
                                Comparison::Lt => a < b,
                                Comparison::LtEq => a <= b,
                                Comparison::Eq => a == b,
                                Comparison::NotEq => a != b,
                            })
                        }),
                    );
                    top -= 1;
                }
                Op::And | Op::Or => {
                    // SQL's three values: a side equal to `decisive` (false
                    // for AND, true for OR) decides; else NULL wins.
                    let decisive = matches!(op, Op::Or);
                    let (a, b) = operands(levels, top);
                    for (a, b) in a.truths.iter_mut().zip(&b.truths) {
                        *a = if *a == Some(decisive) || *b == Some(decisive) {
                            Some(decisive)
                        } else if a.is_some() && b.is_some() {
                            Some(!decisive)
                        } else {
                            None
                        };
                    }
                    top -= 1;
                }
                // A NULL input is a missing point: NaN in, as the window
                // functions do, and the answer at that point is NULL.
                Op::IsSpike(k) | Op::SpikeRatio(k) | Op::RollingZscore(k) | Op::Ema(k) => {
                    let Level { numbers, truths } = &mut levels[top - 1];
                    match (op, &mut trackers[k as usize]) {
                        (Op::IsSpike(_), Tracker::Spike(t)) => fill(
                            truths,
                            numbers
                                .iter()
                                .map(|x| x.map(|_| t.observe(x.unwrap_or(f64::NAN)).0)),
                        ),
                        (Op::SpikeRatio(_), Tracker::Spike(t)) => map(numbers, |x| {
                            let score = t.score(x.unwrap_or(f64::NAN));
                            x.and(score)
                        }),
                        (Op::RollingZscore(_), Tracker::Zscore(t)) => map(numbers, |x| {
                            let score = t.next(x.unwrap_or(f64::NAN));
                            x.and(score)
                        }),
                        (Op::Ema(_), Tracker::Ema(t)) => map(numbers, |x| {
                            let average = t.next(x.unwrap_or(f64::NAN));
                            x.map(|_| average)
                        }),
                        // Ops and trackers are made in pairs.
                        _ => map(numbers, |_| None),
                    }
                }
                Op::Verdict(k) => {
                    let k = k as usize;
                    let (hold, run) = (program.holds[k], &mut held[k]);
                    for (i, holds) in levels[top - 1].truths.iter().enumerate() {
                        if *holds == Some(true) {
                            *run = run.saturating_add(1);
                            if *run == hold {
                                fired(k, i);
                            }
                        } else {
                            *run = 0;
                        }
                    }
                    top -= 1;
                }
            }
        }
    }

    /// Whether condition `k`'s predicate held at the last point.
    #[cfg(test)]
    pub(crate) fn holding(&self, k: usize) -> bool {
        self.held[k] > 0
    }
}

/// Replaces `column` with `from`.
fn fill<T>(column: &mut Vec<T>, from: impl Iterator<Item = T>) {
    column.clear();
    column.extend(from);
}

/// Applies `f` to each entry of `column`, in order.
fn map<T: Copy>(column: &mut [T], mut f: impl FnMut(T) -> T) {
    for x in column {
        *x = f(*x);
    }
}

/// The two levels below `top`: the left operand (where the result goes)
/// and the right one.
fn operands(levels: &mut [Level], top: usize) -> (&mut Level, &Level) {
    let (below, right) = levels.split_at_mut(top - 1);
    (&mut below[top - 2], &right[0])
}
