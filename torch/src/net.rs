//! A network on libtorch built from a [`NetSpec`]: its layers in sequence, their parameters in a
//! [`nn::VarStore`] under the checkpoint names (`layers.{i}.weight`, `layers.0.weight_ih_l0`, ...).

use std::borrow::Borrow;
use std::path::Path;

use scratch::checkpoint::{self, NamedArray};
use scratch::network::InitSeeding;
use scratch::rng::RandomState;
use scratch::spec::NetSpec;
use tch::{nn, Kind, Tensor};

use crate::convert::{to_array, TorchFloat};
use crate::layers::{self, module_by_checked_forward, Layer, Options};
use crate::Result;

/// The network a [`NetSpec`] describes, on libtorch: a [`nn::ModuleT`] whose parameters live in the
/// [`nn::VarStore`] of the path it was built under, named `layers.{i}.{name}` below that path, as
/// PyTorch names the parameters of a module holding the same layers in an `nn.ModuleList` called
/// `layers`. Built from the same generator, it starts from the weights the from-scratch engine's
/// [`NeuralNetwork::from_spec`](scratch::network::NeuralNetwork::from_spec) starts from.
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
/// let mut from_scratch = scratch::network::NeuralNetwork::<f32>::from_spec(
///     &book::chapter7_convnet(), scratch::losses::SoftmaxCrossEntropy::new(), &mut RandomState::new(0))?;
/// from_scratch.load(&path)?;
/// # std::fs::remove_file(&path).ok();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Net {
    spec: NetSpec,
    layers: Vec<Box<dyn Layer>>,
    kind: Kind,
    device: tch::Device,
}

