//! A neural network: a tree of layers and, to train it, a loss (the book's `NeuralNetwork`).

use std::collections::BTreeMap;
use std::ops::{Deref, DerefMut};
use std::path::Path;

use ndarray::{ArrayBase, ArrayD, Data, Dimension};

use crate::checkpoint::{self, NamedArray, Rename};
use crate::layers::{self, for_each_leaf_mut, Layer, Sequential};
use crate::losses::Loss;
use crate::ops::{Dropout, Mode};
use crate::param::{NamedParamMut, Param};
use crate::rng::RandomState;
use crate::rnn::Recurrent;
use crate::spec::module::join;
use crate::spec::{summary, LossSpec, NetSpec};
use crate::{Error, Float, Result};

/// How [`NeuralNetwork::reinitialize`] feeds random numbers to the layers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitSeeding {
    /// Every layer draws from the one generator in turn: the default.
    Stream,
    /// The book's quirk: its `Dense` re-seeds numpy's global generator with the network's seed before
    /// drawing, so every dense layer starts from the same stream (in chapter 3's
    /// deep net the second layer's weights equal the first's), and the generator continues from the last
    /// layer's draws. Needed to reproduce the book's numbers exactly.
    BookReseed(u32),
}

impl InitSeeding {
    /// Prepares `rng` for the next layer to draw its parameters, in the order the network computes:
    /// with the book's quirk, a layer that re-seeds in the book (`reseeds_in_book`, its `Dense`)
    /// restarts the stream from the seed. Both engines' networks draw through this.
    pub fn before_layer(self, reseeds_in_book: bool, rng: &mut RandomState) {
        if let (InitSeeding::BookReseed(seed), true) = (self, reseeds_in_book) {
            *rng = RandomState::new(seed);
        }
    }
}

/// A saved copy of every parameter value, to restore a model later (early stopping).
#[derive(Clone, Debug)]
pub struct Snapshot<F> {
    values: Vec<ArrayD<F>>,
}

/// A tree of layers, and the loss it is trained on.
///
/// Parameters are named by their path in the tree, as PyTorch's `state_dict()` names those of the
/// mirrored module: `layers.0.weight` in the book's layout, `conv1.weight`, `0.weight`,
/// `transformer.h.0.attn.c_attn.weight` in others (see [`crate::spec::module`]). A network built for
/// prediction only needs no loss ([`NeuralNetwork::build`]).
pub struct NeuralNetwork<F: Float> {
    root: Box<dyn Layer<F>>,
    loss: Option<Box<dyn Loss<F>>>,
    spec: Option<NetSpec>,
    metadata: BTreeMap<String, String>,
}

/// The parameters of a network, for an optimizer (see [`NeuralNetwork::params_mut`]): each shared
/// parameter once, its gradient the sum of its uses. Dereferences to a slice of named parameters;
/// when dropped, gives the shared parameters' other uses their new values.
pub struct ParamsMut<'a, F: Float> {
    params: Vec<NamedParamMut<'a, F>>,
    /// The other uses of shared parameters, with the index of their source in `params`.
    tied: Vec<(usize, &'a mut Param<F>)>,
}

impl<'a, F: Float> Deref for ParamsMut<'a, F> {
    type Target = [NamedParamMut<'a, F>];

    fn deref(&self) -> &Self::Target {
        &self.params
    }
}

impl<F: Float> DerefMut for ParamsMut<'_, F> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.params
    }
}

impl<F: Float> Drop for ParamsMut<'_, F> {
    fn drop(&mut self) {
        for (source, tied) in &mut self.tied {
            let value = self.params[*source].1.to_canonical();
            tied.value = tied.layout.from_canonical(&value);
        }
    }
}

impl<F: Float> NeuralNetwork<F> {
    /// A network of `layers` applied in order, in the book's layout (named `layers.{i}`), trained on
    /// `loss`.
    pub fn new(layers: Vec<Box<dyn Layer<F>>>, loss: impl Loss<F> + 'static) -> Self {
        let layers = layers.into_iter().enumerate().map(|(i, l)| (Some(i.to_string()), l)).collect();
        let list: Box<dyn Layer<F>> = Box::new(Sequential::new("layers", layers));
        let root = Box::new(Sequential::new("", vec![(Some("layers".into()), list)]));
        NeuralNetwork { root, loss: Some(Box::new(loss)), spec: None, metadata: BTreeMap::new() }
    }

