//! An experiment between its checks and its training: the settings it runs with ([`Settings`]), the
//! data sets loaded once for all experiments of a run ([`Cache`]), and the experiment with its data
//! loaded and every option checked, ready to train ([`Prepared`]).

use std::any::Any;
use std::path::PathBuf;
use std::rc::Rc;

use anyhow::Result;

use super::{Options, Outputs};
use crate::reproduce::Check;

/// What an experiment runs with.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The options it takes, as given (the others cleared).
    pub options: Options,
    /// The data folder.
    pub data: PathBuf,
    /// Its output files.
    pub outputs: Outputs,
    /// No progress output.
    pub quiet: bool,
}

/// What a run produced beyond what it printed.
#[derive(Clone, Debug, Default)]
pub struct Ran {
    /// The files it wrote.
    pub files: Vec<PathBuf>,
    /// The book's printed numbers it recomputed, beside ours.
    pub checks: Vec<Check>,
}

/// An experiment with its data loaded and its options checked: what is left can only fail in
/// training (a divergence) or in writing its files.
pub trait Prepared {
    /// Trains, prints the results, and writes the files.
    ///
    /// # Errors
    /// A training failure, or a file that cannot be written.
    fn run(self: Box<Self>) -> Result<Ran>;
}

/// Data sets loaded for a run, shared by the experiments that use the same one.
#[derive(Default)]
pub struct Cache {
    loaded: Vec<(String, Rc<dyn Any>)>,
}

impl Cache {
    /// The value stored under `key` (a data set's folder and form), loading it with `load` the first
    /// time.
    ///
    /// # Errors
    /// Whatever `load` returns.
    pub fn get<T: Any>(&mut self, key: String, load: impl FnOnce() -> Result<T>) -> Result<Rc<T>> {
        let key = format!("{key} as {}", std::any::type_name::<T>());
        if let Some(value) = self.loaded.iter().find(|(k, _)| *k == key).and_then(|(_, v)| v.clone().downcast().ok()) {
            return Ok(value);
        }
        let value = Rc::new(load()?);
        self.loaded.push((key, value.clone()));
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_loads_each_key_and_type_once() {
        let mut cache = Cache::default();
        let mut loads = 0;
        for _ in 0..3 {
            let v = cache
                .get("a".into(), || {
                    loads += 1;
                    Ok(vec![1u8, 2])
                })
                .unwrap();
            assert_eq!(*v, [1, 2]);
        }
        assert_eq!(loads, 1);
        let other: Rc<u32> = cache.get("a".into(), || Ok(7)).unwrap();
        assert_eq!(*other, 7);
        assert!(cache.get::<u8>("b".into(), || anyhow::bail!("missing")).is_err());
    }
}