impl Net {
    /// The network `spec` describes, its parameters under `path` (of the path's kind and device),
    /// drawn from `rng` layer by layer; dropout masks from libtorch's generator, recurrent layers on
    /// libtorch's fused kernels.
    ///
    /// # Errors
    /// A description that cannot run (checked before any weight is drawn).
    pub fn new<'a>(path: impl Borrow<nn::Path<'a>>, spec: &NetSpec, rng: &mut RandomState) -> Result<Self> {
        Self::with_options(path, spec, Options::default(), rng)
    }

    /// As [`Net::new`], with the choices of `options` (see [`Options::parity`]).
    ///
    /// # Errors
    /// As [`Net::new`].
    pub fn with_options<'a>(
        path: impl Borrow<nn::Path<'a>>,
        spec: &NetSpec,
        options: Options,
        rng: &mut RandomState,
    ) -> Result<Self> {
        let path = path.borrow();
        let inputs = spec.input_shapes()?;
        let layers = spec
            .layers
            .iter()
            .zip(&inputs)
            .enumerate()
            .map(|(i, (layer, shape))| layers::build(&(path / "layers" / i), layer, shape, options, rng))
            .collect::<Result<Vec<_>>>()?;
        Ok(Net { spec: spec.clone(), layers, kind: path.kind(), device: path.device() })
    }

    /// The description the network was built from.
    pub fn spec(&self) -> &NetSpec {
        &self.spec
    }

    /// The layers.
    pub fn layers(&self) -> &[Box<dyn Layer>] {
        &self.layers
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

    /// The forward pass (`train` selects dropout's training behaviour); errors name the layer
    /// (`layers.0 Dense(13 -> 5, sigmoid)`) and the shapes.
    ///
    /// # Errors
    /// An input that does not fit a layer.
    pub fn f_forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        let mut out = xs.shallow_clone();
        for (i, layer) in self.layers.iter().enumerate() {
            out = layer.f_forward_t(&out, train).map_err(|e| match e {
                crate::Error::Scratch(e) => e.within(&format!("layers.{i} {}", layer.describe())).into(),
                other => other,
            })?;
        }
        Ok(out)
    }

    /// Every parameter with its name within the network (`layers.0.weight`, ...), in layer order.
    pub fn named_parameters(&self) -> Vec<(String, Tensor)> {
        self.layers
            .iter()
            .enumerate()
            .flat_map(|(i, l)| l.parameters().into_iter().map(move |(n, t)| (format!("layers.{i}.{n}"), t)))
            .collect()
    }

    /// Every parameter's values as arrays of `F`, with names (PyTorch's layout).
    pub fn named_arrays<F: TorchFloat>(&self) -> Vec<NamedArray<F>> {
        self.named_parameters().iter().map(|(n, t)| (n.clone(), to_array::<F>(t))).collect()
    }

    /// The number of trainable numbers.
    pub fn num_parameters(&self) -> usize {
        self.named_parameters().iter().map(|(_, t)| t.numel()).sum()
    }

    /// Forgets the state every recurrent layer carries between calls.
    pub fn reset_state(&self) {
        self.layers.iter().filter_map(|l| l.recurrent()).for_each(|r| r.reset_state());
    }

    /// Draws fresh parameters for every layer from `rng`, as the from-scratch
    /// [`NeuralNetwork::reinitialize`](scratch::network::NeuralNetwork::reinitialize) does with the same
    /// generator and seeding.
    pub fn reinitialize(&self, rng: &mut RandomState, seeding: InitSeeding) {
        for layer in &self.layers {
            if let InitSeeding::BookReseed(seed) = seeding {
                if layer.reseeds_in_book() {
                    *rng = RandomState::new(seed);
                }
            }
            layer.reinitialize(rng);
        }
    }

    /// Sets every parameter from `tensors` (PyTorch's layout), which must match the network exactly.
    ///
    /// # Errors
    /// The list of mismatches; nothing changes then.
    pub fn load_named<F: TorchFloat>(&self, tensors: &[NamedArray<F>]) -> Result<()> {
        self.load_from(Path::new("(tensors)"), tensors)
    }

    fn load_from<F: TorchFloat>(&self, source: &Path, tensors: &[NamedArray<F>]) -> Result<()> {
        let params = self.named_parameters();
        let expected: Vec<(String, Vec<usize>)> =
            params.iter().map(|(n, t)| (n.clone(), t.size().iter().map(|&d| d as usize).collect())).collect();
        let problems = checkpoint::mismatches(&expected, tensors);
        if !problems.is_empty() {
            return Err(checkpoint::mismatch_error(source, &problems).into());
        }
        let by_name: std::collections::BTreeMap<&str, &ndarray::ArrayD<F>> =
            tensors.iter().map(|(n, a)| (n.as_str(), a)).collect();
        for (name, t) in params {
            layers::set_values(&t, &by_name[name.as_str()].mapv(|v| v.as_f64()));
        }
        Ok(())
    }

    /// Saves the parameters as a checkpoint (see [`scratch::checkpoint`]: safetensors, PyTorch's names
    /// and layouts, F32 or F64 as the network computes); atomic.
    ///
    /// # Errors
    /// If the file cannot be written.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let metadata = [("engine".to_string(), "torch".to_string())].into_iter().collect();
        if self.kind == Kind::Float {
            checkpoint::save(path.as_ref(), &self.named_arrays::<f32>(), &metadata)?;
        } else {
            checkpoint::save(path.as_ref(), &self.named_arrays::<f64>(), &metadata)?;
        }
        Ok(())
    }

    /// Loads parameters saved by either engine, or by PyTorch (`safetensors.torch.save_file` of a
    /// module's `state_dict`).
    ///
    /// # Errors
    /// A missing or malformed file, or one whose tensors do not match the network (all mismatches
    /// listed).
    pub fn load(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let file = checkpoint::load::<f64>(path)?;
        self.load_from(path, &file.tensors)
    }

    /// A deep copy of every parameter.
    pub fn snapshot(&self) -> Vec<Tensor> {
        self.named_parameters().iter().map(|(_, t)| t.detach().copy()).collect()
    }

    /// Sets every parameter back to a [`Net::snapshot`] of this network.
    ///
    /// # Errors
    /// A snapshot of another network; nothing changes then.
    pub fn restore(&self, snapshot: &[Tensor]) -> Result<()> {
        let params = self.named_parameters();
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
        for (_, mut p) in self.named_parameters() {
            p.zero_grad();
        }
    }
}

impl Layer for Net {
    fn describe(&self) -> String {
        let layers: Vec<String> = self.layers.iter().map(|l| l.describe()).collect();
        format!("Net[{}]", layers.join(", "))
    }

    fn f_forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        Net::f_forward_t(self, xs, train)
    }

    fn parameters(&self) -> Vec<(String, Tensor)> {
        self.named_parameters()
    }

    fn reinitialize(&self, rng: &mut RandomState) {
        Net::reinitialize(self, rng, InitSeeding::Stream);
    }
}

module_by_checked_forward!(Net);

/// A [`nn::VarStore`] on `device` whose new variables are of `F`'s kind (tch's default is `f32`).
pub fn var_store<F: TorchFloat>(device: tch::Device) -> nn::VarStore {
    let mut vs = nn::VarStore::new(device);
    vs.set_kind(F::KIND);
    vs
}
