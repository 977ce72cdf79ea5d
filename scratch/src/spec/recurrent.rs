//! What a recurrent layer is: its cell, its sizes, its parameters and how they start, and what
//! happens to its hidden state between calls. Both engines build their layers from a
//! [`RecurrentSpec`] and draw identical initial weights from it.

use ndarray::{ArrayD, IxDyn};

use crate::rng::RandomState;
use crate::{Error, Result};

/// The recurrent cell. With `x` the input at one step, `h` the previous hidden state and `σ` the
/// logistic function, every cell computes its gates from `x W_ihᵀ + b_ih + h W_hhᵀ + b_hh`
/// (PyTorch's layouts: `W_ih` is `(gates · hidden, input)`):
///
/// ```text
/// Rnn:   h' = tanh(W_ih x + b_ih + W_hh h + b_hh)
/// Lstm:  i, f, g, o = σ(·), σ(·), tanh(·), σ(·)      (gate order i, f, g, o, as torch.nn.LSTM)
///        c' = f ⊙ c + i ⊙ g,   h' = o ⊙ tanh(c')
/// Gru:   r, z = σ(W_ir x + b_ir + W_hr h + b_hr), σ(W_iz x + b_iz + W_hz h + b_hz)
///        n  = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))    (GruForm::PyTorch, torch.nn.GRU)
///        n  = tanh(W_in x + b_in + W_hn (r ⊙ h) + b_hn)    (GruForm::Book, the book's GRUNode, fixed)
///        h' = (1 − z) ⊙ n + z ⊙ h
/// ```
///
/// The book's LSTM keeps four weight matrices over the concatenation `[h, x]`; stacking them gate by
/// gate gives exactly `W_ih` and `W_hh` here, so the function computed is the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CellKind {
    /// The vanilla tanh cell (the book's `RNNNode`).
    Rnn,
    /// Long short-term memory (the book's `LSTMNode`, torch's `nn.LSTM`).
    Lstm,
    /// Gated recurrent unit in one of two forms.
    Gru(GruForm),
}

/// Where a GRU applies its reset gate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GruForm {
    /// After the recurrent product: `r ⊙ (W_hn h + b_hn)`, as `torch.nn.GRU`.
    PyTorch,
    /// Before it: `W_hn (r ⊙ h)`, as the book's `GRUNode` (with its two bugs fixed: the update gate has
    /// its own weights, and every recurrent weight gets its gradient).
    Book,
}

impl CellKind {
    /// The number of gate blocks stacked in `W_ih` and `W_hh`: 1, 4 or 3.
    pub fn gates(self) -> usize {
        match self {
            CellKind::Rnn => 1,
            CellKind::Lstm => 4,
            CellKind::Gru(_) => 3,
        }
    }

    /// A short name: `RNN`, `LSTM`, `GRU` or `GRU (book form)`.
    pub fn name(self) -> &'static str {
        match self {
            CellKind::Rnn => "RNN",
            CellKind::Lstm => "LSTM",
            CellKind::Gru(GruForm::PyTorch) => "GRU",
            CellKind::Gru(GruForm::Book) => "GRU (book form)",
        }
    }
}

/// The hidden (and cell) state a layer starts a call from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateMode {
    /// Zeros at every call.
    Reset,
    /// The final state of the previous call, row for row (the batch size must not change).
    Carry,
    /// The batch mean of the previous call's final state, broadcast over the next batch: the book's
    /// `start_H` (chapter 6) and `h_init` (chapter 7). Any batch size can follow.
    CarryMean,
}

/// Where a call starts from, as [`StateMode::start`] decides it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateStart {
    /// Zeros.
    Zeros,
    /// The carried state as it is, row for row.
    Carried,
    /// The carried state's one row, repeated over the batch.
    Broadcast,
    /// The mean of the carried state's rows, repeated over the batch.
    Mean,
}

