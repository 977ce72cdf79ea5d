//! A network on libtorch built from a [`NetSpec`]: its tree of layers, their parameters in a
//! [`nn::VarStore`] under the checkpoint names (`layers.{i}.weight`, `conv1.weight`,
//! `transformer.h.0.attn.c_attn.weight`, ...).

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::path::Path;

use scratch::checkpoint::{self, NamedArray, Rename};
use scratch::network::InitSeeding;
use scratch::rng::RandomState;
use scratch::spec::NetSpec;
use tch::{nn, Kind, Tensor};

use crate::convert::{to_array, TorchFloat};
use crate::layers::{self, leaves, module_by_checked_forward, BuildOptions, Dropout, Layer, Recurrent};
use crate::state::{NetState, StatePass};
use crate::Result;

/// The network a [`NetSpec`] describes, on libtorch: a [`nn::ModuleT`] whose parameters live in the
/// [`nn::VarStore`] of the path it was built under, named by their path in the description below that
/// path, as PyTorch's `state_dict()` names those of the mirrored module (`layers.{i}.weight` for the
/// book's networks). Built from the same generator, it starts from the weights the from-scratch
/// engine's [`NeuralNetwork::from_spec`](scratch::network::NeuralNetwork::from_spec) starts from.
///
/// It is trained like any tch model, with tch's optimizers over its `VarStore` and the losses of
/// [`crate::loss`], or with this crate's [`Trainer`](crate::train::Trainer), which follows the
/// from-scratch engine step for step:
///
/// ```
/// use scratch::rng::RandomState;
/// use scratch::spec::{book, CrossEntropyValue, Reduction};
/// use tch::nn::{self, ModuleT, OptimizerConfig};
/// use tch::{Device, Kind, Tensor};
///
/// let vs = nn::VarStore::new(Device::Cpu);
/// let net = torch::Net::new(vs.root(), &book::chapter7_convnet(), &mut RandomState::new(1))?;
/// let mut adam = nn::Adam::default().build(&vs, 1e-3)?;
/// let (x, labels) = (Tensor::randn([8, 1, 28, 28], (Kind::Float, Device::Cpu)), Tensor::from_slice(&[3i64, 1, 4, 1, 5, 9, 2, 6]));
/// let loss = torch::loss::cross_entropy(&net.forward_t(&x, true), &labels, Reduction::Mean, CrossEntropyValue::Categorical)?;
/// adam.backward_step(&loss);
/// let path = std::env::temp_dir().join("convnet-doc.safetensors");
/// vs.save(&path)?;
/// let mut from_scratch = scratch::network::NeuralNetwork::<f32>::build(&book::chapter7_convnet(), &mut RandomState::new(0))?;
/// from_scratch.load(&path)?;
/// # std::fs::remove_file(&path).ok();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Net {
    spec: NetSpec,
    root: Box<dyn Layer>,
    /// The parameters as the `VarStore` holds them, under the description's names (looked up there
    /// once the layers have registered them).
    parameters: Vec<(String, Tensor)>,
    kind: Kind,
    device: tch::Device,
    metadata: BTreeMap<String, String>,
}

