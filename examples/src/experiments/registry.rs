//! Every experiment, in the order `dlfs list` shows them: Boston housing, chapter 4's MNIST networks
//! with the book's settings in the book's order, the two networks behind the book's best chapter-4
//! results with our learning-rate schedules, the CNNs of chapters 5 and 7, the language models of
//! chapters 6 and 7, chapter 7's autoencoder, and the divergence study.

use scratch::ops::Activation;
use scratch::optim::Decay;
use scratch::spec::{book, CellKind, GruForm, NetSpec, WeightInit};

use super::{Book, Experiment, Printed, Runner};
use crate::language_model::{self, LmOptions};
use crate::mnist::{self, Classifier, LossChoice, OptimChoice};
use crate::{autoencoder, boston, divergence, gpt};

const SIGMOID_89: &[(usize, Activation)] = &[(89, Activation::Sigmoid)];
const TANH_89: &[(usize, Activation)] = &[(89, Activation::Tanh)];
const TANH_178_46: &[(usize, Activation)] = &[(178, Activation::Tanh), (46, Activation::Tanh)];

/// The book's 784-89-10 network with sigmoid hidden units and linear outputs (softmax in the loss).
fn sigmoid_89(init: WeightInit) -> NetSpec {
    book::chapter4_mlp(SIGMOID_89, Activation::Linear, init, None)
}

/// The book's deep 784-178-46-10 tanh network with Glorot initialisation.
fn deep(dropout: Option<f64>) -> NetSpec {
    book::chapter4_mlp(TANH_178_46, Activation::Linear, WeightInit::Glorot, dropout)
}

const EXP_DECAY: Decay = Decay::Exponential { final_lr: 0.05 };
const MOMENTUM_EXP: OptimChoice = OptimChoice::Momentum { lr: 0.2, decay: EXP_DECAY };

/// The test accuracy the book printed, and which of its runs printed it.
const fn accuracy(percent: f64, what: &'static str) -> Option<Book> {
    Some(Book { printed: Printed::Percent(percent), what })
}

/// A chapter-4 MNIST experiment.
const fn ch4(name: &'static str, what: &'static str, book: Option<Book>, classifier: Classifier) -> Experiment {
    Experiment { name, chapter: "4", what, book, options: mnist::OPTIONS, runner: Runner::Classifier(classifier) }
}

/// A character language model of chapter 6 (AdaGrad), trained from `defaults`.
const fn ch6(name: &'static str, what: &'static str, defaults: fn() -> LmOptions) -> Experiment {
    Experiment {
        name,
        chapter: "6",
        what,
        book: None,
        options: language_model::OPTIONS,
        runner: Runner::LanguageModel(defaults),
    }
}