impl StateMode {
    /// Where a call on a batch of `batch` rows starts, the layer carrying a state of `carried` rows
    /// (the previous call's final state, or one set by hand; `None`: nothing carried). Both engines'
    /// layers follow this rule.
    ///
    /// # Errors
    /// [`StateMode::Carry`] with a carried state of neither `batch` rows nor one.
    pub fn start(self, carried: Option<usize>, batch: usize) -> Result<StateStart> {
        match (self, carried) {
            (StateMode::Reset, _) | (_, None) => Ok(StateStart::Zeros),
            (StateMode::CarryMean, Some(_)) => Ok(StateStart::Mean),
            (StateMode::Carry, Some(rows)) if rows == batch => Ok(StateStart::Carried),
            (StateMode::Carry, Some(1)) => Ok(StateStart::Broadcast),
            (StateMode::Carry, Some(rows)) => Err(Error::InvalidArgument(format!(
                "the carried state has batch {rows}, this batch has {batch}: reset the state first, or carry \
                 the batch mean (StateMode::CarryMean)"
            ))),
        }
    }
}

/// How the initial weights are drawn.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RecurrentInit {
    /// `U(−1/√hidden, 1/√hidden)` for every parameter, as PyTorch's recurrent layers.
    PyTorch,
    /// `N(0, std²)` for every parameter: the book's `weight_scale`.
    Normal(f64),
}

/// How many bias vectors the cell has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Biases {
    /// `b_ih` only (the book's cells).
    One,
    /// `b_ih` and `b_hh` (PyTorch's cells).
    Two,
}

/// A recurrent layer: `(batch, time, input)` in, `(batch, time, hidden)` out: the hidden states of
/// the last of `layers` stacked cells (the first reads the input, each next one the hidden states of
/// the one before), as `torch.nn.RNN`, `nn.LSTM` and `nn.GRU` with `num_layers` and
/// `batch_first=True`. The book's output projection (`W_v`) is a [`DenseSpec`](super::DenseSpec)
/// after the layer, applied over the last axis.
///
/// Its parameters, named and shaped as PyTorch's (`G` gate blocks of `hidden`, `k` the cell's index
/// in the stack, `in_k` the input size for `k = 0` and `hidden` after):
///
/// ```text
/// weight_ih_l{k}  (G·hidden, in_k)     weight_hh_l{k}  (G·hidden, hidden)
/// bias_ih_l{k}    (G·hidden)           bias_hh_l{k}    (G·hidden)          (Biases::Two only)
/// ```
///
/// ```
/// use scratch::spec::{CellKind, RecurrentSpec};
///
/// let lstm = RecurrentSpec::new(CellKind::Lstm, 76, 256).layers(2);
/// let names: Vec<String> = lstm.parameter_shapes().into_iter().map(|(name, _)| name).collect();
/// assert_eq!(names[..4], ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"]);
/// assert_eq!(lstm.parameter_shapes()[4].1, vec![4 * 256, 256]);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RecurrentSpec {
    /// The cell.
    pub cell: CellKind,
    /// Input features per step.
    pub input: usize,
    /// Hidden units of every cell.
    pub hidden: usize,
    /// Stacked cells (PyTorch's `num_layers`).
    pub layers: usize,
    /// One or two bias vectors per cell.
    pub biases: Biases,
    /// Initial weights.
    pub init: RecurrentInit,
    /// The state between calls.
    pub state: StateMode,
}

impl RecurrentSpec {
    /// One cell with PyTorch's defaults: two biases, its initialisation, state reset at every call.
    pub fn new(cell: CellKind, input: usize, hidden: usize) -> Self {
        RecurrentSpec {
            cell,
            input,
            hidden,
            layers: 1,
            biases: Biases::Two,
            init: RecurrentInit::PyTorch,
            state: StateMode::Reset,
        }
    }

    /// With `layers` stacked cells.
    pub fn layers(mut self, layers: usize) -> Self {
        self.layers = layers;
        self
    }

    /// With `biases` bias vectors per cell.
    pub fn biases(mut self, biases: Biases) -> Self {
        self.biases = biases;
        self
    }

    /// With the initialisation `init`.
    pub fn init(mut self, init: RecurrentInit) -> Self {
        self.init = init;
        self
    }

    /// With `state` between calls.
    pub fn state(mut self, state: StateMode) -> Self {
        self.state = state;
        self
    }