    /// The network `spec` describes, without a loss (for prediction, or to add one with
    /// [`NeuralNetwork::with_loss`]), its parameters drawn from `rng` layer by layer (the libtorch
    /// engine's `Net` draws the same values from the same generator).
    ///
    /// # Errors
    /// A description that cannot run (see [`NetSpec::check`]), checked before any weight is drawn.
    pub fn build(spec: &NetSpec, rng: &mut RandomState) -> Result<Self> {
        let root = layers::build_network(spec, rng)?;
        let mut net = NeuralNetwork { root, loss: None, spec: Some(spec.clone()), metadata: BTreeMap::new() };
        net.adopt_tied_draws();
        Ok(net)
    }

    /// The network `spec` describes, trained on `loss`, its parameters drawn from `rng` (see
    /// [`NeuralNetwork::build`]).
    ///
    /// # Errors
    /// As [`NeuralNetwork::build`].
    pub fn from_spec(spec: &NetSpec, loss: impl Loss<F> + 'static, rng: &mut RandomState) -> Result<Self> {
        Ok(Self::build(spec, rng)?.with_loss(loss))
    }

    /// The network trained on `loss`.
    #[must_use]
    pub fn with_loss(mut self, loss: impl Loss<F> + 'static) -> Self {
        self.loss = Some(Box::new(loss));
        self
    }

    /// The network trained on the loss `spec` describes.
    #[must_use]
    pub fn with_loss_spec(mut self, spec: LossSpec) -> Self {
        self.loss = Some(spec.build());
        self
    }

    /// The description the network was built from, if it was.
    pub fn spec(&self) -> Option<&NetSpec> {
        self.spec.as_ref()
    }

    /// The tree of layers.
    pub fn root(&self) -> &dyn Layer<F> {
        self.root.as_ref()
    }

    /// Every layer that is not a container, with its path, in the order the network computes.
    pub fn leaves(&self) -> Vec<(String, &dyn Layer<F>)> {
        layers::leaves(self.root.as_ref(), "")
    }

    fn loss(&self) -> Result<&dyn Loss<F>> {
        self.loss.as_deref().ok_or_else(no_loss)
    }

    fn loss_mut(&mut self) -> Result<&mut Box<dyn Loss<F>>> {
        self.loss.as_mut().ok_or_else(no_loss)
    }