impl Net {
    /// The network `spec` describes, its parameters under `path` (of the path's kind and device),
    /// drawn from `rng` layer by layer; dropout masks from libtorch's generator, recurrent layers on
    /// libtorch's fused kernels.
    ///
    /// # Errors
    /// A description that cannot run (checked before any weight is drawn), or a `VarStore` that already
    /// holds a parameter under one of the network's names (another network built under the same path).
    pub fn new<'a>(path: impl Borrow<nn::Path<'a>>, spec: &NetSpec, rng: &mut RandomState) -> Result<Self> {
        Self::with_options(path, spec, BuildOptions::default(), rng)
    }

    /// As [`Net::new`], with the choices of `options` (see [`BuildOptions::parity`]).
    ///
    /// # Errors
    /// As [`Net::new`].
    pub fn with_options<'a>(
        path: impl Borrow<nn::Path<'a>>,
        spec: &NetSpec,
        options: BuildOptions,
        rng: &mut RandomState,
    ) -> Result<Self> {
        let path = path.borrow();
        let names: Vec<String> = spec.parameter_shapes()?.into_iter().map(|(name, _)| name).collect();
        let prefix: Vec<&str> = path.components().collect();
        let full = |name: &str| prefix.iter().copied().chain([name]).collect::<Vec<_>>().join(".");
        if let Some(taken) = names.iter().find(|name| layers::lookup(path, name).is_some()) {
            return Err(scratch::Error::InvalidArgument(format!(
                "the VarStore already holds a parameter {}: build each network under a path of its own",
                full(taken)
            ))
            .into());
        }
        let root = layers::build_network(path, spec, options, rng)?;
        let parameters = names
            .into_iter()
            .map(|name| match layers::lookup(path, &name) {
                Some(tensor) => Ok((name, tensor)),
                None => Err(scratch::Error::InvalidArgument(format!("no parameter {} was registered", full(&name)))),
            })
            .collect::<std::result::Result<_, _>>()?;
        Ok(Net {
            spec: spec.clone(),
            root,
            parameters,
            kind: path.kind(),
            device: path.device(),
            metadata: BTreeMap::new(),
        })
    }

    /// The description the network was built from.
    pub fn spec(&self) -> &NetSpec {
        &self.spec
    }

    /// The tree of layers.
    pub fn root(&self) -> &dyn Layer {
        self.root.as_ref()
    }

    /// Every layer that is not a container, with its path, in the order the network computes.
    pub fn leaves(&self) -> Vec<(String, &dyn Layer)> {
        leaves(self.root.as_ref(), "")
    }

    /// The device of the parameters.
    pub fn device(&self) -> tch::Device {
        self.device
    }

    /// The float kind of the parameters.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// `x` on the network's device, of its kind.
    pub fn input(&self, x: &Tensor) -> Tensor {
        x.to_device(self.device).to_kind(self.kind)
    }

    /// The forward pass (`train` selects dropout's training behaviour), every recurrent layer starting
    /// from zeros; errors name the layer (`layers.0 Dense(13 -> 5, sigmoid)`) and the shapes.
    ///
    /// # Errors
    /// An input that does not fit a layer.
    pub fn f_forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        self.root.f_forward_t(xs, train)
    }

    /// The forward pass from the recurrent state `state` (each recurrent layer starting from its own
    /// as its description's [`StateMode`](scratch::spec::StateMode) says; nothing carried: zeros), and
    /// the state it leaves (not detached: [`NetState::detach`] before carrying it to the next call to
    /// stop the gradients there). tch's `seq_init`, for a whole network.
    ///
    /// ```
    /// use scratch::rng::RandomState;
    /// use scratch::spec::{book, CellKind, StateMode};
    /// use torch::state::NetState;
    ///
    /// let spec = book::language_model(CellKind::Lstm, 10, 16, 1, StateMode::Carry, 5);
    /// let vs = torch::var_store::<f32>(tch::Device::Cpu);
    /// let net = torch::Net::new(vs.root(), &spec, &mut RandomState::new(0))?;
    /// let x = tch::Tensor::zeros([4, 5, 10], tch::kind::FLOAT_CPU);
    /// let (_, state) = net.f_forward_state(&x, &NetState::new(), false)?;
    /// let (_, next) = net.f_forward_state(&x, &state.detach(), false)?;
    /// assert_eq!(next.layers()[0].h.size(), [1, 4, 16]);
    /// # Ok::<(), torch::Error>(())
    /// ```
    ///
    /// # Errors
    /// An input that does not fit a layer, or a state that does not fit the network or the batch.
    pub fn f_forward_state(&self, xs: &Tensor, state: &NetState, train: bool) -> Result<(Tensor, NetState)> {
        let mut pass = StatePass::new(state);
        let y = self.root.f_forward_state(xs, train, &mut pass)?;
        Ok((y, pass.finish()?))
    }

    /// The output for `x` in evaluation mode without recording gradients (PyTorch's `model.eval()`
    /// under `torch.no_grad()`), `x` moved to the network's device and kind first.
    ///
    /// # Errors
    /// An input that does not fit a layer.
    pub fn predict(&self, x: &Tensor) -> Result<Tensor> {
        tch::no_grad(|| self.f_forward_t(&self.input(x), false))
    }

    /// Every parameter with its full name, in the order the layers draw them, as the `VarStore` holds
    /// it; a tied parameter under each of its names (the same tensor), as `state_dict()` lists it.
    pub fn named_parameters(&self) -> Vec<(String, Tensor)> {
        self.parameters.iter().map(|(name, t)| (name.clone(), t.shallow_clone())).collect()
    }

    /// The parameters an optimizer updates: each tensor once (a tied one under its source's name).
    pub fn trainable_parameters(&self) -> Vec<(String, Tensor)> {
        let ties = self.ties();
        self.named_parameters().into_iter().filter(|(name, _)| !ties.iter().any(|(t, _)| t == name)).collect()
    }

    /// The tied parameters of the description, `(parameter, source)`.
    fn ties(&self) -> Vec<(String, String)> {
        self.spec.ties.iter().map(|t| (t.parameter.clone(), t.source.clone())).collect()
    }

    /// Every parameter's values as arrays of `F`, with names (PyTorch's layout).
    pub fn named_arrays<F: TorchFloat>(&self) -> Vec<NamedArray<F>> {
        self.named_parameters().iter().map(|(n, t)| (n.clone(), to_array::<F>(t))).collect()
    }

    /// The number of trainable numbers, a tied parameter counted once.
    pub fn num_parameters(&self) -> usize {
        self.trainable_parameters().iter().map(|(_, t)| t.numel()).sum()
    }

    /// The recurrent layers, with their paths.
    pub fn recurrent_layers(&self) -> Vec<(String, &Recurrent)> {
        self.leaves().into_iter().filter_map(|(path, l)| l.recurrent().map(|r| (path, r))).collect()
    }

    /// Every dropout, by its path (a layer's own under the layer's path, a dropout layer's under its
    /// own), to choose its masks or inject one.
    pub fn dropouts(&self) -> Vec<(String, &Dropout)> {
        self.root.dropouts()
    }

    /// The dropout at `path` (see [`Net::dropouts`]).
    pub fn dropout(&self, path: &str) -> Option<&Dropout> {
        self.dropouts().into_iter().find(|(p, _)| p == path).map(|(_, d)| d)
    }

    /// Draws fresh parameters for every layer from `rng`, as the from-scratch
    /// [`NeuralNetwork::reinitialize`](scratch::network::NeuralNetwork::reinitialize) does with the same
    /// generator and seeding.
    pub fn reinitialize(&self, rng: &mut RandomState, seeding: InitSeeding) {
        for (_, layer) in self.leaves() {
            seeding.before_layer(layer.reseeds_in_book(), rng);
            layer.reinitialize(rng);
        }
    }

    /// Sets every parameter from `tensors` (PyTorch's layout), which must match the network exactly (a
    /// tied parameter may be left out, or must equal its source).
    ///
    /// # Errors
    /// The list of mismatches; nothing changes then.
    pub fn load_named<F: TorchFloat>(&self, tensors: &[NamedArray<F>]) -> Result<()> {
        self.load_named_as(Path::new("(tensors)"), tensors, &Rename::default())
    }

    /// As [`Net::load_named`], the names renamed by `rename` first; `source` names the tensors in
    /// errors.
    ///
    /// # Errors
    /// As [`Net::load_named`].
    pub fn load_named_as<F: TorchFloat>(
        &self,
        source: &Path,
        tensors: &[NamedArray<F>],
        rename: &Rename,
    ) -> Result<()> {
        let params = self.named_parameters();
        let expects: Vec<(String, Vec<usize>)> =
            params.iter().map(|(n, t)| (n.clone(), t.size().iter().map(|&d| d as usize).collect())).collect();
        let matched = checkpoint::match_tensors(source, &expects, tensors, rename, &self.ties())?;
        for (name, t) in params {
            layers::set_values(&t, &matched[name.as_str()].mapv(|v| v.as_f64()));
        }
        Ok(())
    }

    /// Records `key = value` in the metadata of every checkpoint [`Net::save`] writes from now on (a
    /// program's name for the run, say), beside `engine` and `network` ([`NetSpec::fingerprint`]).
    pub fn set_metadata(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.metadata.insert(key.into(), value.into());
    }

    /// The metadata a checkpoint of this network records (see [`Net::set_metadata`]).
    pub fn metadata(&self) -> BTreeMap<String, String> {
        let mut metadata = self.metadata.clone();
        metadata.insert("engine".into(), "torch".into());
        metadata.insert("network".into(), self.spec.fingerprint());
        metadata
    }

    /// Saves the parameters as a checkpoint (see [`scratch::checkpoint`]: safetensors, PyTorch's names
    /// and layouts, F32 or F64 as the network computes) with [`Net::metadata`]; atomic.
    ///
    /// # Errors
    /// If the file cannot be written.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let metadata = self.metadata();
        if self.kind == Kind::Float {
            checkpoint::save(path.as_ref(), &self.named_arrays::<f32>(), &metadata)?;
        } else {
            checkpoint::save(path.as_ref(), &self.named_arrays::<f64>(), &metadata)?;
        }
        Ok(())
    }

    /// Loads parameters saved by either engine, or by PyTorch (`safetensors.torch.save_file` of a
    /// module's `state_dict()`).
    ///
    /// # Errors
    /// A missing or malformed file, or one whose tensors do not match the network (all mismatches
    /// listed).
    pub fn load(&self, path: impl AsRef<Path>) -> Result<()> {
        self.load_as(path, &Rename::default())
    }

    /// As [`Net::load`], the file's names renamed by `rename` first (e.g.
    /// [`Rename::strip_prefix`]`("module.")` for a model saved from `DistributedDataParallel`).
    ///
    /// # Errors
    /// As [`Net::load`].
    pub fn load_as(&self, path: impl AsRef<Path>, rename: &Rename) -> Result<()> {
        let path = path.as_ref();
        let file = checkpoint::load::<f64>(path)?;
        self.load_named_as(path, &file.tensors, rename)
    }

    /// A deep copy of every parameter.
    pub fn snapshot(&self) -> Vec<Tensor> {
        self.trainable_parameters().iter().map(|(_, t)| t.detach().copy()).collect()
    }

    /// Sets every parameter back to a [`Net::snapshot`] of this network.
    ///
    /// # Errors
    /// A snapshot of another network; nothing changes then.
    pub fn restore(&self, snapshot: &[Tensor]) -> Result<()> {
        let params = self.trainable_parameters();
        if params.len() != snapshot.len() || params.iter().zip(snapshot).any(|((_, p), s)| p.size() != s.size()) {
            return Err(
                scratch::Error::InvalidArgument("restore: the snapshot was taken from another network".into()).into()
            );
        }
        tch::no_grad(|| {
            for ((_, mut p), s) in params.into_iter().zip(snapshot) {
                p.copy_(s);
            }
        });
        Ok(())
    }

    /// Clears every parameter's gradient.
    pub fn zero_grad(&self) {
        for (_, mut p) in self.trainable_parameters() {
            p.zero_grad();
        }
    }

    /// The network as a tree: every layer and container with its name, what it is, its output shape
    /// and its parameters; then the total (see [`NetSpec::summary`]).
    ///
    /// # Errors
    /// None for a built network (its description was checked when it was built).
    pub fn summary(&self) -> Result<String> {
        Ok(self.spec.summary()?)
    }
}

impl Layer for Net {
    fn describe(&self) -> String {
        format!("Net({} parameters)", self.num_parameters())
    }

    fn f_forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        Net::f_forward_t(self, xs, train)
    }

    fn f_forward_state(&self, xs: &Tensor, train: bool, state: &mut StatePass<'_>) -> Result<Tensor> {
        self.root.f_forward_state(xs, train, state)
    }

    fn children(&self) -> Vec<(Option<&str>, &dyn Layer)> {
        vec![(None, self.root.as_ref())]
    }
}

module_by_checked_forward!(Net);

/// A [`nn::VarStore`] on `device` whose new variables are of `F`'s kind (tch's default is `f32`).
pub fn var_store<F: TorchFloat>(device: tch::Device) -> nn::VarStore {
    let mut vs = nn::VarStore::new(device);
    vs.set_kind(F::KIND);
    vs
}