    /// The input features of cell `layer` of the stack: the layer's input for the first, the hidden
    /// size after.
    pub fn input_of(&self, layer: usize) -> usize {
        if layer == 0 {
            self.input
        } else {
            self.hidden
        }
    }

    /// Checks that every size is positive, the initialisation finite, and the parameters fit in memory
    /// (see [`crate::memory`]).
    ///
    /// # Errors
    /// Naming the offending setting.
    pub fn validate(&self) -> Result<()> {
        if self.input == 0 || self.hidden == 0 || self.layers == 0 {
            return Err(Error::InvalidArgument(format!(
                "{}: input, hidden size and layers must be positive",
                self.describe()
            )));
        }
        if let RecurrentInit::Normal(std) = self.init {
            if !(std.is_finite() && std >= 0.0) {
                return Err(Error::InvalidArgument(format!("recurrent layer: weight scale {std} is not a valid std")));
            }
        }
        // Every size below is a product of these, so none overflows once they pass.
        let widest = self.input.max(self.hidden);
        super::product(
            &[self.cell.gates(), self.hidden, widest, self.layers],
            "gates × hidden × widest input × layers",
        )?;
        let gh = self.cell.gates() * self.hidden;
        let biases = self.cell_parameters().len() - 2;
        let (h, more) = (self.hidden, self.layers - 1);
        // The first cell's weights and biases, then the others' (each reads the hidden state below).
        crate::memory::check_parameters(&[
            &[gh, self.input],
            &[gh, h],
            &[biases, gh],
            &[more, gh, h],
            &[more, gh, h],
            &[more, biases, gh],
        ])
    }

    /// The short names of one cell's parameters, without the `_l{k}` suffix, in drawing order:
    /// `weight_ih`, `weight_hh`, `bias_ih` and, with two biases, `bias_hh`.
    pub fn cell_parameters(&self) -> &'static [&'static str] {
        match self.biases {
            Biases::One => &["weight_ih", "weight_hh", "bias_ih"],
            Biases::Two => &["weight_ih", "weight_hh", "bias_ih", "bias_hh"],
        }
    }

    /// Every parameter's name (`weight_ih_l0`, ...) and canonical (PyTorch) shape, in drawing order:
    /// the one list both engines name their parameters from.
    pub fn parameter_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let gh = self.cell.gates().saturating_mul(self.hidden);
        (0..self.layers)
            .flat_map(|k| {
                self.cell_parameters().iter().map(move |&name| {
                    let shape = match name {
                        "weight_ih" => vec![gh, self.input_of(k)],
                        "weight_hh" => vec![gh, self.hidden],
                        _ => vec![gh],
                    };
                    (format!("{name}_l{k}"), shape)
                })
            })
            .collect()
    }

    /// Draws every parameter, in the order of [`RecurrentSpec::parameter_shapes`], in canonical layout:
    /// `U(−1/√hidden, 1/√hidden)` ([`RecurrentInit::PyTorch`]) or `N(0, std²)`.
    ///
    /// # Errors
    /// As [`RecurrentSpec::validate`].
    pub fn draw(&self, rng: &mut RandomState) -> Result<Vec<(String, ArrayD<f64>)>> {
        self.validate()?;
        Ok(self
            .parameter_shapes()
            .into_iter()
            .map(|(name, shape)| {
                let shape = IxDyn(&shape);
                let value = match self.init {
                    RecurrentInit::PyTorch => {
                        let k = 1.0 / (self.hidden as f64).sqrt();
                        rng.uniform_array::<f64, _>(shape).mapv(|u| (2.0 * u - 1.0) * k)
                    }
                    RecurrentInit::Normal(std) => rng.normal::<f64, _>(0.0, std, shape),
                };
                (name, value)
            })
            .collect())
    }

    /// A one-line description, e.g. `LSTM(76 -> 256)` or `GRU(76 -> 256, 2 layers)`.
    pub fn describe(&self) -> String {
        let layers = if self.layers == 1 { String::new() } else { format!(", {} layers", self.layers) };
        format!("{}({} -> {}{layers})", self.cell.name(), self.input, self.hidden)
    }
}
