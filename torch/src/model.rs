//! A model on libtorch: layers in sequence, their parameters in a `VarStore` under the same names as in
//! the from-scratch engine, and a loss.

use std::path::Path;

use scratch::checkpoint::{self, NamedArray};
use scratch::layers::WeightInit;
use scratch::network::InitSeeding;
use scratch::ops::{Activation, DropoutStyle, Mode};
use scratch::rng::RandomState;
use scratch::rnn::RecurrentSpec;
use tch::{nn, Kind, Tensor};

use crate::convert::{to_array, TorchFloat};
use crate::layers::{self, Dense, Layer};
use crate::losses::Loss;
use crate::recurrent::{Kernel, Recurrent};
use crate::Result;

/// Layers in sequence on one device and float kind, and the loss they are trained on.
///
/// Parameters are named `layers.{i}.{name}` (`layers.0.weight`, ...), in PyTorch's layout.
pub struct Model {
    vs: nn::VarStore,
    layers: Vec<Box<dyn Layer>>,
    loss: Loss,
    kind: Kind,
}

impl Model {
    /// An empty model computing in `F` on `device`.
    pub fn new<F: TorchFloat>(device: tch::Device, loss: Loss) -> Self {
        Model { vs: nn::VarStore::new(device), layers: Vec::new(), loss, kind: F::KIND }
    }

