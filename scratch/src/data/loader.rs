//! A batching data loader, for training loops written by hand (PyTorch's `DataLoader`): the rows of a
//! [`Dataset`] in batches, shuffled anew each epoch from a seeded generator or kept in order, the last
//! partial batch kept or dropped.

use crate::rng::RandomState;
use crate::train::{BatchOrder, Dataset};
use crate::{Error, Float, Result};

/// Batches of a dataset, epoch after epoch.
///
/// ```
/// use scratch::data::DataLoader;
/// use scratch::train::Dataset;
///
/// let x = ndarray::Array2::<f32>::zeros((10, 3)).into_dyn();
/// let data = Dataset::new(x.clone(), x)?;
/// let mut loader = DataLoader::new(&data, 4)?.shuffle(7).drop_last(true);
/// let sizes: Vec<usize> = loader.epoch().map(|batch| batch.len()).collect();
/// assert_eq!(sizes, [4, 4]);
/// # Ok::<(), scratch::Error>(())
/// ```
pub struct DataLoader<'a, F> {
    data: &'a Dataset<F>,
    batch_size: usize,
    drop_last: bool,
    shuffle: Option<RandomState>,
}

impl<'a, F: Float> DataLoader<'a, F> {
    /// Batches of `batch_size` rows of `data`, in order, the last partial batch kept.
    ///
    /// # Errors
    /// If `batch_size` is zero.
    pub fn new(data: &'a Dataset<F>, batch_size: usize) -> Result<Self> {
        if batch_size == 0 {
            return Err(Error::InvalidArgument("DataLoader: the batch size must be positive".into()));
        }
        Ok(DataLoader { data, batch_size, drop_last: false, shuffle: None })
    }

    /// Shuffles the rows at the start of every epoch with a generator seeded with `seed`.
    pub fn shuffle(mut self, seed: u32) -> Self {
        self.shuffle = Some(RandomState::new(seed));
        self
    }

    /// Leaves out the last batch of an epoch when it is smaller than the batch size.
    pub fn drop_last(mut self, drop_last: bool) -> Self {
        self.drop_last = drop_last;
        self
    }

    /// The number of batches per epoch.
    pub fn batches(&self) -> usize {
        let rows = self.data.len();
        if self.drop_last {
            rows / self.batch_size
        } else {
            rows.div_ceil(self.batch_size)
        }
    }

    /// The rows per batch (the last batch of an epoch may hold fewer, unless they are dropped).
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// The dataset the batches are drawn from.
    pub fn dataset(&self) -> &'a Dataset<F> {
        self.data
    }

    /// The order of the rows in the next epoch: a fresh permutation when shuffling, `0..rows` otherwise.
    /// Its first [`batches`](Self::batches) chunks of [`batch_size`](Self::batch_size) are the batches.
    pub fn next_order(&mut self) -> Vec<usize> {
        let rows = self.data.len();
        match &mut self.shuffle {
            Some(rng) => rng.permutation(rows),
            None => (0..rows).collect(),
        }
    }

    /// The batches of the next epoch.
    pub fn epoch(&mut self) -> impl Iterator<Item = Dataset<F>> + '_ {
        let order = self.next_order();
        let (data, batch_size, batches) = (self.data, self.batch_size, self.batches());
        (0..batches).map(move |b| data.select(&order[b * batch_size..((b + 1) * batch_size).min(order.len())]))
    }
}

impl<F: Float> BatchOrder for DataLoader<'_, F> {
    fn batch_size(&self) -> usize {
        self.batch_size
    }

    fn batches(&self) -> usize {
        DataLoader::batches(self)
    }

    fn next_order(&mut self) -> Vec<usize> {
        DataLoader::next_order(self)
    }
}

#[cfg(test)]
mod tests {
    use ndarray::Array2;

    use super::*;

    fn numbered(rows: usize) -> Dataset<f64> {
        let x = Array2::from_shape_fn((rows, 1), |(i, _)| i as f64).into_dyn();
        Dataset::new(x.clone(), x).unwrap()
    }

    fn rows_of(batch: &Dataset<f64>) -> Vec<usize> {
        batch.x.iter().map(|&v| v as usize).collect()
    }

    #[test]
    fn every_row_once_per_epoch_in_order_or_shuffled() {
        let data = numbered(10);
        let mut ordered = DataLoader::new(&data, 4).unwrap();
        let batches: Vec<Vec<usize>> = ordered.epoch().map(|b| rows_of(&b)).collect();
        assert_eq!(batches, vec![vec![0, 1, 2, 3], vec![4, 5, 6, 7], vec![8, 9]]);
        let mut shuffled = DataLoader::new(&data, 4).unwrap().shuffle(3);
        let first: Vec<usize> = shuffled.epoch().flat_map(|b| rows_of(&b)).collect();
        let second: Vec<usize> = shuffled.epoch().flat_map(|b| rows_of(&b)).collect();
        assert_ne!(first, second, "a new order every epoch");
        for epoch in [&first, &second] {
            let mut sorted = epoch.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, (0..10).collect::<Vec<_>>());
        }
        let again: Vec<usize> =
            DataLoader::new(&data, 4).unwrap().shuffle(3).epoch().flat_map(|b| rows_of(&b)).collect();
        assert_eq!(again, first, "the seed fixes the order");
    }

    #[test]
    fn drop_last_leaves_out_the_partial_batch() {
        let data = numbered(10);
        let mut loader = DataLoader::new(&data, 4).unwrap().drop_last(true);
        assert_eq!(loader.batches(), 2);
        assert_eq!(loader.epoch().map(|b| b.len()).collect::<Vec<_>>(), vec![4, 4]);
        assert!(DataLoader::new(&data, 0).is_err());
    }
}
