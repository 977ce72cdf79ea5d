//! How the threads share the recurrence: by hidden units. Each thread computes, at every step, the
//! gate rows of its own units for the whole batch (one product over all the batch's rows, see
//! [`super::product`]) and their element-wise part; the next step starts when every thread has
//! written its units' states, which the next product reads whole. Going back, each thread computes
//! the gradient reaching its units' states from all the gate gradients of the step after.

use std::ops::Range;

use rayon::prelude::*;

/// Multiply-adds of one step's recurrent product below which it runs on one thread: handing half of
/// a smaller product to another thread and waiting for it costs more than it saves.
const MIN_PARALLEL_STEP: usize = 1 << 20;

/// Hidden units per thread at least.
const MIN_UNITS: usize = 16;

/// The ranges of hidden units of the threads, for a step product of `batch` rows by `gates · hidden`
/// columns of depth `hidden`.
pub(super) fn unit_ranges(batch: usize, gates: usize, hidden: usize) -> Vec<Range<usize>> {
    let threads = if batch * gates * hidden * hidden < MIN_PARALLEL_STEP {
        1
    } else {
        rayon::current_num_threads().min(hidden / MIN_UNITS).max(1)
    };
    (0..threads).map(|k| k * hidden / threads..(k + 1) * hidden / threads).collect()
}

/// Runs `f` on every item, each on its own thread where there are several.
pub(super) fn each<T: Send>(items: Vec<T>, f: impl Fn(T) + Sync + Send) {
    if items.len() == 1 {
        items.into_iter().for_each(f);
    } else {
        items.into_par_iter().for_each(f);
    }
}

/// Runs `f`, which calls [`each`] once or twice per step, on a thread of the pool when `threads > 1`:
/// a thread of the pool hands work to another one directly, any other thread through the pool's
/// queue and a wake-up, at every step.
pub(super) fn on_pool<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    if threads > 1 {
        rayon::scope(|_| f())
    } else {
        f()
    }
}