/// Every experiment.
pub const EXPERIMENTS: [Experiment; 22] = [
    Experiment {
        name: "boston",
        chapter: "2, 3, 7",
        what: "regression on Boston housing: ch. 2's step-by-step models, ch. 3's networks, ch. 7's BostonModel",
        book: Some(Book {
            printed: Printed::Words("MAE and RMSE of 6 models"),
            what: "test errors of the ch. 2 and 3 models, all reproduced to the printed digit (`dlfs reproduce`)",
        }),
        options: boston::OPTIONS,
        runner: Runner::Boston,
    },
    ch4(
        "ch4-mse",
        "784-89-10 with sigmoid outputs trained with MSE, SGD 0.1",
        accuracy(57.16, "test accuracy, the book's ch. 4 run with MSE on sigmoid outputs"),
        Classifier {
            loss: LossChoice::Mse,
            ..Classifier::chapter4(
                || book::chapter4_mlp(SIGMOID_89, Activation::Sigmoid, WeightInit::Standard, None),
                OptimChoice::Sgd { lr: 0.1 },
                50,
                5,
            )
        },
    ),
    ch4(
        "ch4-softmax",
        "the same with softmax cross-entropy",
        accuracy(92.61, "test accuracy, the book's ch. 4 run with softmax cross-entropy"),
        Classifier::chapter4(|| sigmoid_89(WeightInit::Standard), OptimChoice::Sgd { lr: 0.1 }, 50, 5),
    ),
    ch4(
        "ch4-momentum",
        "the same with momentum 0.9",
        accuracy(94.10, "test accuracy, the book's ch. 4 run with momentum"),
        Classifier::chapter4(
            || sigmoid_89(WeightInit::Standard),
            OptimChoice::Momentum { lr: 0.1, decay: Decay::None },
            50,
            5,
        ),
    ),
    ch4(
        "ch4-linear-decay",
        "momentum, learning rate decaying linearly 0.15 -> 0.05",
        accuracy(94.76, "test accuracy, the book's ch. 4 run with linear decay"),
        Classifier::chapter4(
            || sigmoid_89(WeightInit::Standard),
            OptimChoice::Momentum { lr: 0.15, decay: Decay::Linear { final_lr: 0.05 } },
            25,
            5,
        ),
    ),
    ch4(
        "ch4-exp-decay",
        "momentum, learning rate decaying exponentially 0.2 -> 0.05",
        accuracy(94.81, "test accuracy, the book's ch. 4 run with exponential decay"),
        Classifier::chapter4(|| sigmoid_89(WeightInit::Standard), MOMENTUM_EXP, 25, 5),
    ),
    ch4(
        "ch4-glorot",
        "Glorot initialisation (784-89-10)",
        accuracy(97.46, "test accuracy, the book's ch. 4 run with Glorot initialisation"),
        Classifier::chapter4(|| sigmoid_89(WeightInit::Glorot), MOMENTUM_EXP, 25, 5),
    ),
    ch4(
        "ch4-dropout",
        "tanh, Glorot, dropout 0.8 (784-89-10)",
        accuracy(96.77, "test accuracy, the book's ch. 4 run of 784-89-10 with dropout"),
        Classifier::chapter4(
            || book::chapter4_mlp(TANH_89, Activation::Linear, WeightInit::Glorot, Some(0.8)),
            MOMENTUM_EXP,
            50,
            10,
        ),
    ),
    ch4(
        "ch4-deep",
        "deep 784-178-46-10, tanh, Glorot, no dropout",
        accuracy(96.08, "test accuracy, the book's ch. 4 deep network without dropout"),
        Classifier::chapter4(|| deep(None), MOMENTUM_EXP, 100, 10),
    ),
    ch4(
        "ch4-deep-dropout",
        "deep 784-178-46-10, tanh, Glorot, dropout 0.8",
        accuracy(97.34, "test accuracy, the book's ch. 4 deep network with dropout"),
        Classifier::chapter4(|| deep(Some(0.8)), MOMENTUM_EXP, 100, 10),
    ),
    ch4(
        "ch4-best-89",
        "ch4-glorot with momentum 0.1 -> 0.01 and the full schedule",
        accuracy(97.46, "test accuracy of the book's best 784-89-10 run (ch4-glorot)"),
        Classifier {
            early_stopping: false,
            ..Classifier::chapter4(
                || sigmoid_89(WeightInit::Glorot),
                OptimChoice::Momentum { lr: 0.1, decay: Decay::Exponential { final_lr: 0.01 } },
                25,
                5,
            )
        },
    ),
    ch4(
        "ch4-best-deep",
        "ch4-deep-dropout with momentum 0.03 -> 0.003, 50 epochs, full schedule",
        accuracy(97.34, "test accuracy of the book's best deep run (ch4-deep-dropout)"),
        Classifier {
            early_stopping: false,
            ..Classifier::chapter4(
                || deep(Some(0.8)),
                OptimChoice::Momentum { lr: 0.03, decay: Decay::Exponential { final_lr: 0.003 } },
                50,
                10,
            )
        },
    ),
    Experiment {
        name: "ch5-cnn",
        chapter: "5",
        what: "Conv2D(16, 5x5, tanh, dropout 0.8), Dense(10), momentum 0.1, one epoch",
        book: accuracy(90.31, "test accuracy after one epoch, the book's ch. 5 CNN"),
        options: mnist::OPTIONS,
        runner: Runner::Classifier(Classifier {
            network: book::chapter5_cnn,
            loss: LossChoice::SoftmaxCrossEntropy,
            optim: OptimChoice::Momentum { lr: 0.1, decay: Decay::None },
            epochs: 1,
            eval_every: 1,
            eval_batches: Some(100),
            early_stopping: false,
        }),
    },
    Experiment {
        name: "ch7-convnet",
        chapter: "7",
        what: "MNIST_ConvNet: two convolutions and a dense layer, dropout 0.8, momentum 0.01",
        book: accuracy(96.98, "test accuracy after one epoch, the book's ch. 7 MNIST_ConvNet"),
        options: mnist::OPTIONS,
        runner: Runner::Classifier(Classifier {
            network: book::chapter7_convnet,
            loss: LossChoice::SoftmaxCrossEntropy,
            optim: OptimChoice::Momentum { lr: 0.01, decay: Decay::None },
            epochs: 1,
            eval_every: 1,
            eval_batches: Some(250),
            early_stopping: false,
        }),
    },
    ch6(
        "ch6-lstm",
        "character-level LSTM language model on Shakespeare, AdaGrad, validation nats/char",
        LmOptions::default,
    ),
    ch6("ch6-gru", "the same with a GRU (PyTorch's form)", || LmOptions {
        cell: CellKind::Gru(GruForm::PyTorch),
        ..LmOptions::default()
    }),
    ch6("ch6-gru-book", "the same with the book's GRU form (fixed), libtorch's step-by-step cells", || LmOptions {
        cell: CellKind::Gru(GruForm::Book),
        ..LmOptions::default()
    }),
    ch6("ch6-rnn", "the same with the vanilla tanh RNN", || LmOptions { cell: CellKind::Rnn, ..LmOptions::default() }),
    Experiment {
        name: "ch7-lstm",
        chapter: "7",
        what: "the book's NextCharacterModel: LSTM, Adam, one epoch of the first 80 000 of 100 000 characters",
        book: Some(Book {
            printed: Printed::NatsPerChar(language_model::BOOK_VALIDATION_LOSS),
            what: "validation loss of the book's LSTM after one epoch of Adam on its own 100 000-character text",
        }),
        options: language_model::CHAPTER7_OPTIONS,
        runner: Runner::LanguageModel(LmOptions::chapter7),
    },
    Experiment {
        name: "ch7-autoencoder",
        chapter: "7",
        what: "convolutional autoencoder (transposed-convolution decoder), codes in 2-D",
        book: Some(Book {
            printed: Printed::Mse(autoencoder::BOOK_TEST_MSE),
            what: "test mean squared error after one epoch, images scaled to [-1, 1]",
        }),
        options: autoencoder::OPTIONS,
        runner: Runner::Autoencoder,
    },
    Experiment {
        name: "ch8-gpt",
        chapter: "8",
        what: "beyond the book: a character GPT (nanoGPT's small CPU recipe) on ch. 6's corpus, beside its LSTM",
        book: None,
        options: gpt::OPTIONS,
        runner: Runner::Gpt,
    },
    Experiment {
        name: "divergence",
        chapter: "4",
        what: "how far rounding differences grow in training, at the book's learning rate and a lower one",
        book: None,
        options: divergence::OPTIONS,
        runner: Runner::Divergence,
    },
];
