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

/// How the initial weights are drawn.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RecurrentInit {
    /// `U(−1/√hidden, 1/√hidden)` for every parameter, as PyTorch's recurrent layers (and its `Linear`
    /// on `hidden` inputs, for the output projection).
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

/// A recurrent layer: `(batch, time, input)` in, `(batch, time, output)` out, where the output is the
/// hidden state or, with an output projection (the book's `W_v`, `B_v`), `h W_outᵀ + b_out`.
///
/// Its parameters, named and shaped as PyTorch would (`G` gate blocks of `hidden`):
///
/// ```text
/// weight_ih  (G·hidden, input)     weight_hh  (G·hidden, hidden)
/// bias_ih    (G·hidden)            bias_hh    (G·hidden)          (Biases::Two only)
/// weight_out (output, hidden)      bias_out   (output)            (with an output projection)
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RecurrentSpec {
    /// The cell.
    pub cell: CellKind,
    /// Input features per step.
    pub input: usize,
    /// Hidden units.
    pub hidden: usize,
    /// The width of the output projection, if there is one.
    pub output: Option<usize>,
    /// One or two bias vectors.
    pub biases: Biases,
    /// Initial weights.
    pub init: RecurrentInit,
    /// The state between calls.
    pub state: StateMode,
}

impl RecurrentSpec {
    /// A layer with PyTorch's defaults: two biases, its initialisation, no output projection, state
    /// reset at every call.
    pub fn new(cell: CellKind, input: usize, hidden: usize) -> Self {
        RecurrentSpec {
            cell,
            input,
            hidden,
            output: None,
            biases: Biases::Two,
            init: RecurrentInit::PyTorch,
            state: StateMode::Reset,
        }
    }

    /// With an output projection to `output` features.
    pub fn with_output(mut self, output: usize) -> Self {
        self.output = Some(output);
        self
    }

    /// With `state` between calls.
    pub fn with_state(mut self, state: StateMode) -> Self {
        self.state = state;
        self
    }

    /// The features per step the layer emits.
    pub fn output_width(&self) -> usize {
        self.output.unwrap_or(self.hidden)
    }

    /// Checks that every size is positive and the initialisation is finite.
    ///
    /// # Errors
    /// Naming the offending setting.
    pub fn validate(&self) -> Result<()> {
        if self.input == 0 || self.hidden == 0 || self.output == Some(0) {
            return Err(Error::InvalidArgument(format!("recurrent layer {self:?}: every size must be positive")));
        }
        if let RecurrentInit::Normal(std) = self.init {
            if !(std.is_finite() && std >= 0.0) {
                return Err(Error::InvalidArgument(format!("recurrent layer: weight scale {std} is not a valid std")));
            }
        }
        Ok(())
    }

    /// The parameters' names and canonical (PyTorch) shapes, in drawing order.
    pub fn parameter_shapes(&self) -> Vec<(&'static str, Vec<usize>)> {
        let gh = self.cell.gates() * self.hidden;
        let mut shapes = vec![("weight_ih", vec![gh, self.input]), ("weight_hh", vec![gh, self.hidden])];
        shapes.push(("bias_ih", vec![gh]));
        if self.biases == Biases::Two {
            shapes.push(("bias_hh", vec![gh]));
        }
        if let Some(out) = self.output {
            shapes.push(("weight_out", vec![out, self.hidden]));
            shapes.push(("bias_out", vec![out]));
        }
        shapes
    }

    /// Draws every parameter, in the order of [`RecurrentSpec::parameter_shapes`], in canonical layout.
    ///
    /// # Errors
    /// As [`RecurrentSpec::validate`].
    pub fn draw(&self, rng: &mut RandomState) -> Result<Vec<(&'static str, ArrayD<f64>)>> {
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
}