    /// The loss's name, if the network has one.
    pub fn loss_name(&self) -> Option<&'static str> {
        self.loss.as_ref().map(|l| l.name())
    }

    /// Whether the loss scores classes (an accuracy then means something).
    pub fn classifies(&self) -> bool {
        self.loss.as_ref().is_some_and(|l| l.classifies())
    }

    /// Passes `x` through every layer, caching what [`NeuralNetwork::backward`] needs.
    ///
    /// # Errors
    /// An input that does not fit, naming the layer.
    pub fn forward<S: Data<Elem = F>, D: Dimension>(&mut self, x: &ArrayBase<S, D>, mode: Mode) -> Result<ArrayD<F>> {
        self.root.forward(x.to_owned().into_dyn(), mode)
    }

    /// Passes `∂L/∂output` back through every layer, storing parameter gradients; returns `∂L/∂input`.
    ///
    /// # Errors
    /// A gradient of the wrong shape, or no forward pass before.
    pub fn backward(&mut self, loss_grad: ArrayD<F>) -> Result<ArrayD<F>> {
        self.root.backward(loss_grad)
    }

    /// The network's output on `x` and its loss against `y`; with [`Mode::Train`] the forward pass is
    /// cached for [`NeuralNetwork::backward`] (start it with [`NeuralNetwork::loss_backward`]).
    ///
    /// # Errors
    /// No loss, or shapes that do not fit.
    pub fn forward_loss<S, T, D, E>(
        &mut self,
        x: &ArrayBase<S, D>,
        y: &ArrayBase<T, E>,
        mode: Mode,
    ) -> Result<(ArrayD<F>, F)>
    where
        S: Data<Elem = F>,
        T: Data<Elem = F>,
        D: Dimension,
        E: Dimension,
    {
        self.loss()?;
        let prediction = self.forward(x, mode)?;
        let loss = self.loss_mut()?.forward(&prediction, &y.to_owned().into_dyn())?;
        Ok((prediction, loss))
    }

    /// The network's loss for a prediction already computed, against `y` (no backward pass follows).
    ///
    /// # Errors
    /// No loss, or shapes that do not fit.
    pub fn loss_on<S: Data<Elem = F>, D: Dimension>(
        &mut self,
        prediction: &ArrayD<F>,
        y: &ArrayBase<S, D>,
    ) -> Result<F> {
        self.loss_mut()?.forward(prediction, &y.to_owned().into_dyn())
    }

    /// One training pass on a batch: forward, loss, backward. Returns the loss; gradients are left in the
    /// parameters for an optimizer. The pass runs on a thread of rayon's pool, the calling thread waiting
    /// for it.
    ///
    /// # Errors
    /// No loss, or shapes that do not fit.
    pub fn train_batch<S, T, D, E>(&mut self, x: &ArrayBase<S, D>, y: &ArrayBase<T, E>) -> Result<F>
    where
        S: Data<Elem = F>,
        T: Data<Elem = F>,
        D: Dimension,
        E: Dimension,
    {
        self.loss()?;
        let (x, y) = (x.to_owned().into_dyn(), y.to_owned().into_dyn());
        on_pool(|| {
            let prediction = self.root.forward(x, Mode::Train)?;
            let loss = self.loss_mut()?.forward(&prediction, &y)?;
            let grad = self.loss_backward()?;
            // The input gradient of the first layer is not needed: skip it, as PyTorch does for data.
            self.root.backward_params(grad)?;
            Ok(loss)
        })
    }

    /// `∂L/∂prediction` for the last [`NeuralNetwork::forward_loss`].
    ///
    /// # Errors
    /// No loss, or no forward pass before.
    pub fn loss_backward(&mut self) -> Result<ArrayD<F>> {
        self.loss_mut()?.backward()
    }

    /// The network's output in evaluation mode, caching nothing (a recurrent layer starts from the
    /// state it carries and leaves it as it was).
    ///
    /// # Errors
    /// An input that does not fit, naming the layer.
    pub fn predict<S: Data<Elem = F>, D: Dimension>(&self, x: &ArrayBase<S, D>) -> Result<ArrayD<F>> {
        self.root.infer(x.to_owned().into_dyn())
    }

    /// Every parameter with its full name, in the order the layers draw them; a shared parameter under
    /// each of its names.
    pub fn params(&self) -> Vec<(String, &Param<F>)> {
        self.root.params()
    }

    /// The parameters for an optimizer: each one once (a shared parameter under its source's name, its
    /// gradient the sum of its uses), in the order the layers draw them. When the returned value is
    /// dropped, the shared parameters' other uses take the new values.
    ///
    /// ```
    /// use scratch::prelude::*;
    ///
    /// let mut net = NeuralNetwork::<f64>::from_spec(&book::boston_model(), MeanSquaredError::new(), &mut RandomState::new(1))?;
    /// net.train_batch(&ndarray::Array2::<f64>::zeros((4, 13)), &ndarray::Array2::<f64>::ones((4, 1)))?;
    /// SGD::new(0.01)?.step(&mut net.params_mut())?;
    /// # Ok::<(), scratch::Error>(())
    /// ```
    pub fn params_mut(&mut self) -> ParamsMut<'_, F> {
        let ties = self.ties();
        let all = self.root.params_mut();
        if ties.is_empty() {
            return ParamsMut { params: all, tied: Vec::new() };
        }
        let (mut params, mut uses) = (Vec::with_capacity(all.len()), Vec::new());
        for (name, p) in all {
            match ties.iter().find(|(tied, _)| *tied == name) {
                Some((_, source)) => uses.push((source.clone(), p)),
                None => params.push((name, p)),
            }
        }
        let tied = uses
            .into_iter()
            .map(|(source, p)| {
                let at = params.iter().position(|(n, _)| *n == source).expect("checked by the description");
                let source = &mut params[at].1;
                source.grad += &source.layout.from_canonical(&p.grad_canonical());
                p.grad.fill(F::zero());
                (at, p)
            })
            .collect();
        ParamsMut { params, tied }
    }

    /// Every parameter of every layer, mutably, a shared parameter once per use with the gradient of
    /// that use alone: what a finite-difference check perturbs one by one. Optimizers take
    /// [`NeuralNetwork::params_mut`].
    pub fn layer_params_mut(&mut self) -> Vec<NamedParamMut<'_, F>> {
        self.root.params_mut()
    }

    /// The tied parameters of the description, `(parameter, source)`.
    fn ties(&self) -> Vec<(String, String)> {
        self.spec.iter().flat_map(|s| &s.ties).map(|t| (t.parameter.clone(), t.source.clone())).collect()
    }

    /// Gives every tied parameter's source the value the tied parameter drew, after (re)initialisation:
    /// a parameter used twice keeps its last draw, in both engines (as PyTorch's nanoGPT, whose
    /// initialisation visits the output layer after the embedding).
    fn adopt_tied_draws(&mut self) {
        let ties = self.ties();
        let mut params = self.root.params_mut();
        for (tied, source) in &ties {
            let value = params.iter().find(|(n, _)| n == tied).map(|(_, p)| p.to_canonical());
            if let (Some(value), Some((_, p))) = (value, params.iter_mut().find(|(n, _)| n == source)) {
                p.value = p.layout.from_canonical(&value);
            }
        }
        drop(params);
        self.sync_ties();
    }

    /// Gives every tied parameter its source's value.
    fn sync_ties(&mut self) {
        drop(self.params_mut());
    }

    /// Forgets the state every recurrent layer carries between calls.
    pub fn reset_state(&mut self) {
        self.root.reset_state();
    }

    /// The recurrent layers, with their paths.
    pub fn recurrent_layers(&self) -> Vec<(String, &Recurrent<F>)> {
        self.leaves().into_iter().filter_map(|(path, l)| l.recurrent().map(|r| (path, r))).collect()
    }

    /// The recurrent layers, mutably (to set their state).
    pub fn recurrent_layers_mut(&mut self) -> Vec<(String, &mut Recurrent<F>)> {
        let mut out = Vec::new();
        collect_recurrent(self.root.as_mut(), "", &mut out);
        out
    }

    /// Every dropout, by its path (a layer's own dropout under the layer's path, a dropout layer's
    /// under its own: `layers.0`, `dropout1`, `transformer.h.0.attn.attn_dropout`).
    pub fn dropouts_mut(&mut self) -> Vec<(String, &mut Dropout<F>)> {
        self.root.dropouts_mut()
    }

    /// The dropout at `path` (see [`NeuralNetwork::dropouts_mut`]).
    pub fn dropout_mut(&mut self, path: &str) -> Option<&mut Dropout<F>> {
        self.dropouts_mut().into_iter().find(|(p, _)| p == path).map(|(_, d)| d)
    }

    /// The number of trainable values, a shared parameter counted once.
    pub fn num_parameters(&self) -> usize {
        let ties = self.ties();
        self.params().iter().filter(|(n, _)| !ties.iter().any(|(t, _)| t == n)).map(|(_, p)| p.value.len()).sum()
    }

    /// Draws fresh parameters for every layer, in order.
    pub fn reinitialize(&mut self, rng: &mut RandomState, seeding: InitSeeding) {
        for_each_leaf_mut(self.root.as_mut(), "", &mut |_, layer| {
            seeding.before_layer(layer.reseeds_in_book(), rng);
            layer.reinitialize(rng);
        });
        self.adopt_tied_draws();
    }

    /// Every parameter's value in the canonical (PyTorch) layout, with its name; a shared parameter
    /// under each of its names, as `state_dict()` lists it.
    pub fn named_parameters(&self) -> Vec<NamedArray<F>> {
        self.params().into_iter().map(|(name, p)| (name, p.to_canonical())).collect()
    }

    /// Sets every parameter from `tensors` (canonical layout), which must match the model exactly (a
    /// tied parameter may be left out, or must equal its source).
    ///
    /// # Errors
    /// The list of mismatches (missing, unexpected, or differently shaped tensors); nothing changes then.
    pub fn load_named(&mut self, tensors: &[NamedArray<F>]) -> Result<()> {
        self.load_named_as(Path::new("(tensors)"), tensors, &Rename::default())
    }

    /// As [`NeuralNetwork::load_named`], the names renamed by `rename` first.
    ///
    /// # Errors
    /// As [`NeuralNetwork::load_named`].
    pub fn load_named_as(&mut self, source: &Path, tensors: &[NamedArray<F>], rename: &Rename) -> Result<()> {
        let ties = self.ties();
        let params = self.root.params_mut();
        checkpoint::apply(source, params, tensors, rename, &ties)?;
        self.sync_ties();
        Ok(())
    }

    /// Records `key = value` in the metadata of every checkpoint [`NeuralNetwork::save`] writes from
    /// now on (a program's name for the run, say), beside `engine` and, for a network built from a
    /// description, `network` ([`NetSpec::fingerprint`]).
    pub fn set_metadata(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.metadata.insert(key.into(), value.into());
    }

    /// The metadata a checkpoint of this network records (see [`NeuralNetwork::set_metadata`]).
    pub fn metadata(&self) -> BTreeMap<String, String> {
        let mut metadata = self.metadata.clone();
        metadata.insert("engine".into(), "scratch".into());
        if let Some(spec) = &self.spec {
            metadata.insert("network".into(), spec.fingerprint());
        }
        metadata
    }

    /// Saves the parameters as a checkpoint (see [`crate::checkpoint`]) with [`NeuralNetwork::metadata`];
    /// atomic.
    ///
    /// # Errors
    /// If the file cannot be written.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        checkpoint::save(path.as_ref(), &self.named_parameters(), &self.metadata())
    }

    /// Loads parameters saved by either engine, or by PyTorch (`safetensors.torch.save_file` of a
    /// module's `state_dict()`).
    ///
    /// # Errors
    /// A missing or malformed file, or one whose tensors do not match the model (all mismatches listed).
    pub fn load(&mut self, path: impl AsRef<Path>) -> Result<()> {
        self.load_as(path, &Rename::default())
    }

    /// As [`NeuralNetwork::load`], the file's names renamed by `rename` first (e.g.
    /// [`Rename::strip_prefix`]`("module.")` for a model saved from `DistributedDataParallel`).
    ///
    /// # Errors
    /// As [`NeuralNetwork::load`].
    pub fn load_as(&mut self, path: impl AsRef<Path>, rename: &Rename) -> Result<()> {
        let path = path.as_ref();
        let file = checkpoint::load::<F>(path)?;
        self.load_named_as(path, &file.tensors, rename)
    }

    /// A copy of every parameter value.
    pub fn snapshot(&self) -> Snapshot<F> {
        Snapshot { values: self.params().into_iter().map(|(_, p)| p.value.clone()).collect() }
    }

    /// Sets every parameter back to the values in `snapshot`, taken from this network.
    ///
    /// # Errors
    /// A snapshot of another network (a different number or shape of parameters); nothing changes then.
    pub fn restore(&mut self, snapshot: &Snapshot<F>) -> Result<()> {
        let params = self.root.params_mut();
        let fits = params.len() == snapshot.values.len()
            && params.iter().zip(&snapshot.values).all(|((_, p), v)| p.value.shape() == v.shape());
        if !fits {
            return Err(Error::InvalidArgument("restore: the snapshot was taken from another network".into()));
        }
        for ((_, p), v) in params.into_iter().zip(&snapshot.values) {
            p.value.assign(v);
        }
        Ok(())
    }

    /// The network as a tree: every layer and container with its name, what it is, its output shape
    /// (when built from a description) and its parameters; then the total.
    pub fn summary(&self) -> String {
        if let Some(summary) = self.spec.as_ref().and_then(|s| s.summary().ok()) {
            return summary;
        }
        let mut rows = Vec::new();
        summary_rows(self.root.as_ref(), None, 0, &mut rows);
        summary::render(&[], &rows, self.num_parameters(), &[])
    }
}