    /// The path under which layer `i` registers its parameters.
    pub fn layer_path(&self, i: usize) -> nn::Path<'_> {
        self.vs.root() / "layers" / i
    }

    /// Appends a layer built under [`Model::layer_path`] of the next index.
    pub fn push(&mut self, build: impl FnOnce(&nn::Path<'_>, Kind) -> Box<dyn Layer>) -> &mut Self {
        let layer = build(&self.layer_path(self.layers.len()), self.kind);
        self.layers.push(layer);
        self
    }

    /// Appends a [`Dense`] layer drawn from `rng` as the from-scratch `Dense` would be.
    pub fn dense(
        &mut self,
        (n_in, neurons): (usize, usize),
        activation: Activation,
        init: WeightInit,
        dropout: Option<(f64, DropoutStyle)>,
        rng: &mut RandomState,
    ) -> &mut Self {
        self.push(|path, kind| Box::new(Dense::new(path, (n_in, neurons), activation, init, dropout, kind, rng)))
    }

    /// Appends a [`Conv2D`](layers::Conv2D) layer drawn from `rng` as the from-scratch one would be.
    pub fn conv2d(&mut self, spec: scratch::layers::ConvSpec, rng: &mut RandomState) -> &mut Self {
        self.push(|path, kind| Box::new(layers::Conv2D::new(path, spec, kind, rng)))
    }

    /// Appends a recurrent layer drawn from `rng`.
    ///
    /// # Errors
    /// As [`crate::recurrent::Recurrent::new`].
    pub fn recurrent(&mut self, spec: RecurrentSpec, kernel: Kernel, rng: &mut RandomState) -> Result<&mut Self> {
        let layer = Recurrent::new(&self.layer_path(self.layers.len()), spec, kernel, self.kind, rng)?;
        self.layers.push(Box::new(layer));
        Ok(self)
    }

    /// The device.
    pub fn device(&self) -> tch::Device {
        self.vs.device()
    }

    /// The float kind of the parameters.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The loss.
    pub fn loss(&self) -> Loss {
        self.loss
    }

    /// The layers.
    pub fn layers_mut(&mut self) -> &mut [Box<dyn Layer>] {
        &mut self.layers
    }

    /// `x` moved to the model's device and kind.
    pub fn input(&self, x: &Tensor) -> Tensor {
        x.to_device(self.device()).to_kind(self.kind)
    }

    /// Passes `x` through every layer; errors name the layer (`layers.0 Dense(13 -> 5, sigmoid)`).
    pub fn forward(&mut self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let mut out = self.input(x);
        for (i, layer) in self.layers.iter_mut().enumerate() {
            out = layer.forward(&out, mode).map_err(|e| match e {
                crate::Error::Scratch(e) => e.within(&format!("layers.{i} {}", layer.describe())).into(),
                other => other,
            })?;
        }
        Ok(out)
    }

    /// The loss of the model's output on `x` against `y`, as a scalar tensor.
    pub fn forward_loss(&mut self, x: &Tensor, y: &Tensor, mode: Mode) -> Result<Tensor> {
        let prediction = self.forward(x, mode)?;
        self.loss.forward(&prediction, &self.input(y))
    }

    /// Every parameter with its name, in layer order.
    pub fn named_parameters(&self) -> Vec<(String, Tensor)> {
        self.layers
            .iter()
            .enumerate()
            .flat_map(|(i, l)| l.params().into_iter().map(move |(n, t)| (format!("layers.{i}.{n}"), t)))
            .collect()
    }

    /// Every parameter's values as arrays of `F`, with names (canonical layout).
    pub fn named_arrays<F: TorchFloat>(&self) -> Vec<NamedArray<F>> {
        self.named_parameters().iter().map(|(n, t)| (n.clone(), to_array::<F>(t))).collect()
    }

    /// Forgets the state every recurrent layer carries between calls.
    pub fn reset_state(&mut self) {
        self.layers.iter_mut().for_each(|l| l.reset_state());
    }

    /// The number of trainable numbers.
    pub fn num_parameters(&self) -> usize {
        self.named_parameters().iter().map(|(_, t)| t.numel()).sum()
    }

    /// Sets every parameter from `tensors` (canonical layout), which must match the model exactly.
    ///
    /// # Errors
    /// The list of mismatches; nothing changes then.
    pub fn load_named<F: TorchFloat>(&mut self, tensors: &[NamedArray<F>]) -> Result<()> {
        self.load_from(Path::new("(tensors)"), tensors)
    }

    fn load_from<F: TorchFloat>(&mut self, source: &Path, tensors: &[NamedArray<F>]) -> Result<()> {
        let params = self.named_parameters();
        let expected: Vec<(String, Vec<usize>)> =
            params.iter().map(|(n, t)| (n.clone(), t.size().iter().map(|&d| d as usize).collect())).collect();
        let problems = checkpoint::mismatches(&expected, tensors);
        if !problems.is_empty() {
            return Err(checkpoint::mismatch_error(source, &problems).into());
        }
        for (name, mut t) in params {
            let (_, a) = tensors.iter().find(|(n, _)| *n == name).expect("checked above");
            layers::set_values(&mut t, &a.mapv(|v| v.as_f64()));
        }
        Ok(())
    }

    /// Saves the parameters as a checkpoint in the shared layout (see [`scratch::checkpoint`]); atomic.
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

    /// Loads parameters saved by either engine.
    ///
    /// # Errors
    /// A missing or malformed file, or one whose tensors do not match the model (all mismatches listed).
    pub fn load(&mut self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let file = checkpoint::load::<f64>(path)?;
        self.load_from(path, &file.tensors)
    }

    /// Draws fresh parameters for every layer from `rng`, as [`scratch::network::NeuralNetwork::reinitialize`]
    /// does with the same generator and seeding.
    pub fn reinitialize(&mut self, rng: &mut RandomState, seeding: InitSeeding) {
        for layer in &mut self.layers {
            if let InitSeeding::BookReseed(seed) = seeding {
                if layer.reseeds_in_book() {
                    *rng = RandomState::new(seed);
                }
            }
            layer.reinitialize(rng);
        }
    }

    /// A deep copy of every parameter.
    pub fn snapshot(&self) -> Vec<Tensor> {
        self.named_parameters().iter().map(|(_, t)| t.detach().copy()).collect()
    }

    /// Sets every parameter back to a [`Model::snapshot`] of this model.
    pub fn restore(&mut self, snapshot: &[Tensor]) {
        tch::no_grad(|| {
            for ((_, mut p), s) in self.named_parameters().into_iter().zip(snapshot) {
                p.copy_(s);
            }
        });
    }

    /// Clears every parameter's gradient.
    pub fn zero_grad(&mut self) {
        for (_, mut p) in self.named_parameters() {
            p.zero_grad();
        }
    }
}