/// Runs `op` on a thread of rayon's pool, the calling thread waiting for it once.
///
/// Every layer spreads its work over the cores with rayon (the matrix products, the pieces of rows of
/// the element-wise passes, the sequences of the attention). Called from a thread outside the pool,
/// each of those parallel loops would hand its work to the pool and put the caller to sleep until it
/// is done: a round trip through the operating system's scheduler per loop, hundreds per training
/// step. Called from a thread of the pool, a loop runs on that thread and shares its work with the
/// other threads directly.
pub(crate) fn on_pool<R: Send>(op: impl FnOnce() -> R + Send) -> R {
    rayon::scope(|_| op())
}

fn no_loss() -> Error {
    Error::InvalidArgument(
        "the network has no loss: build it with NeuralNetwork::from_spec or add one with with_loss".into(),
    )
}

/// The recurrent layers under `layer`, mutably, with their paths.
fn collect_recurrent<'a, F: Float>(
    layer: &'a mut dyn Layer<F>,
    prefix: &str,
    out: &mut Vec<(String, &'a mut Recurrent<F>)>,
) {
    if layer.recurrent().is_some() {
        out.extend(layer.recurrent_mut().map(|r| (prefix.to_string(), r)));
        return;
    }
    for (name, child) in layer.children_mut() {
        collect_recurrent(child, &join(prefix, name.unwrap_or_default()), out);
    }
}

/// One summary row per node under `layer`, as [`NetSpec::summary`] has them but without shapes.
fn summary_rows<F: Float>(layer: &dyn Layer<F>, name: Option<&str>, depth: usize, rows: &mut Vec<summary::Row>) {
    let children = layer.children();
    let parameters = if children.is_empty() { layer.params().iter().map(|(_, p)| p.value.len()).sum() } else { 0 };
    rows.push(summary::Row {
        depth,
        label: name.unwrap_or_default().to_string(),
        what: layer.describe(),
        output: None,
        parameters,
    });
    for (name, child) in children {
        summary_rows(child, name, depth + 1, rows);
    }
}
